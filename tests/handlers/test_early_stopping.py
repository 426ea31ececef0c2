"""Early stopping: the pure decision, and the class on real Ignite engines (standalone ``attach``).

Numbers follow ``lightning-semantics.md`` §12 (cases 44-64): 10 training batches per epoch, one
scripted validation value per validation run. Cases that need ``attach_speedups``' validation
scheduling (the extra validation run, ``fast_dev_run``) are in ``test_early_stopping_speedups.py``.
"""

from __future__ import annotations

import datetime
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from ignite.engine import Engine, Events
from ignite.metrics import Average

from ignite_speed.config import BatchLimit, EarlyStoppingOptions, SpeedConfig, validate_early_stopping_kwargs
from ignite_speed.handlers import EarlyStopping, LoopLimits
from ignite_speed.handlers.early_stopping_rule import (
    EarlyStoppingReason,
    ValidationCadence,
    checks_at_epoch_end,
    decide,
)
from ignite_speed.handlers.nan_guard import NonFiniteLossGuard, first_non_finite
from ignite_speed.loop.stop import StopController, StopReason
from tests.helpers import mse_step

R = EarlyStoppingReason
N_TRAIN = 10


# ---------------------------------------------------------------------------------------------- harness


@dataclass
class Run:
    trainer: Engine
    evaluator: Engine
    es: EarlyStopping
    model: torch.nn.Module
    val_at: list[int] = field(default_factory=list)  # trainer iterations at which validation ran
    weights_at_check: list[torch.Tensor] = field(default_factory=list)

    @property
    def batches(self) -> int:
        return self.trainer.state.iteration

    @property
    def epochs(self) -> int:
        return self.trainer.state.epoch

    @property
    def controller(self) -> StopController:
        controller = StopController.of(self.trainer)
        assert controller is not None
        return controller


def run_es(
    values: Sequence[float] | None,
    *,
    max_epochs: int = 20,
    val_every_iters: int | None = None,
    val_every_epochs: int = 1,
    metric: str = "val_loss",
    minimums: dict[str, Any] | None = None,
    **es_kwargs: Any,
) -> Run:
    """Train a Linear(1, 1) for up to ``max_epochs`` epochs of 10 batches; validation (an evaluator run
    over 5 batches) logs ``values[k]`` (the last value repeats) as ``metric`` at its k-th run. ``minimums``
    (``min_epochs``, ``min_steps``) go to the trainer's stop controller through a ``LoopLimits``."""
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    data = [(torch.full((2, 1), float(i)), torch.full((2, 1), 2.0 * i)) for i in range(N_TRAIN)]

    trainer = Engine(mse_step(model, opt))
    evaluator = Engine(lambda engine, batch: None)
    run = Run(trainer, evaluator, None, model)  # type: ignore[arg-type]

    @evaluator.on(Events.COMPLETED)
    def log_value(engine: Engine) -> None:
        k = len(run.val_at)
        run.val_at.append(trainer.state.iteration)
        if values is not None:
            engine.state.metrics[metric] = values[min(k, len(values) - 1)]
        run.weights_at_check.append(model.weight.detach().clone())

    def validate(_: Engine) -> None:
        evaluator.run(list(range(5)))

    if val_every_iters is not None:
        trainer.add_event_handler(Events.ITERATION_COMPLETED(every=val_every_iters), validate)
    else:
        trainer.add_event_handler(Events.EPOCH_COMPLETED(every=val_every_epochs), validate)
    if minimums:
        LoopLimits(**minimums).attach(trainer)
    es_kwargs.setdefault("monitor", metric)
    run.es = EarlyStopping(evaluator, model=model, **es_kwargs).attach(trainer)
    trainer.run(data, max_epochs=max_epochs)
    return run


CONSTANT = [1.0]

# ---------------------------------------------------------------------------------------------- §12 cases


def test_case44_val_check_interval_half():
    r = run_es(CONSTANT, val_every_iters=5, patience=2)
    assert (r.batches, r.val_at, r.es.checks, r.epochs) == (15, [5, 10, 15], 3, 2)
    assert (r.es.stopped_epoch, r.es.wait_count, r.es.best_score) == (1, 2, 1.0)
    assert r.es.stopping_reason is R.PATIENCE_EXHAUSTED
    assert r.controller.stop_reason is StopReason.EARLY_STOPPING
    assert r.es.stopping_reason_message == (
        "Monitored metric val_loss did not improve in the last 2 records. Best score: 1 (patience 2); stopping"
    )


def test_case45_check_val_every_2_epochs():
    r = run_es(CONSTANT, val_every_epochs=2, patience=3)
    assert (r.batches, r.val_at, r.es.stopped_epoch, r.es.wait_count) == (80, [20, 40, 60, 80], 7, 3)


@pytest.mark.parametrize("on_epoch_end", [True, None])
def test_case46_defaults(on_epoch_end):
    r = run_es(CONSTANT, check_on_train_epoch_end=on_epoch_end, monitor="val_loss")
    assert r.es.checks_at_epoch_end is bool(on_epoch_end)
    assert (r.epochs, r.batches, r.es.stopped_epoch, r.es.wait_count) == (4, 40, 3, 3)
    assert r.es.stopping_reason is R.PATIENCE_EXHAUSTED


