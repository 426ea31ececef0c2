"""TimeBudget alone in a plain Ignite app, in its three modes.

Two kinds of time: steps that sleep a known time (so CPU load barely matters), and a clock the test
advances itself (the training clock's ``time_source``), so that every duration and message is exact:
a training batch takes 0.25 s and a validation batch 0.125 s on it.
"""

from __future__ import annotations

import datetime
import time

import pytest
import torch
from ignite.engine import Engine, Events

from ignite_speed import SpeedConfig
from ignite_speed.handlers import LoopLimits, StopController, StopReason, TimeBudget, TrainingLoop, ValidationSchedule
from ignite_speed.report import EpochTime
from tests.helpers import loader


def sleepy_trainer(seconds: float) -> Engine:
    return Engine(lambda e, b: time.sleep(seconds))


# ---------------------------------------------------------------------------------------------- "step" (Lightning's)
def test_stops_after_the_batch_that_crosses_the_budget():
    """On a clock that only the step advances (0.05 s a batch): the budget of 0.12 s is crossed by batch 3,
    exactly (on the real clock, a loaded machine's 20 ms of overhead in two batches would cross it at 2)."""
    clock = [0.0]

    def step(engine: Engine, batch: object) -> None:
        clock[0] += 0.05

    trainer = Engine(step)
    TimeBudget(0.12).attach(trainer)
    TrainingLoop.of(trainer).clock.time_source = lambda: clock[0]
    trainer.run(list(range(10)), max_epochs=5)
    controller = StopController.of(trainer)
    assert (trainer.state.iteration, controller.stop_reason) == (3, StopReason.MAX_TIME)
    assert controller.stop_message.startswith("max_time=0:00:00.120000 reached after 0.1")


def test_with_loop_limits_max_epochs_is_unbounded_and_min_epochs_defers():
    trainer = sleepy_trainer(0.002)
    limits = LoopLimits(min_epochs=2).attach(trainer)
    TimeBudget({"seconds": 0.001}).attach(trainer)
    trainer.run(list(range(5)))  # no 1000-epoch default (and no warning): the time budget bounds the run
    assert limits.for_run(None, None, has_time_budget=True, accumulate=1).max_epochs == -1
    assert (trainer.state.iteration, StopController.of(trainer).stop_reason) == (10, StopReason.MAX_TIME)


@pytest.mark.parametrize("value, match", [("abc", "max_time='abc'"), (-1, "max_time=-1"), (None, "max_time=None")])
def test_bad_values_name_the_flag(value, match):
    with pytest.raises((TypeError, ValueError), match=match):
        TimeBudget(value)


def test_duration_forms():
    assert TimeBudget("00:01:00:00").max_time == datetime.timedelta(hours=1)
    assert TimeBudget({"minutes": 5}).seconds == 300.0
    assert TimeBudget(datetime.timedelta(seconds=3)).seconds == 3.0
    assert TimeBudget(60, reserve={"seconds": 15}).limit == 45.0


