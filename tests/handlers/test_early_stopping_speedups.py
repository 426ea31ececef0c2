"""Early stopping driven by ``attach_speedups`` (validation scheduling, sanity check, minimums,
``fast_dev_run``): the cases of ``lightning-semantics.md`` §12 that need the loop, with exact numbers
(``stopped_epoch`` / ``wait_count`` of cases 56, 60, 64 and X2 checked against pytorch-lightning 2.6.6)."""

from __future__ import annotations

import io
import math

import pytest
import torch
from ignite.engine import Events
from ignite.metrics import Average

from ignite_speed import EarlyStopping, EarlyStoppingReason, StopController, StopReason, TrainingLoop, attach_speedups
from ignite_speed.handlers import ValidationSchedule
from tests.helpers import loader, make_run

R = EarlyStoppingReason


def go(metric_seq=(1.0,), es=None, n_train=10, model=False, before=None, **cfg):
    run = make_run(list(metric_seq))
    if before is not None:
        before(run)
    cfg.setdefault("max_epochs", 20)
    cfg["early_stopping"] = {"monitor": "val_loss", **(es or {})}
    sp = attach_speedups(
        run.trainer, run.evaluator, cfg, val_data=loader(5, 1000.0), model=run.model if model else None
    )
    run.trainer.run(loader(n_train))
    return run, sp, sp.early_stopping


def test_case44_half_epoch_interval():
    run, sp, es = go(es={"patience": 2}, val_check_interval=0.5)
    assert not es.checks_at_epoch_end
    assert (run.total, run.val_at, es.checks, es.stopped_epoch, es.wait_count) == (15, [5, 10, 15], 3, 1, 2)
    assert es.stopping_reason is R.PATIENCE_EXHAUSTED
    assert sp.stop_reason is StopReason.EARLY_STOPPING


def test_case45_every_second_epoch():
    run, _, es = go(es={"patience": 3}, check_val_every_n_epoch=2)
    assert (run.total, run.val_at, es.stopped_epoch) == (80, [20, 40, 60, 80], 7)


def test_case46_defaults_check_at_epoch_end():
    run, _, es = go()
    assert es.checks_at_epoch_end
    assert (run.total, len(run.val_at), es.stopped_epoch, es.wait_count) == (40, 4, 3, 3)


def test_case55_min_epochs():
    run, sp, es = go(es={"patience": 1}, min_epochs=5)
    assert (run.total, len(run.val_at), es.wait_count, es.stopped_epoch) == (50, 5, 4, 4)
    assert sp.stop_reason is StopReason.EARLY_STOPPING


def test_case56_min_steps_stops_mid_epoch_with_an_extra_validation():
    run, _, es = go(es={"patience": 1}, min_steps=25)
    # the partial epoch still ends (Lightning calls on_train_epoch_end there): one more check, as in 2.6.6
    assert (run.total, run.val_at, es.stopped_epoch, es.wait_count) == (25, [10, 20, 25], 2, 2)


def test_case57_reason_sticks():
    run, _, es = go([1.0, 1.0, 0.8, 0.6, 0.4, 0.2], es={"patience": 1}, min_epochs=6, num_sanity_val_steps=0)
    assert (run.total, es.stopped_epoch, es.wait_count, es.best_score) == (60, 1, 0, 0.2)
    assert es.stopping_reason is R.PATIENCE_EXHAUSTED


def test_case58_int_interval_one_checks_once_per_epoch():
    run, _, es = go(val_check_interval=1)
    assert es.checks_at_epoch_end
    assert (run.total, len(run.val_at), es.checks, es.stopped_epoch) == (40, 40, 4, 3)


def test_case59_epoch_end_checks_with_half_interval():
    run, _, es = go(es={"patience": 2, "check_on_train_epoch_end": True}, val_check_interval=0.5)
    assert (run.total, len(run.val_at), es.checks) == (30, 6, 3)


def test_case60_stale_metric_and_sanity_metrics_ignored():
    # the sanity check logs val_loss too; it must not count as the epoch-0 value
    run, _, es = go(es={"patience": 3, "check_on_train_epoch_end": True, "strict": False}, check_val_every_n_epoch=2)
    assert (run.total, len(run.val_at), es.checks, run.sanity) == (50, 2, 4, 2)
    assert (es.stopped_epoch, es.wait_count) == (4, 3)