def test_case47_min_delta_strict():
    r = run_es([2.0, 1.5, 1.25, 1.0, 0.9], monitor="val_loss", min_delta=0.5, patience=2)
    assert (r.epochs, r.es.best_score, r.es.wait_count, r.es.stopped_epoch) == (5, 1.25, 2, 4)


def test_case48_negative_min_delta_refused():
    with pytest.raises(ValueError, match=r"min_delta=-0\.5 is negative; accepted: a finite number >= 0"):
        EarlyStopping(monitor="val_loss", min_delta=-0.5)
    with pytest.raises(ValueError, match=r"early_stopping\['min_delta'\]=-0\.5 is negative"):
        SpeedConfig(early_stopping={"monitor": "val_loss", "min_delta": -0.5})


def test_case49_max_mode_min_delta():
    r = run_es([1.0, 1.5], monitor="acc", mode="max", min_delta=0.5, patience=1, metric="acc")
    assert (r.epochs, r.es.best_score, r.es.stopping_reason) == (2, 1.0, R.PATIENCE_EXHAUSTED)


def test_case50_missing_monitor_strict():
    with pytest.raises(RuntimeError, match=r"could not find the monitor 'val_loss'.*available metrics: \['other'\]"):
        run_es([1.0], monitor="val_loss", metric="other")


def test_case50_missing_monitor_strict_raises_after_epoch_0():
    val_at: list[int] = []
    with pytest.raises(RuntimeError):
        run_es_probe(val_at)
    assert val_at == [10]  # 10 training batches and 1 validation run


def run_es_probe(seen: list[int]) -> None:
    trainer = Engine(lambda e, b: 0.0)
    evaluator = Engine(lambda e, b: None)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: evaluator.run([0]))
    evaluator.add_event_handler(Events.COMPLETED, lambda _: seen.append(trainer.state.iteration))
    EarlyStopping(evaluator, monitor="val_loss").attach(trainer)
    trainer.run(list(range(N_TRAIN)), max_epochs=3)


def test_case50_missing_monitor_not_strict_warns():
    with pytest.warns(RuntimeWarning, match="monitor 'val_loss' is missing"):
        r = run_es([1.0], monitor="val_loss", metric="other", strict=False, verbose=True, max_epochs=3)
    assert (r.epochs, r.batches, r.es.checks, r.es.stopping_reason) == (3, 30, 0, R.NOT_STOPPED)


def test_case51_nan_stops():
    r = run_es([3.0, 2.0, math.nan], monitor="val_loss", patience=10)
    assert (r.epochs, r.es.best_score, r.es.stopping_reason, r.es.stopped_epoch) == (3, 2.0, R.NON_FINITE_METRIC, 2)
    assert r.es.stopping_reason_message == (
        "Monitored metric val_loss = nan is not finite. Previous best value was 2; stopping"
    )


def test_case51_nan_without_check_finite_counts_as_no_improvement():
    r = run_es([3.0, 2.0, math.nan], monitor="val_loss", patience=2, check_finite=False)
    assert (r.epochs, r.es.checks, r.es.best_score, r.es.stopping_reason) == (4, 4, 2.0, R.PATIENCE_EXHAUSTED)


def test_case51_inf_at_second_check():
    r = run_es([3.0, math.inf], monitor="val_loss", patience=10)
    assert (r.epochs, r.es.stopping_reason, r.es.wait_count) == (2, R.NON_FINITE_METRIC, 0)


def test_case52_stopping_threshold_is_strict():
    r = run_es([1.0, 0.7, 0.5, 0.4], monitor="val_loss", stopping_threshold=0.5)
    assert (r.epochs, r.es.best_score, r.es.stopping_reason) == (4, 0.5, R.STOPPING_THRESHOLD)


def test_case53_divergence_threshold():
    r = run_es([1.0, 5.0, 6.0], monitor="val_loss", divergence_threshold=5.0)
    assert (r.epochs, r.es.wait_count, r.es.best_score, r.es.stopping_reason) == (3, 1, 1.0, R.DIVERGENCE_THRESHOLD)
    r = run_es([0.9, 0.5, 0.4], monitor="acc", metric="acc", mode="max", divergence_threshold=0.5)
    assert (r.epochs, r.es.stopping_reason) == (3, R.DIVERGENCE_THRESHOLD)


def test_case54_check_order():
    r = run_es([5.0], monitor="val_loss", stopping_threshold=10.0, divergence_threshold=0.0)
    assert (r.epochs, r.es.stopping_reason, r.es.best_score) == (1, R.STOPPING_THRESHOLD, math.inf)
    r = run_es([math.nan], monitor="val_loss", divergence_threshold=0.0)
    assert (r.epochs, r.es.stopping_reason) == (1, R.NON_FINITE_METRIC)


def test_case55_min_epochs_defers():
    r = run_es(CONSTANT, monitor="val_loss", patience=1, minimums={"min_epochs": 5})
    assert (r.epochs, r.batches, len(r.val_at), r.es.wait_count, r.es.stopped_epoch) == (5, 50, 5, 4, 4)
    assert r.controller.stop_reason is StopReason.EARLY_STOPPING