# ---------------------------------------------------------------------------------------------- a clock of our own
class ManualClock:
    """The seconds counter of the training clock; the engines' steps advance it."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


TRAIN_BATCH, VAL_BATCH = 0.25, 0.125


def clocked_engines(clock: ManualClock, first_batch_extra: float = 0.0) -> tuple[Engine, Engine]:
    """A real training step (Linear(1, 1), SGD) that takes 0.25 s on ``clock`` (the run's very first batch
    ``first_batch_extra`` more) and an evaluator whose batches take 0.125 s."""
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def train_step(engine: Engine, batch) -> float:
        x, y = batch
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        clock.advance(TRAIN_BATCH + (first_batch_extra if engine.state.iteration == 1 else 0.0))
        return loss.item()

    def val_step(engine: Engine, batch) -> None:
        clock.advance(VAL_BATCH)

    return Engine(train_step), Engine(val_step)


def clocked_run(
    budget: TimeBudget,
    *,
    epochs: int = 10,
    sanity: int = 0,
    every_n: int = 1,
    first_batch_extra: float = 0.0,
    min_epochs: int | None = None,
) -> tuple[Engine, Engine, ManualClock]:
    """4 training batches per epoch (1 s) and one validation run of 2 batches (0.25 s) per validating epoch."""
    clock = ManualClock()
    trainer, evaluator = clocked_engines(clock, first_batch_extra)
    LoopLimits(max_epochs=epochs, min_epochs=min_epochs).attach(trainer)
    ValidationSchedule(evaluator, loader(2), num_sanity_val_steps=sanity, check_val_every_n_epoch=every_n).attach(
        trainer
    )
    budget.attach(trainer)
    TrainingLoop.of(trainer).clock.time_source = clock
    return trainer, evaluator, clock


def outcome(trainer: Engine) -> tuple[int, int, float, str, str]:
    loop = TrainingLoop.of(trainer)
    return (
        loop.progress.epochs_done,
        loop.progress.total_batches,
        loop.clock.elapsed(),
        loop.controller.stop_reason.value,
        loop.controller.stop_message,
    )


def test_fit_stops_at_the_last_boundary_within_the_budget():
    budget = TimeBudget(4, mode="fit")
    trainer, _, _ = clocked_run(budget)
    trainer.run(loader(4))
    # epochs of 1.25 s end at 1.25, 2.5 and 3.75 s: a fourth would end at 5 s
    assert outcome(trainer) == (
        3,
        12,
        3.75,
        "max_time",
        "max_time=0:00:04: the next epoch (about 1.25 s with validation) would not fit in the 0.25 s left",
    )
    assert budget.epochs == [EpochTime(e, 1.25, 0.25, 1, True) for e in range(3)]
    assert budget.predict_next_epoch(TrainingLoop.of(trainer)) == (1.25, 1)


def test_step_stops_after_the_crossing_batch_and_epoch_finishes_the_crossing_epoch():
    trainer, _, _ = clocked_run(TimeBudget(4))
    trainer.run(loader(4))
    # the batch ending at 4 s crosses the budget; the run ends after it, with one last validation run
    assert outcome(trainer) == (4, 13, 4.25, "max_time", "max_time=0:00:04 reached after 4.000 s of training")

    trainer, _, _ = clocked_run(TimeBudget(4, mode="epoch"))
    trainer.run(loader(4))
    assert outcome(trainer) == (
        4,
        16,
        5.0,
        "max_time",
        "max_time=0:00:04 reached after 5.000 s of training (checked at the end of epoch 3, 0-based)",
    )


def test_epoch_mode_adds_no_per_batch_work():
    budget = TimeBudget(4, mode="epoch")
    trainer, _, _ = clocked_run(budget)
    assert TrainingLoop.of(trainer).handlers.hooks["on_batch_end"] == []
    budget = TimeBudget(4, mode="fit")
    trainer, _, _ = clocked_run(budget)
    assert TrainingLoop.of(trainer).handlers.hooks["on_batch_end"] == [budget.on_batch_end]


def test_the_reserve_is_held_back_in_every_mode():
    budget = TimeBudget(5, mode="fit", reserve=1)
    trainer, _, _ = clocked_run(budget)
    trainer.run(loader(4))
    assert outcome(trainer) == (
        3,
        12,
        3.75,
        "max_time",
        "max_time=0:00:05 less max_time_reserve=0:00:01: the next "
        "epoch (about 1.25 s with validation) would not fit in the 0.25 s left",
    )
    trainer, _, _ = clocked_run(TimeBudget({"seconds": 5}, reserve={"seconds": 1}))
    trainer.run(loader(4))
    assert outcome(trainer)[:4] == (4, 13, 4.25, "max_time")
    assert outcome(trainer)[4] == "max_time=0:00:05 less max_time_reserve=0:00:01 reached after 4.000 s of training"


def test_validation_time_is_part_of_the_prediction():
    # every second epoch validates; the sanity check (2 batches, 0.25 s) gives the estimate of a validation
    # run before one was measured. After epoch 0 (1 s, no validation), 1.2 s are left: 1 s of training would
    # fit, 1 s + 0.25 s of validation does not.
    budget = TimeBudget(2.2, mode="fit")
    trainer, _, _ = clocked_run(budget, sanity=2, every_n=2)
    trainer.run(loader(4))
    assert outcome(trainer) == (
        1,
        4,
        1.0,
        "max_time",
        "max_time=0:00:02.200000: the next epoch (about 1.25 s with validation) would not fit in the 1.20 s left",
    )
    # epochs of 1 s and 1.25 s alternate, each predicted as it will be: at 4.5 s the next (1 s, no validation)
    # does not fit in 0.9 s
    budget = TimeBudget(5.4, mode="fit")
    trainer, _, _ = clocked_run(budget, every_n=2)
    trainer.run(loader(4))
    assert [e.seconds for e in budget.epochs] == [1.0, 1.25, 1.0, 1.25]
    assert outcome(trainer) == (
        4,
        16,
        4.5,
        "max_time",
        "max_time=0:00:05.400000: the next epoch (about 1.00 s without validation) would not fit in the 0.90 s left",
    )


def test_fit_falls_back_to_step_in_the_first_epoch():
    budget = TimeBudget(0.6, mode="fit")
    trainer, _, _ = clocked_run(budget)
    trainer.run(loader(4))
    assert outcome(trainer) == (1, 3, 1.0, "max_time", "max_time=0:00:00.600000 reached after 0.750 s of training")
    assert budget.epochs == [EpochTime(0, 1.0, 0.25, 1, False)]  # ended early: not used for predictions


def test_min_epochs_defers_the_fit_stop_to_a_later_boundary():
    trainer, _, _ = clocked_run(TimeBudget(10, mode="fit"), min_epochs=2, first_batch_extra=8)
    trainer.run(loader(4))
    # epoch 0 takes 9.25 s: a second one does not fit, but min_epochs=2 keeps training; the guard's request
    # (the budget is spent at 10.25 s) is the same stop, honoured at the end of epoch 1
    assert outcome(trainer) == (
        2,
        8,
        10.5,
        "max_time",
        "max_time=0:00:10: the next epoch (about 9.25 s with validation) would not fit in the 0.75 s left",
    )


def test_resume_keeps_the_elapsed_time_and_the_measurements(tmp_path):
    from ignite.handlers import Checkpoint, DiskSaver

    # the first batch takes 0.5 s more: epoch 0 is 1.75 s, epoch 1 1.25 s; at 3 s, the longest recent epoch
    # (1.75 s) does not fit in the 1.5 s left. Forgetting epoch 0 would predict 1.25 s and train on.
    def build() -> tuple[Engine, TimeBudget, ManualClock]:
        budget = TimeBudget(4.5, mode="fit")
        trainer, _, clock = clocked_run(budget, first_batch_extra=0.5)
        return trainer, budget, clock

    reference, ref_budget, _ = build()
    reference.run(loader(4))
    expected = outcome(reference)
    assert expected == (
        2,
        8,
        3.0,
        "max_time",
        "max_time=0:00:04.500000: the next epoch (about 1.75 s with validation) would not fit in the 1.50 s left",
    )

    crashed, budget, _ = build()
    saver = Checkpoint(
        {"trainer": crashed, "loop": budget.loop}, DiskSaver(str(tmp_path), require_empty=False), n_saved=1
    )
    crashed.add_event_handler(Events.ITERATION_COMPLETED(once=6), saver)  # epoch 1, after its second batch

    def crash(_):
        raise KeyboardInterrupt("killed")

    crashed.add_event_handler(Events.ITERATION_COMPLETED(once=7), crash)
    with pytest.raises(KeyboardInterrupt):
        crashed.run(loader(4))

    resumed, budget, clock = build()
    clock.now = 1000.0  # another process: its own clock readings; the elapsed time comes from the checkpoint
    checkpoint = torch.load(next(tmp_path.glob("*.pt")), weights_only=True)
    saved = checkpoint["loop"]
    assert saved["time_budget"] == {"epochs": [EpochTime(0, 1.75, 0.25, 1, True).to_dict()], "epoch_start": 1.75}
    assert [r["time"] for r in saved["validation"]["runs"]] == [1.75]
    Checkpoint.load_objects({"trainer": resumed, "loop": budget.loop}, checkpoint)
    resumed.run(loader(4))
    assert outcome(resumed) == expected
    assert budget.epochs == ref_budget.epochs == [EpochTime(0, 1.75, 0.25, 1, True), EpochTime(1, 1.25, 0.25, 1, True)]


# ---------------------------------------------------------------------------------------------- flags
def test_attach_speedups_passes_the_flags():
    from ignite_speed import attach_speedups

    clock = ManualClock()
    trainer, evaluator = clocked_engines(clock)
    speedups = attach_speedups(
        trainer,
        evaluator,
        max_time=5,
        max_time_mode="fit",
        max_time_reserve=1,
        num_sanity_val_steps=0,
        val_data=loader(2),
    )
    speedups.clock.time_source = clock
    trainer.run(loader(4))
    assert repr(speedups.time_budget) == "TimeBudget(max_time=0:00:05, mode='fit', reserve=0:00:01)"
    assert (speedups.progress.epochs_done, speedups.clock.elapsed(), speedups.stop_reason) == (
        3,
        3.75,
        StopReason.MAX_TIME,
    )
    speedups.extend(max_time=10)  # the extended run keeps the measurements: stops at 8.75 s (9 s left 1.25)
    trainer.run(loader(4))
    assert (speedups.progress.epochs_done, speedups.clock.elapsed()) == (7, 8.75)
    assert (
        speedups.stop_message == "max_time=0:00:10 less max_time_reserve=0:00:01: the next epoch (about 1.25 s "
        "with validation) would not fit in the 0.25 s left"
    )


@pytest.mark.parametrize(
    "flags, error, message",
    [
        (
            {"max_time_mode": "fitt", "max_time": 5},
            ValueError,
            "max_time_mode='fitt' is not known; did you mean 'fit'?; accepted: 'step' (check after every batch), 'epoch' "
            "(at epoch ends) or 'fit' (stop at the last epoch boundary after which another epoch would not fit)",
        ),
        ({"max_time_mode": 2, "max_time": 5}, TypeError, "max_time_mode=2 has type int; accepted: 'step'"),
        (
            {"max_time_mode": "fit"},
            ValueError,
            "max_time_mode='fit' needs max_time: set max_time (a duration), or leave max_time_mode unset",
        ),
        (
            {"max_time_reserve": 5},
            ValueError,
            "max_time_reserve=5 needs max_time: it is held back from max_time; set max_time, or leave max_time_reserve unset",
        ),
        (
            {"max_time_reserve": "00:00:10:00", "max_time": "00:00:10:00"},
            ValueError,
            "max_time_reserve=0:10:00 is not less than max_time=0:10:00; accepted: a duration shorter than max_time "
            "(training plans against max_time - max_time_reserve)",
        ),
        ({"max_time_reserve": -1, "max_time": 5}, ValueError, "max_time_reserve=-1 is a negative duration"),
        ({"max_time_reserve": [1], "max_time": 5}, TypeError, "max_time_reserve=[1] has type list"),
    ],
)
def test_bad_flag_values_are_refused_naming_the_flag(flags, error, message):
    with pytest.raises(error) as info:
        SpeedConfig(**flags)
    assert str(info.value).startswith(message)
    if "max_time" in flags:  # the handler goes through the same validation
        with pytest.raises(error) as info:
            TimeBudget(
                flags["max_time"], mode=flags.get("max_time_mode", "step"), reserve=flags.get("max_time_reserve")
            )
        assert str(info.value).startswith(message)


def test_flag_forms():
    cfg = SpeedConfig(max_time={"minutes": 10}, max_time_mode="epoch", max_time_reserve="00:00:01:30")
    assert (cfg.max_time_mode, cfg.max_time_reserve) == ("epoch", datetime.timedelta(seconds=90))
    assert SpeedConfig().max_time_mode == "step" and SpeedConfig().max_time_reserve is None
    assert SpeedConfig(max_time_reserve=0).max_time_reserve == datetime.timedelta(0)  # nothing held back: allowed