def test_case60_strict_raises_after_epoch_0():
    with pytest.raises(RuntimeError, match="could not find the monitor 'val_loss'"):
        go(es={"check_on_train_epoch_end": True}, check_val_every_n_epoch=2)


def test_case61_validation_disabled_refused_when_attaching():
    run = make_run([1.0])
    with pytest.raises(ValueError, match=r"monitors 'val_loss'.*validation is disabled"):
        attach_speedups(
            run.trainer,
            run.evaluator,
            {"limit_val_batches": 0, "early_stopping": {"monitor": "val_loss"}},
            val_data=loader(5),
        )


def test_case61_fast_dev_run_disables_early_stopping():
    run = make_run(None)  # no metric at all: a strict check would raise
    sp = attach_speedups(
        run.trainer,
        run.evaluator,
        {"fast_dev_run": True, "early_stopping": {"monitor": "val_loss"}},
        val_data=loader(5),
    )
    run.trainer.run(loader(10))
    assert run.total == 1 and sp.early_stopping is None


def test_case64_time_based_interval_checks_at_validation_end():
    run, _, es = go(
        val_check_interval="00:00:00:00", check_val_every_n_epoch=1, max_epochs=1, n_train=3, es={"patience": 1}
    )
    assert not es.checks_at_epoch_end
    assert (run.total, run.val_at, es.checks, es.stopped_epoch, es.wait_count) == (2, [1, 2], 2, 0, 1)


def test_x2_min_steps_with_half_interval():
    run, _, es = go(es={"patience": 1}, val_check_interval=0.5, min_steps=13)
    assert (run.total, run.val_at, es.stopped_epoch, es.wait_count) == (13, [5, 10, 13], 1, 2)


def test_x1_min_epochs_with_half_interval():
    run, _, _ = go(es={"patience": 1}, val_check_interval=0.5, min_epochs=2)
    assert (run.total, len(run.val_at)) == (20, 4)


def test_patience_in_epochs_through_the_config():
    run, _, es = go(es={"patience": 3, "patience_unit": "epochs"}, check_val_every_n_epoch=2)
    assert (run.total, run.val_at, es.wait_count) == (60, [20, 40, 60], 4)


def test_restore_best_weights_through_the_config():
    weights = []

    def record(run):
        run.evaluator.add_event_handler(Events.COMPLETED, lambda _: weights.append(run.model.weight.detach().clone()))

    run, _, es = go(
        [3.0, 1.0, 2.0],
        es={"patience": 2, "restore_best_weights": True},
        model=True,
        num_sanity_val_steps=0,
        before=record,
    )
    assert run.total == 40 and es.stopping_reason is R.PATIENCE_EXHAUSTED
    assert torch.equal(run.model.weight, weights[1])
    with pytest.raises(ValueError, match=r"restore_best_weights=True\) needs the model"):
        go(es={"restore_best_weights": True})


def test_state_saved_with_the_speedups():
    _, sp, es = go(es={"patience": 2})
    buf = io.BytesIO()
    torch.save(sp.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)["early_stopping"]
    assert (state["wait_count"], state["stopped_epoch"], state["stopping_reason"]) == (2, 2, R.PATIENCE_EXHAUSTED.value)


def test_terminate_on_nan_through_the_config():
    def poison(run):
        @run.trainer.on(Events.ITERATION_COMPLETED)
        def _nan(engine):
            if engine.state.iteration == 7:
                engine.state.output = math.nan

    run, sp, es = go(es={"patience": 5}, terminate_on_nan=True, before=poison)
    assert sp.stop_reason is StopReason.NON_FINITE_LOSS
    assert run.total == 7 and es.stopping_reason is R.NOT_STOPPED
    assert "training loss is nan" in sp.stop_message


# ---------------------------------------------------------------------------------------------- alone = attach_speedups
VALUES = [1.0, 0.8, 0.5, 0.6, 0.4, 0.41, 0.42, 0.43]


