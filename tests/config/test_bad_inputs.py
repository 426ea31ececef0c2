"""Bad inputs get a clear error or a documented behaviour (docs/reliability.rst)."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Events
from torch.utils.data import DataLoader, TensorDataset

from ignite_speed import StopReason, attach_speedups
from tests.helpers import loader, make_run, stream_loader


def test_empty_train_loader_is_no_training():
    run = make_run()
    sp = attach_speedups(run.trainer, run.evaluator, dict(max_epochs=2), val_data=loader(2))
    run.trainer.run(loader(0))
    assert sp.stop_reason is StopReason.NO_TRAINING and run.total == 0


def test_empty_val_loader_disables_validation():
    run = make_run()
    sp = attach_speedups(run.trainer, run.evaluator, dict(max_epochs=1), val_data=loader(0))
    run.trainer.run(loader(3))
    assert run.val_at == [] and sp.stop_reason is StopReason.MAX_EPOCHS


def test_empty_test_loader_runs_nothing():
    run = make_run()
    sp = attach_speedups(run.trainer, run.evaluator, {})
    sp.test(run.tester, loader(0))
    assert run.test_batches == 0


def test_one_shot_generator_stops_after_its_one_pass_with_a_reason():
    run = make_run()
    sp = attach_speedups(run.trainer, None, dict(max_epochs=3))
    with pytest.warns(UserWarning, match="one-shot generator"):
        run.trainer.run(b for b in loader(4))
    assert run.batches_per_epoch == [4] and sp.progress.epochs_done == 1
    assert sp.stop_reason is StopReason.DATA_EXHAUSTED and "no batches in epoch 1" in sp.stop_message


def test_unsized_loader_with_fractional_limit_is_refused():
    run = make_run()
    attach_speedups(run.trainer, None, dict(max_epochs=1, limit_train_batches=0.5))
    with pytest.raises(ValueError, match=r"limit_train_batches=0\.5 is a fraction, but the loader has no length"):
        run.trainer.run(stream_loader(4))


def test_val_data_without_evaluator_is_refused():
    with pytest.raises(ValueError, match="val_data was given without an evaluator"):
        attach_speedups(make_run().trainer, None, {}, val_data=loader(2))


def test_early_stopping_on_a_validation_metric_without_evaluator_is_refused():
    with pytest.raises(ValueError, match="monitors 'val_loss'.*validation is disabled"):
        attach_speedups(make_run().trainer, None, dict(early_stopping={"monitor": "val_loss"}))


def test_non_scalar_metric_is_refused():
    run = make_run()
    attach_speedups(
        run.trainer, run.evaluator, dict(max_epochs=2, early_stopping={"monitor": "acc"}), val_data=loader(2)
    )
    run.evaluator.add_event_handler(Events.COMPLETED, lambda e: e.state.metrics.update(acc=torch.ones(3)))
    with pytest.raises(ValueError, match=r"monitor='acc'.*scalar.*shape \(3,\)"):
        run.trainer.run(loader(3))


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_metric_stops_with_a_reason(value):
    run = make_run(metric_seq=[value])
    sp = attach_speedups(
        run.trainer, run.evaluator, dict(max_epochs=3, early_stopping={"monitor": "val_loss"}), val_data=loader(2)
    )
    run.trainer.run(loader(3))
    assert sp.stop_reason is StopReason.EARLY_STOPPING and "not finite" in sp.stop_message


def test_missing_metric_strict_raises_and_non_strict_skips():
    run = make_run()
    attach_speedups(
        run.trainer, run.evaluator, dict(max_epochs=2, early_stopping={"monitor": "val_loss"}), val_data=loader(2)
    )
    with pytest.raises(RuntimeError, match="could not find the monitor 'val_loss'"):
        run.trainer.run(loader(3))
    run = make_run()
    sp = attach_speedups(
        run.trainer,
        run.evaluator,
        dict(max_epochs=2, early_stopping={"monitor": "val_loss", "strict": False}),
        val_data=loader(2),
    )
    run.trainer.run(loader(3))
    assert sp.stop_reason is StopReason.MAX_EPOCHS and run.total == 6


class _LenNotImplementedLoader(DataLoader):
    """A DataLoader whose ``__len__`` raises ``NotImplementedError`` (an abstract length): unsized, like an
    ``IterableDataset`` loader, whose ``__len__`` raises ``TypeError``."""

    def __len__(self) -> int:
        raise NotImplementedError("this loader has no length")


def _len_not_implemented_loader(n_batches: int) -> DataLoader:
    x = torch.arange(n_batches * 2, dtype=torch.float32).reshape(-1, 1)
    return _LenNotImplementedLoader(TensorDataset(x, x.clone()), batch_size=2)


# Ignite's Engine.run treats only a TypeError from len() as 'no length': such a loader reaches it as unsized
def test_max_steps_on_a_loader_whose_len_is_not_implemented():
    run = make_run()
    sp = attach_speedups(run.trainer, None, dict(max_steps=6))
    run.trainer.run(_len_not_implemented_loader(4))
    assert run.batches_per_epoch == [4, 2] and sp.global_step == 6 and sp.stop_reason is StopReason.MAX_STEPS


def test_max_steps_on_a_loader_whose_len_is_not_implemented_with_a_batch_count():
    run = make_run()
    sp = attach_speedups(
        run.trainer,
        run.evaluator,
        dict(max_steps=5, limit_train_batches=3, limit_val_batches=2),
        val_data=_len_not_implemented_loader(3),
    )
    run.trainer.run(_len_not_implemented_loader(4))
    assert run.batches_per_epoch == [3, 2] and sp.global_step == 5 and sp.stop_reason is StopReason.MAX_STEPS
    # the sanity check (2 batches) and the end of the first epoch validate 2 batches; the partial epoch does not
    assert (run.sanity, run.val_at, run.val_batches) == (2, [3], [2])


# Ignite's Engine.run treats only a TypeError from len() as 'no length': such a loader reaches it as unsized
def test_validation_on_a_loader_whose_len_is_not_implemented():
    run = make_run()
    attach_speedups(run.trainer, run.evaluator, dict(max_epochs=1), val_data=_len_not_implemented_loader(3))
    run.trainer.run(loader(4))
    assert (run.sanity, run.val_at, run.val_batches) == (2, [4], [3])


@pytest.mark.parametrize("flag", ["limit_train_batches", "limit_val_batches"])
def test_fraction_of_a_loader_whose_len_is_not_implemented_is_refused(flag):
    run = make_run()
    train, val = loader(4), loader(3)
    if flag == "limit_train_batches":
        train = _len_not_implemented_loader(4)
    else:
        val = _len_not_implemented_loader(3)
    with pytest.raises(ValueError, match=rf"^{flag}=0\.5 is a fraction, but the loader has no length"):
        attach_speedups(run.trainer, run.evaluator, {"max_epochs": 1, flag: 0.5}, val_data=val)
        run.trainer.run(train)
    assert run.total == 0 and run.eval_calls == 0


@pytest.mark.parametrize(
    "flags,needle",
    [
        (
            {"overfit_batches": 0.25},
            r"^overfit_batches=0\.25 \(the limit_val_batches it sets\) of a loader with 3 "
            r"batches is 0\.75 < 1 batch; use at least overfit_batches=0\.3333",
        ),
        (
            {"overfit_batches": 0.5},
            r"^overfit_batches=0\.5 \(the limit_train_batches it sets\) is a fraction, but the "
            r"loader has no length",
        ),
    ],
)
def test_overfit_fraction_errors_name_overfit_batches(flags, needle):
    """overfit_batches sets the train and val limits; an error about them names the flag the user wrote."""
    run = make_run()
    with pytest.raises(ValueError, match=needle):
        attach_speedups(run.trainer, run.evaluator, {"max_epochs": 1, **flags}, val_data=loader(3))
        run.trainer.run(stream_loader(4))