def test_case56_min_steps_defers_to_mid_epoch():
    # as with attach_speedups (and Lightning 2.6.6): the stop at step 25 ends the partial epoch, whose
    # EPOCH_COMPLETED handlers run, so the app's own validation runs once more and early stopping checks it
    r = run_es(CONSTANT, monitor="val_loss", patience=1, minimums={"min_epochs": 1, "min_steps": 25})
    assert (r.batches, r.val_at, r.epochs, r.es.stopped_epoch, r.es.wait_count) == (25, [10, 20, 25], 3, 2, 2)


def test_case57_reason_sticks_when_the_metric_improves_later():
    r = run_es([1.0, 1.0, 0.8, 0.6, 0.4, 0.2], monitor="val_loss", patience=1, minimums={"min_epochs": 6})
    assert (r.epochs, r.es.stopped_epoch, r.es.wait_count, r.es.best_score) == (6, 1, 0, 0.2)
    assert r.es.stopping_reason is R.PATIENCE_EXHAUSTED


def test_case58_validation_every_batch_but_one_check_per_epoch():
    assert checks_at_epoch_end(None, ValidationCadence(BatchLimit("count", 1), 1)) is True
    r = run_es(CONSTANT, monitor="val_loss", val_every_iters=1, check_on_train_epoch_end=True)
    assert (r.epochs, len(r.val_at), r.es.checks, r.es.stopped_epoch) == (4, 40, 4, 3)


def test_case59_epoch_end_checks_with_two_validations_per_epoch():
    r = run_es(CONSTANT, monitor="val_loss", val_every_iters=5, check_on_train_epoch_end=True, patience=2)
    assert (r.epochs, len(r.val_at), r.es.checks) == (3, 6, 3)


def test_case60_stale_metric_at_epoch_end():
    r = run_es(
        CONSTANT, monitor="val_loss", val_every_epochs=2, check_on_train_epoch_end=True, strict=False, patience=3
    )
    assert (r.epochs, len(r.val_at), r.es.checks, r.es.stopped_epoch) == (5, 2, 4, 4)


def test_case60_strict_raises_after_epoch_0():
    with pytest.raises(RuntimeError, match="could not find the monitor 'val_loss'"):
        run_es(CONSTANT, monitor="val_loss", val_every_epochs=2, check_on_train_epoch_end=True)


def test_case60_sanity_metrics_do_not_count():
    # evaluator metrics left from a run before training (a sanity check) are not the monitor's value
    trainer = Engine(lambda e, b: 0.0)
    evaluator = Engine(lambda e, b: None)
    evaluator.add_event_handler(Events.COMPLETED, lambda e: e.state.metrics.update(val_loss=1.0))
    trainer.add_event_handler(Events.EPOCH_COMPLETED(every=2), lambda _: evaluator.run([0]))
    es = EarlyStopping(evaluator, monitor="val_loss", check_on_train_epoch_end=True, strict=False, patience=3).attach(
        trainer
    )
    evaluator.run([0])
    trainer.run(list(range(N_TRAIN)), max_epochs=20)
    assert (trainer.state.epoch, es.checks) == (5, 4)


def _trainer_with_avg(name: str) -> Engine:
    trainer = Engine(lambda e, b: 1.0)
    Average(output_transform=lambda out: torch.tensor([out])).attach(trainer, name)
    return trainer


def test_case61_validation_disabled_is_refused_up_front():
    es = EarlyStopping(monitor="val_loss")  # no evaluator, no ValidationSchedule: nothing validates
    with pytest.raises(ValueError, match=r"monitors 'val_loss'.*validation is disabled"):
        es.attach(Engine(lambda e, b: None))
    # a metric of the trainer needs no validation
    trainer = _trainer_with_avg("train_loss")
    es = EarlyStopping(monitor="train_loss").attach(trainer)
    trainer.run(list(range(N_TRAIN)), max_epochs=1)
    assert es.checks_at_epoch_end


def test_trainer_metric_without_evaluator():
    trainer = _trainer_with_avg("train_loss")
    es = EarlyStopping(monitor="train_loss", patience=2).attach(trainer)
    trainer.run(list(range(N_TRAIN)), max_epochs=10)
    assert (trainer.state.epoch, es.checks, es.stopped_epoch, es.best_score) == (3, 3, 2, 1.0)


def test_case62_patience_zero():
    r = run_es([1.0, 0.5, 0.6], monitor="val_loss", patience=0)
    assert (r.epochs, r.es.best_score, r.es.stopping_reason) == (3, 0.5, R.PATIENCE_EXHAUSTED)


