"""Bad inputs get a clear error or a documented behaviour (docs/reliability.rst)."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Events

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
    attach_speedups(run.trainer, run.evaluator, dict(max_epochs=2, early_stopping={"monitor": "acc"}),
                    val_data=loader(2))
    run.evaluator.add_event_handler(Events.COMPLETED, lambda e: e.state.metrics.update(acc=torch.ones(3)))
    with pytest.raises(ValueError, match=r"monitor='acc'.*scalar.*shape \(3,\)"):
        run.trainer.run(loader(3))


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_metric_stops_with_a_reason(value):
    run = make_run(metric_seq=[value])
    sp = attach_speedups(run.trainer, run.evaluator, dict(max_epochs=3, early_stopping={"monitor": "val_loss"}),
                         val_data=loader(2))
    run.trainer.run(loader(3))
    assert sp.stop_reason is StopReason.EARLY_STOPPING and "not finite" in sp.stop_message


def test_missing_metric_strict_raises_and_non_strict_skips():
    run = make_run()
    attach_speedups(run.trainer, run.evaluator, dict(max_epochs=2, early_stopping={"monitor": "val_loss"}),
                    val_data=loader(2))
    with pytest.raises(RuntimeError, match="could not find the monitor 'val_loss'"):
        run.trainer.run(loader(3))
    run = make_run()
    sp = attach_speedups(run.trainer, run.evaluator,
                         dict(max_epochs=2, early_stopping={"monitor": "val_loss", "strict": False}), val_data=loader(2))
    run.trainer.run(loader(3))
    assert sp.stop_reason is StopReason.MAX_EPOCHS and run.total == 6
