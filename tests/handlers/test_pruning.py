"""The pruning handler (ignite_speed/handlers/pruning.py) in one process: the step it reports in each unit, the
validation run it prunes at, the stop reason and message, the minimums, replayed validation runs, bad inputs."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
import torch
from ignite.engine import Engine, Events

from ignite_speed.handlers import LoopLimits, Pruning, StopController, TrainingLoop, ValidationSchedule

BATCHES = 4  # per epoch


def _run(
    *,
    unit: str = "steps",
    prune_at: int | None = None,
    val_check_interval: Any = 2,
    max_epochs: int = 4,
    min_epochs: int = 0,
    accumulate: int = 1,
    clock: Any = None,
) -> dict[str, Any]:
    """Train a small linear model; the evaluator's ``val_acc`` is the validation run's index; ``should_prune``
    prunes at the ``prune_at``-th report (1-based)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def step(engine: Engine, batch: float) -> float:
        x = torch.full((2, 1), float(batch))
        loss = torch.nn.functional.mse_loss(model(x), 2 * x)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss.item()

    trainer = Engine(step)
    evaluator = Engine(lambda e, b: None)
    runs: list[int] = []

    @evaluator.on(Events.COMPLETED)
    def score(e: Engine) -> None:
        runs.append(trainer.state.iteration)
        e.state.metrics["val_acc"] = float(len(runs))

    reports: list[tuple[float, float]] = []

    def should_prune(value: float, step: float) -> bool:
        reports.append((value, step))
        return prune_at is not None and len(reports) >= prune_at

    LoopLimits(max_epochs=max_epochs, min_epochs=min_epochs).attach(trainer)
    ValidationSchedule(evaluator, [0], val_check_interval=val_check_interval, num_sanity_val_steps=0).attach(trainer)
    pruning = Pruning("val_acc", should_prune, unit=unit).attach(trainer)
    loop = TrainingLoop.of(trainer)
    if accumulate > 1:
        loop.configure(accumulate=accumulate, batched_fetch=True, rank_failure_timeout=datetime.timedelta(seconds=30))
    if clock is not None:
        loop.clock.time_source = clock
    trainer.run(list(range(BATCHES)))
    controller = StopController.of(trainer)
    assert controller is not None
    return {
        "reports": reports,
        "val_at": runs,
        "iteration": trainer.state.iteration,
        "reason": controller.stop_reason.value,
        "message": controller.stop_message,
        "handler": pruning,
        "loop": loop,
    }


def test_reports_every_validation_run_mid_epoch_too_in_optimizer_steps():
    r = _run(val_check_interval=2, max_epochs=2)
    assert r["val_at"] == [2, 4, 6, 8]
    assert r["reports"] == [(1.0, 2), (2.0, 4), (3.0, 6), (4.0, 8)]
    assert r["reason"] == "max_epochs"
    assert r["handler"].reports == 4 and r["handler"].pruned_at is None


def test_steps_are_optimizer_steps_under_gradient_accumulation():
    r = _run(val_check_interval=2, max_epochs=1, accumulate=2)
    assert [s for _, s in r["reports"]] == [1, 2]


def test_prunes_at_the_validation_run_the_search_says_with_reason_and_message():
    r = _run(prune_at=3, val_check_interval=2)
    assert r["iteration"] == 6  # the third validation run (iteration 6) ends training at that batch
    assert r["reason"] == "pruned"
    assert r["message"] == "pruned at steps 6: val_acc=3"
    assert r["handler"].pruned_at == 6


def test_epochs_unit_reports_fractional_epochs():
    r = _run(unit="epochs", prune_at=3, val_check_interval=2)
    assert [s for _, s in r["reports"]] == [0.5, 1.0, 1.5]
    assert r["message"] == "pruned at epochs 1.5: val_acc=3"


def test_seconds_unit_reports_training_seconds_of_the_loop_clock():
    ticks = iter(range(0, 10_000, 1))  # every read of the clock advances it by one second
    r = _run(unit="seconds", prune_at=2, val_check_interval=2, clock=lambda: float(next(ticks)))
    steps = [s for _, s in r["reports"]]
    assert len(steps) == 2 and 0 < steps[0] < steps[1]
    assert r["message"] == f"pruned at seconds {steps[1]:.4g}: val_acc=2"