@pytest.mark.parametrize(
    "interval, every_n_epochs, expected",
    [
        (BatchLimit("fraction", 1.0), 1, True),
        (BatchLimit("fraction", 0.5), 1, False),
        (BatchLimit("fraction", 1.0), 2, False),
        (BatchLimit("count", 1), 1, True),
        (BatchLimit("count", 5), 1, False),
        (BatchLimit("count", 10), None, False),
        (1.0, 1, True),
        (1, 1, True),
        (0.5, 1, False),
        (None, 1, True),
        (datetime.timedelta(minutes=1), 1, False),  # case 64: Lightning 2.6.6 raises AttributeError here
    ],
)
def test_check_on_train_epoch_end_default(interval, every_n_epochs, expected):
    # the one placement rule (EarlyStopping resolves it at each run start: checks_at_epoch_end there)
    cadence = ValidationCadence(interval, every_n_epochs)
    assert checks_at_epoch_end(None, cadence) is expected
    assert checks_at_epoch_end(not expected, cadence) is (not expected)


# ---------------------------------------------------------------------------------------------- pure decision


def _replay(values: Sequence[float], positions: Sequence[int] | None = None, **kw: Any) -> list[Any]:
    c = EarlyStoppingOptions("m", **kw)
    best = math.inf if c.mode == "min" else -math.inf
    wait, since, out = 0, 0, []
    for i, v in enumerate(values):
        pos = positions[i] if positions is not None else i + 1
        d = decide(v, best=best, wait=wait, since=since, position=pos, options=c)
        best, wait, since = d.best_score, d.wait_count, d.since
        out.append(d)
        if d.should_stop:
            break
    return out


def test_decide_first_three_fields_are_the_contract():
    should_stop, reason, message, *_ = decide(
        1.0, best=math.inf, wait=0, since=0, position=1, options=EarlyStoppingOptions("val_loss")
    )
    assert (should_stop, reason) == (False, R.NOT_STOPPED)
    assert message == "Metric val_loss improved. New best score: 1"


def _decide_once(current, best=math.inf, wait=0, **criteria):
    return decide(
        current, best=best, wait=wait, since=0, position=wait + 1, options=EarlyStoppingOptions("val_loss", **criteria)
    )


@pytest.mark.parametrize(
    "current,best,wait,criteria,reason,message",
    [
        (
            math.nan,
            0.5,
            0,
            {},
            R.NON_FINITE_METRIC,
            "Monitored metric val_loss = nan is not finite. Previous best value was 0.5; stopping",
        ),
        (
            0.05,
            0.5,
            0,
            {"stopping_threshold": 0.1},
            R.STOPPING_THRESHOLD,
            "Stopping threshold reached: val_loss = 0.05 < stopping_threshold=0.1; stopping",
        ),
        (
            0.995,
            -math.inf,
            0,
            {"mode": "max", "stopping_threshold": 0.99},
            R.STOPPING_THRESHOLD,
            "Stopping threshold reached: val_loss = 0.995 > stopping_threshold=0.99; stopping",
        ),
        (
            12.0,
            0.5,
            0,
            {"divergence_threshold": 10.0},
            R.DIVERGENCE_THRESHOLD,
            "Divergence threshold reached: val_loss = 12 > divergence_threshold=10; stopping",
        ),
        (
            0.1,
            0.9,
            0,
            {"mode": "max", "divergence_threshold": 0.2},
            R.DIVERGENCE_THRESHOLD,
            "Divergence threshold reached: val_loss = 0.1 < divergence_threshold=0.2; stopping",
        ),
        (
            0.4,
            0.5,
            1,
            {"min_delta": 0.05},
            R.NOT_STOPPED,
            "Metric val_loss improved by 0.1 > min_delta = 0.05. New best score: 0.4",
        ),
        (
            0.4,
            0.5,
            1,
            {"min_delta": 0.1, "min_delta_mode": "rel"},
            R.NOT_STOPPED,
            "Metric val_loss improved by 0.1 > min_delta = 0.1 x |best|. New best score: 0.4",
        ),
        (0.7, math.inf, 0, {}, R.NOT_STOPPED, "Metric val_loss improved. New best score: 0.7"),
        (
            0.6,
            0.5,
            0,
            {"patience": 3},
            R.NOT_STOPPED,
            "Metric val_loss = 0.6 did not improve: 1 of patience 3 records without improvement. Best score: 0.5",
        ),
        (
            0.6,
            0.5,
            2,
            {"patience": 3},
            R.PATIENCE_EXHAUSTED,
            "Monitored metric val_loss did not improve in the last 3 records. Best score: 0.5 (patience 3); stopping",
        ),
        (
            0.6,
            0.5,
            1,
            {"patience": 2, "patience_unit": "epochs"},
            R.PATIENCE_EXHAUSTED,
            "Monitored metric val_loss did not improve in the last 2 epochs. Best score: 0.5 (patience 2); stopping",
        ),
        (
            0.6,
            0.55,
            0,
            {"patience": 1, "baseline": 0.5},
            R.BASELINE_NOT_MET,
            "Monitored metric val_loss did not beat baseline=0.5 in the last 1 records. Best score: 0.55; stopping",
        ),
    ],
)
def test_decide_messages_start_with_lightnings_phrases(current, best, wait, criteria, reason, message):
    """Lightning 2.6 EarlyStopping's reason strings begin "Monitored metric ... is not finite.", "Stopping
    threshold reached:", "Divergence threshold reached:", "Monitored metric ... did not improve in the last N
    records." and "Metric ... improved"; ours begin the same way and add the threshold, patience and min_delta."""
    d = _decide_once(current, best, wait, **criteria)
    assert (d.reason, d.message) == (reason, message)
    assert d.should_stop is (reason is not R.NOT_STOPPED)