def _outcome(run, es, stop_reason):
    # (where the checks are may differ: at the app's validation ends alone, at epoch ends under the schedule)
    return (
        run.total,
        run.val_at,
        es.checks,
        es.stopped_epoch,
        es.wait_count,
        es.best_score,
        es.stopping_reason,
        es.stopping_reason_message,
        stop_reason,
    )


@pytest.mark.parametrize(
    "settings",
    [
        {"patience": 2},
        {"patience": 1, "min_delta": 0.15},
        {"stopping_threshold": 0.45},
        {"mode": "max", "patience": 2},
        {"patience": 2, "patience_unit": "epochs"},
        {"patience": 3, "check_on_train_epoch_end": False},
        {"patience": 1, "restore_best_weights": True},
        {"patience": 2, "start_from_epoch": 3, "baseline": 0.3},
    ],
)
def test_early_stopping_alone_behaves_as_attach_speedups_for_the_flag(settings):
    """The same app, validating after each epoch: EarlyStopping(evaluator, ...) alone (the app runs the
    evaluator) stops where attach_speedups({"early_stopping": ...}) does, with the same state and weights."""
    torch.manual_seed(0)
    flag_run = make_run(VALUES)
    sp = attach_speedups(
        flag_run.trainer,
        flag_run.evaluator,
        {"max_epochs": 20, "num_sanity_val_steps": 0, "early_stopping": {"monitor": "val_loss", **settings}},
        val_data=loader(5, 1000.0),
        model=flag_run.model,
    )
    flag_run.trainer.run(loader(10))
    torch.manual_seed(0)
    alone = make_run(VALUES)
    alone.trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: alone.evaluator.run(loader(5, 1000.0)))
    es = EarlyStopping(alone.evaluator, monitor="val_loss", model=alone.model, **settings).attach(alone.trainer)
    alone.trainer.run(loader(10), max_epochs=20)
    assert _outcome(alone, es, StopController.of(alone.trainer).stop_reason) == _outcome(
        flag_run, sp.early_stopping, sp.stop_reason
    )
    assert torch.equal(alone.model.weight, flag_run.model.weight) and torch.equal(alone.model.bias, flag_run.model.bias)


def test_early_stopping_alone_on_a_trainer_metric_behaves_as_attach_speedups_without_evaluator():
    def trainer_loss(run):
        Average(output_transform=lambda out: torch.tensor([1.0])).attach(run.trainer, "train_loss")
        return run

    flag_run = trainer_loss(make_run())
    sp = attach_speedups(
        flag_run.trainer, None, {"max_epochs": 10, "early_stopping": {"monitor": "train_loss", "patience": 2}}
    )
    flag_run.trainer.run(loader(4))
    alone = trainer_loss(make_run())
    es = EarlyStopping(monitor="train_loss", patience=2).attach(alone.trainer)
    alone.trainer.run(loader(4), max_epochs=10)
    assert _outcome(alone, es, StopController.of(alone.trainer).stop_reason) == _outcome(
        flag_run, sp.early_stopping, sp.stop_reason
    )
    assert (alone.total, es.checks, es.checks_at_epoch_end) == (12, 3, True)


def test_early_stopping_alone_refuses_a_monitor_nothing_computes_at_attach_as_attach_speedups_does():
    """No evaluator, no ValidationSchedule, not a trainer metric: refused at attach (naming what it needs),
    with attach_speedups' message, instead of failing at the first check."""
    with pytest.raises(ValueError) as by_flag:
        attach_speedups(make_run().trainer, None, {"early_stopping": {"monitor": "val_loss"}})
    trainer = make_run().trainer
    with pytest.raises(ValueError) as alone:
        EarlyStopping(monitor="val_loss").attach(trainer)
    assert str(alone.value) == str(by_flag.value)
    assert "EarlyStopping(evaluator, ...) or a ValidationSchedule attached first" in str(alone.value)
    assert TrainingLoop.of(trainer) is None  # refused before anything was attached
    # a ValidationSchedule whose validation is off (limit_val_batches=0) is refused the same way
    run = make_run()
    ValidationSchedule(run.evaluator, loader(2), limit_val_batches=0).attach(run.trainer)
    with pytest.raises(ValueError, match=r"monitors 'val_loss'.*validation is disabled \(limit_val_batches=0"):
        EarlyStopping(run.evaluator, monitor="val_loss").attach(run.trainer)