def test_min_epochs_defers_a_prune_until_they_are_met():
    r = _run(prune_at=1, val_check_interval=2, min_epochs=2)
    # pruned at the first validation run (step 2), deferred: training stops at the end of epoch 2 (iteration 8)
    assert r["iteration"] == 8 and r["reason"] == "pruned"
    assert r["message"] == "pruned at steps 2: val_acc=1"
    assert len(r["reports"]) == 4  # the search is still told about every run meanwhile


def test_a_replayed_validation_run_is_asked_again_but_not_reported_twice():
    handler = _run(max_epochs=1)["handler"]
    state = handler.state_dict()
    assert state == {"reports": 2, "last_reported_batch": 4, "pruned_at": None}
    asked: list[bool] = []

    class Recorder(Pruning):
        def ask(self, value: float, step: float, first: bool) -> bool:
            asked.append(first)
            return False

    trainer = Engine(lambda e, b: 0.0)
    LoopLimits(max_epochs=1).attach(trainer)
    again = Recorder("val_acc").attach(trainer)
    again.load_state_dict(state)
    TrainingLoop.of(trainer).progress.total_batches = 4  # where the saved run's last report was
    again.on_validation_end({"val_acc": 2.0})
    assert asked == [False] and again.reports == 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"monitor": "", "should_prune": None}, "Pruning(monitor=''): accepted: a metric name"),
        (
            {"monitor": "val_acc", "unit": "batches"},
            "Pruning(unit='batches'): accepted: one of ['steps', 'epochs', 'seconds']",
        ),
    ],
)
def test_bad_arguments_name_the_argument_the_value_and_what_is_accepted(kwargs, message):
    with pytest.raises(ValueError) as err:
        Pruning(**kwargs)
    assert message in str(err.value)


def test_a_missing_monitor_names_the_available_metrics():
    trainer = Engine(lambda e, b: 0.0)
    handler = Pruning("val_acc", lambda v, s: False).attach(trainer)
    with pytest.raises(RuntimeError, match=r"could not find the monitor 'val_acc'.*available: \['val_loss'\]"):
        handler.on_validation_end({"val_loss": 1.0})


def _never_prune(value: float, step: float) -> bool:
    raise AssertionError("no validation run may happen")


def test_refused_at_attach_where_the_schedule_cannot_validate():
    """A trial with no validation run would never be reported to the search, nor pruned: refused, naming why.
    The refused handler is not left on the trainer: another one is judged afresh."""
    for schedule_kwargs, val_data in (({"limit_val_batches": 0}, [0]), ({}, [])):
        trainer, evaluator = Engine(lambda e, b: 0.0), Engine(lambda e, b: None)
        ValidationSchedule(evaluator, val_data, num_sanity_val_steps=0, **schedule_kwargs).attach(trainer)
        refused = Pruning("val_acc", _never_prune)
        with pytest.raises(ValueError) as err:
            refused.attach(trainer)
        assert str(err.value).startswith(
            "Pruning(monitor='val_acc', unit='steps') reports the validation runs of the schedule to the search, but "
            "validation is disabled (limit_val_batches=0, or no or empty val_data), so the trial would never be "
            "reported or pruned; accepted: validation enabled"
        )
        assert not refused.attached and refused not in list(TrainingLoop.of(trainer).handlers)
        with pytest.raises(ValueError, match="but validation is disabled"):  # not "already has a Pruning attached"
            Pruning("val_acc", _never_prune).attach(trainer)


@pytest.mark.parametrize("with_schedule", [False, True])
def test_refused_at_the_run_start_without_validation(with_schedule):
    """Without a schedule (or with one attached after the pruning handler that has nothing to validate on) the
    run is refused when it starts, before any batch: the weights stay as they were."""
    model = torch.nn.Linear(1, 1)
    before = model.weight.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def step(engine: Engine, batch: float) -> None:
        torch.nn.functional.mse_loss(model(torch.ones(1, 1)), torch.zeros(1, 1)).backward()
        opt.step()

    trainer = Engine(step)
    Pruning("val_acc", _never_prune).attach(trainer)
    if with_schedule:
        ValidationSchedule(Engine(lambda e, b: None), [], num_sanity_val_steps=0).attach(trainer)
    why = "validation is disabled" if with_schedule else "no ValidationSchedule is attached to the trainer"
    with pytest.raises(ValueError, match=f"reports the validation runs of the schedule to the search, but {why}"):
        trainer.run([0, 1], max_epochs=1)
    assert trainer.state.iteration == 0 and torch.equal(model.weight, before)