def test_decide_warm_up_message():
    d = decide(0.7, best=0.9, wait=0, since=0, position=1, options=EarlyStoppingOptions("val_loss"), warmup=True)
    assert d.message == "Metric val_loss = 0.7 during warm-up (start_from_epoch). Best score so far: 0.7"


def test_decide_plus_inf_first_without_check_finite():
    (d,) = _replay([math.inf], check_finite=False, patience=5)
    assert (d.wait_count, d.best_score, d.should_stop) == (1, math.inf, False)


def test_decide_relative_min_delta():
    ds = _replay([1.0, 0.95, 0.85, 0.8, 0.78], min_delta=0.1, min_delta_mode="rel", patience=2)
    assert [d.improved for d in ds] == [True, False, True, False, False]
    assert ds[-1].should_stop and ds[-1].best_score == 0.85
    # negative scores: the threshold follows |best|
    ds = _replay([-1.0, -1.05, -1.2], min_delta=0.1, min_delta_mode="rel", patience=5)
    assert [d.improved for d in ds] == [True, False, True]
    ds = _replay([10.0, 10.5, 11.5], mode="max", min_delta=0.1, min_delta_mode="rel", patience=5)
    assert [d.improved for d in ds] == [True, False, True]


def test_decide_baseline_not_met():
    ds = _replay([0.9, 0.8, 0.7], baseline=0.5, patience=3)
    assert [d.wait_count for d in ds] == [1, 2, 3]
    assert ds[-1].reason is R.BASELINE_NOT_MET and ds[-1].best_score == 0.7
    assert ds[-1].message == (
        "Monitored metric m did not beat baseline=0.5 in the last 3 records. Best score: 0.7; stopping"
    )


def test_decide_baseline_met_then_patience():
    ds = _replay([0.9, 0.4, 0.45, 0.46, 0.47], baseline=0.5, patience=3)
    assert [d.wait_count for d in ds] == [1, 0, 1, 2, 3]
    assert ds[-1].reason is R.PATIENCE_EXHAUSTED and ds[-1].best_score == 0.4


def test_decide_baseline_equal_is_not_beaten():
    ds = _replay([0.5], baseline=0.5, patience=0)
    assert ds[-1].reason is R.BASELINE_NOT_MET


def test_decide_patience_in_steps():
    ds = _replay([1.0, 1.0, 1.0, 1.0], positions=[10, 20, 30, 40], patience=25, patience_unit="steps")
    assert [d.wait_count for d in ds] == [0, 10, 20, 30]
    assert ds[-1].should_stop


def test_decide_warmup_tracks_best_only():
    c = EarlyStoppingOptions("m", patience=0, stopping_threshold=0.1)
    d = decide(0.05, best=1.0, wait=0, since=0, position=3, options=c, warmup=True)
    assert (d.should_stop, d.best_score, d.wait_count, d.since, d.improved) == (False, 0.05, 0, 3, True)
    d = decide(math.nan, best=1.0, wait=0, since=0, position=3, options=c, warmup=True)
    assert (d.should_stop, d.best_score, d.improved) == (False, 1.0, False)


# ---------------------------------------------------------------------------------------------- extras on engines


def test_patience_in_epochs_independent_of_cadence():
    # validation every 2 epochs, patience 3 epochs: stop 4 epochs after the best (Lightning's checks: 80 batches)
    r = run_es(CONSTANT, monitor="val_loss", val_every_epochs=2, patience=3, patience_unit="epochs")
    assert (r.batches, r.val_at, r.es.wait_count, r.es.stopped_epoch) == (60, [20, 40, 60], 4, 5)
    r = run_es(CONSTANT, monitor="val_loss", val_every_iters=5, patience=1, patience_unit="epochs")
    assert (r.batches, r.es.wait_count, r.es.stopped_epoch) == (15, 1, 1)


def test_patience_in_steps_on_engines():
    r = run_es(CONSTANT, monitor="val_loss", patience=25, patience_unit="steps")
    assert (r.batches, r.es.wait_count, r.es.stopping_reason) == (40, 30, R.PATIENCE_EXHAUSTED)


def test_baseline_on_engines():
    r = run_es([0.9, 0.8, 0.7, 0.6], monitor="val_loss", baseline=0.5, patience=3)
    assert (r.epochs, r.es.stopping_reason, r.es.best_score) == (3, R.BASELINE_NOT_MET, 0.7)
    assert r.controller.stop_reason is StopReason.EARLY_STOPPING


def test_start_from_epoch_warmup():
    # NaN, a threshold hit and no improvement during the warm-up epochs 0..2: nothing stops or latches
    r = run_es(
        [2.0, math.nan, 0.01, 1.0, 1.0], monitor="val_loss", patience=1, start_from_epoch=3, stopping_threshold=0.001
    )
    assert (r.epochs, r.es.stopped_epoch, r.es.stopping_reason) == (4, 3, R.PATIENCE_EXHAUSTED)
    assert r.es.best_score == 0.01  # tracked during the warm-up
    r = run_es(CONSTANT, monitor="val_loss", patience=0, start_from_epoch=2, max_epochs=2)
    assert (r.epochs, r.es.wait_count, r.es.stopping_reason, r.es.checks) == (2, 0, R.NOT_STOPPED, 2)


def test_restore_best_weights_after_early_stop():
    r = run_es([3.0, 1.0, 2.0, 2.0], monitor="val_loss", patience=2, restore_best_weights=True)
    assert r.epochs == 4
    assert not torch.equal(r.model.weight, r.weights_at_check[-1])
    assert torch.equal(r.model.weight, r.weights_at_check[1])  # the weights of the best check
    assert r.model.weight.device.type == "cpu"


def test_restore_best_weights_when_training_ends_without_early_stop():
    r = run_es([3.0, 1.0, 2.0], monitor="val_loss", patience=10, restore_best_weights=True, max_epochs=3)
    assert r.es.stopping_reason is R.NOT_STOPPED
    assert torch.equal(r.model.weight, r.weights_at_check[1])


def test_restore_best_weights_needs_the_model():
    with pytest.raises(ValueError, match=r"restore_best_weights=True\) needs the model"):
        EarlyStopping(Engine(lambda e, b: 0), monitor="val_loss", restore_best_weights=True).attach(
            Engine(lambda e, b: 0)
        )


def test_restore_best_weights_of_wrapped_model():
    model = torch.nn.DataParallel(torch.nn.Linear(2, 1))  # CPU: a wrapper with a "module." prefix, like DDP
    trainer, evaluator = Engine(lambda e, b: 0.0), Engine(lambda e, b: None)
    es = EarlyStopping(evaluator, monitor="val_loss", restore_best_weights=True, model=model)
    values = iter([1.0, 2.0, 2.0])
    best = {}

    @evaluator.on(Events.COMPLETED)
    def log(e: Engine) -> None:
        e.state.metrics["val_loss"] = next(values)
        if not best:
            best.update({k: v.clone() for k, v in model.module.state_dict().items()})

    @trainer.on(Events.ITERATION_COMPLETED)
    def drift(_: Engine) -> None:
        with torch.no_grad():
            model.module.weight.add_(1.0)

    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: evaluator.run([0]))
    es.attach(trainer)
    trainer.run([0, 1], max_epochs=3)
    assert set(es.state_dict()["best_weights"]) == {"weight", "bias"}
    assert torch.equal(model.module.weight, best["weight"])


# ---------------------------------------------------------------------------------------------- state


def test_state_dict_round_trip_weights_only():
    r = run_es([3.0, 1.0, 2.0, 2.0], monitor="val_loss", patience=2, restore_best_weights=True)
    state = r.es.state_dict()
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    assert loaded["stopping_reason"] == R.PATIENCE_EXHAUSTED.value and loaded["best_score"] == 1.0
    es = EarlyStopping(monitor="val_loss", patience=7, restore_best_weights=True, model=r.model)
    es.load_state_dict(loaded)
    assert (es.wait_count, es.stopped_epoch, es.best_score, es.patience, es.checks) == (2, 3, 1.0, 2, 4)
    assert es.stopping_reason is R.PATIENCE_EXHAUSTED and es.stopping_reason_message == r.es.stopping_reason_message
    assert es.state_dict().keys() == state.keys()
    assert torch.equal(es.state_dict()["best_weights"]["weight"], r.weights_at_check[1])
    plain = EarlyStopping(monitor="val_loss").state_dict()
    assert all(isinstance(v, (int, float, str, type(None))) for v in plain.values())
    assert r.es.state_key == "EarlyStopping{'monitor': 'val_loss', 'mode': 'min'}"


def test_load_lightning_state_dict():
    es = EarlyStopping(monitor="val_loss")
    es.load_state_dict(
        {
            "wait_count": 1,
            "stopped_epoch": 4,
            "best_score": torch.tensor(0.25),
            "patience": 5,
            "stopping_reason": 3,
            "stopping_reason_message": "m",
        }
    )
    assert (es.wait_count, es.best_score, es.patience, es.stopping_reason) == (1, 0.25, 5, R.PATIENCE_EXHAUSTED)
    es.load_state_dict({"wait_count": 0, "stopped_epoch": 0, "best_score": math.inf, "patience": 3})
    assert es.stopping_reason is R.NOT_STOPPED and es.stopping_reason_message is None
    with pytest.raises(ValueError, match=r"lacks \['best_score'\]"):
        es.load_state_dict({"wait_count": 0, "stopped_epoch": 0, "patience": 3})


def test_resume_continues_the_tally():
    first = run_es([1.0, 1.0], monitor="val_loss", patience=3, max_epochs=2)
    second = EarlyStopping(monitor="val_loss", patience=3)
    second.load_state_dict(first.es.state_dict())
    assert (second.wait_count, second.checks) == (1, 2)


def test_reset_forgets():
    r = run_es(CONSTANT, monitor="val_loss", patience=1, restore_best_weights=True)
    r.es.reset()
    assert (r.es.wait_count, r.es.best_score, r.es.stopping_reason, r.es.checks) == (0, math.inf, R.NOT_STOPPED, 0)
    assert "best_weights" not in r.es.state_dict()


# ---------------------------------------------------------------------------------------------- values and validation


def test_tensor_monitor_is_squeezed_and_non_scalar_refused():
    r = run_es([torch.tensor([1.0])] * 1, monitor="val_loss", patience=1)  # type: ignore[list-item]
    assert (r.epochs, r.es.best_score) == (2, 1.0)
    with pytest.raises(ValueError, match=r"needs a scalar, but the metric is a tensor of shape \(2,\)"):
        run_es([torch.tensor([1.0, 2.0])], monitor="val_loss")  # type: ignore[list-item]
    with pytest.raises(TypeError, match="needs a number or a 1-element tensor, got str"):
        run_es(["high"], monitor="val_loss")  # type: ignore[list-item]


def test_kwargs_validation_names_key_value_and_accepted():
    with pytest.raises(
        ValueError,
        match=r"early_stopping\['patiance'\] is not an EarlyStopping argument; "
        r"did you mean 'patience'\?",
    ):
        validate_early_stopping_kwargs({"monitor": "val_loss", "patiance": 3})
    with pytest.raises(ValueError, match=r"early_stopping\['monitor'\] is required"):
        validate_early_stopping_kwargs({"patience": 3})
    cases = [
        ({"patience": -1}, ValueError, r"\['patience'\]=-1 is negative; accepted: an int >= 0"),
        ({"patience": 2.0}, TypeError, r"\['patience'\]=2\.0 has type float; accepted: an int >= 0"),
        ({"patience": True}, TypeError, r"\['patience'\]=True has type bool"),
        ({"mode": "minimum"}, ValueError, r"\['mode'\]='minimum' is not known; accepted: 'min', 'max'"),
        ({"patience_unit": "batches"}, ValueError, r"accepted: 'checks', 'epochs', 'steps'"),
        ({"min_delta_mode": "pct"}, ValueError, r"accepted: 'abs', 'rel'"),
        ({"min_delta": "0.1"}, TypeError, r"\['min_delta'\]='0\.1' has type str"),
        ({"min_delta": math.nan}, ValueError, r"\['min_delta'\]=nan is not finite"),
        ({"stopping_threshold": math.inf}, ValueError, r"\['stopping_threshold'\]=inf is not finite"),
        ({"baseline": "0.5"}, TypeError, r"\['baseline'\]='0\.5' has type str; accepted: None or a finite number"),
        ({"verbose": 1}, TypeError, r"\['verbose'\]=1 has type int; accepted: True or False"),
        ({"check_on_train_epoch_end": "yes"}, TypeError, r"accepted: None \(decide from the validation"),
        ({"start_from_epoch": -2}, ValueError, r"\['start_from_epoch'\]=-2 is negative"),
        ({"monitor": ""}, TypeError, r"\['monitor'\]='' is not a metric name"),
    ]
    for extra, exc, pattern in cases:
        with pytest.raises(exc, match=pattern):
            validate_early_stopping_kwargs({"monitor": "val_loss", **extra})
    assert validate_early_stopping_kwargs({"monitor": "acc", "mode": "MAX", "min_delta": 1, "baseline": 2}) == {
        "monitor": "acc",
        "mode": "max",
        "min_delta": 1.0,
        "baseline": 2.0,
    }


def test_config_normalizes_and_class_messages():
    cfg = SpeedConfig(early_stopping={"monitor": "val_loss", "patience": 5, "min_delta": 0})
    assert cfg.early_stopping == {"monitor": "val_loss", "patience": 5, "min_delta": 0.0}
    es = EarlyStopping(**cfg.early_stopping)
    assert (es.patience, es.min_delta, es.mode) == (5, 0.0, "min")
    with pytest.raises(ValueError, match=r"EarlyStopping: mode='avg' is not known"):
        EarlyStopping(monitor="val_loss", mode="avg")
    with pytest.raises(TypeError):
        EarlyStopping()  # type: ignore[call-arg]  # monitor is required, as in Lightning 2.x


def test_attach_minimums_conflict():
    # minimums are the stop controller's, given once (LoopLimits), never to EarlyStopping
    trainer = Engine(lambda e, b: 0.0)
    StopController(min_epochs=2).bind(trainer)
    with pytest.raises(ValueError, match=r"conflicts with the trainer's stop controller \(min_epochs=2"):
        LoopLimits(min_epochs=3).attach(trainer)
    with pytest.raises(ValueError, match=r"min_steps=-1"):
        LoopLimits(min_steps=-1)
    with pytest.raises(TypeError):
        EarlyStopping(Engine(lambda e, b: None), monitor="val_loss").attach(trainer, min_epochs=3)  # type: ignore[call-arg]


def test_evaluator_runs_outside_training_are_not_checks():
    r = run_es(CONSTANT, monitor="val_loss", patience=1, max_epochs=3)
    checks = r.es.checks
    r.evaluator.run([0])  # a test run after fit
    assert r.es.checks == checks


def test_verbose_logs_with_reason(caplog):
    with caplog.at_level("INFO", logger="ignite_speed"):
        run_es(CONSTANT, monitor="val_loss", patience=1, verbose=True)
    text = caplog.text
    assert "EarlyStopping: Metric val_loss improved. New best score: 1\n" in text
    assert (
        "EarlyStopping: Monitored metric val_loss did not improve in the last 1 records. Best score: 1 "
        "(patience 1); stopping"
    ) in text


# ---------------------------------------------------------------------------------------------- non-finite loss


def _loss_trainer(outputs: Sequence[Any], **attach: Any) -> tuple[Engine, NonFiniteLossGuard]:
    it = iter(outputs)
    trainer = Engine(lambda e, b: next(it))
    guard = NonFiniteLossGuard(**attach.pop("kw", {})).attach(trainer)
    if attach:  # the minimums' home
        LoopLimits(**attach).attach(trainer)
    return trainer, guard


@pytest.mark.parametrize(
    "bad", [math.nan, math.inf, torch.tensor(math.nan), {"loss": torch.tensor([0.0, -math.inf])}, (1.0, float("nan"))]
)
def test_non_finite_loss_stops_on_that_iteration(bad):
    trainer, _ = _loss_trainer([1.0] * 6 + [bad] + [1.0] * 100)
    trainer.run(list(range(N_TRAIN)), max_epochs=5)
    controller = StopController.of(trainer)
    assert trainer.state.iteration == 7
    assert controller.stop_reason is StopReason.NON_FINITE_LOSS
    assert controller.final.source == "terminate_on_nan"
    assert "iteration 7" in controller.stop_message


def test_non_finite_loss_with_output_transform_and_minimums():
    outputs = [{"loss": 1.0, "y_pred": torch.tensor([math.nan])}] * 3 + [{"loss": math.nan}] * 100
    trainer, _ = _loss_trainer(outputs, kw={"output_transform": lambda out: out["loss"]}, min_epochs=2)
    trainer.run(list(range(N_TRAIN)), max_epochs=5)
    assert trainer.state.iteration == 4  # a non-finite loss is urgent: min_epochs does not defer it
    assert StopController.of(trainer).stop_reason is StopReason.NON_FINITE_LOSS


def test_finite_outputs_never_stop():
    trainer, _ = _loss_trainer([torch.tensor(1.0), 2, {"a": (3.0, torch.ones(2))}, None, "text", True] * 10)
    trainer.run(list(range(N_TRAIN)), max_epochs=6)
    assert trainer.state.iteration == 60


def test_first_non_finite():
    assert first_non_finite(1.0) is None
    assert first_non_finite(torch.arange(3)) is None  # integer tensors are always finite
    assert first_non_finite([torch.ones(2), {"x": torch.tensor([1.0, math.nan])}]) == "nan"
    assert first_non_finite(complex(1, math.inf)) is not None
    with pytest.raises(TypeError, match="is not callable"):
        NonFiniteLossGuard(output_transform=3)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- construction


def test_built_one_way_from_keywords_or_options():
    evaluator = Engine(lambda e, b: None)
    options = EarlyStoppingOptions("val_loss", patience=2, mode="MAX")
    assert (
        options.mode == "max"
        and EarlyStopping(evaluator, monitor="val_loss", patience=2, mode="max").options == options
    )
    es = EarlyStopping(evaluator, options=options)
    assert es.options is options and (es.monitor, es.patience, es.mode) == ("val_loss", 2, "max")
    with pytest.raises(TypeError, match=r"EarlyStopping\(options=\.\.\., patience=\.\.\.\): give the settings one way"):
        EarlyStopping(evaluator, options=options, patience=3)
    with pytest.raises(
        TypeError,
        match=r"evaluator='val_loss'\) is not an ignite Engine; the monitor is a keyword "
        r"argument: EarlyStopping\(evaluator, monitor='val_loss', \.\.\.\)",
    ):
        EarlyStopping("val_loss")  # type: ignore[arg-type]  # the old spelling, monitor first
    with pytest.raises(
        ValueError,
        match=r"EarlyStopping: patiance is not an EarlyStopping argument; did you mean "
        r"'patience'\?",
    ):
        EarlyStopping(evaluator, monitor="val_loss", patiance=3)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match=r"EarlyStopping: patience=-1 is negative"):
        EarlyStoppingOptions("val_loss", patience=-1)


def test_the_config_flag_is_validated_once_into_the_options_the_handler_keeps():
    cfg = SpeedConfig(early_stopping={"monitor": "val_loss", "mode": "MAX", "patience": 4})
    assert cfg.early_stopping == {"monitor": "val_loss", "mode": "max", "patience": 4}
    assert cfg.early_stopping_options == EarlyStoppingOptions("val_loss", mode="max", patience=4)
    assert SpeedConfig().early_stopping_options is None
    trainer, evaluator = Engine(lambda e, b: 0.0), Engine(lambda e, b: None)
    from ignite_speed import attach_speedups

    sp = attach_speedups(trainer, evaluator, cfg, val_data=[0])
    assert sp.early_stopping.options is sp.cfg.early_stopping_options  # not built (nor checked) a second time
