"""TimeBudget alone in a plain Ignite app (steps that sleep a known time, so CPU load barely matters)."""

from __future__ import annotations

import datetime
import time

import pytest
from ignite.engine import Engine

from ignite_speed.handlers import LoopLimits, StopController, StopReason, TimeBudget


def sleepy_trainer(seconds: float) -> Engine:
    return Engine(lambda e, b: time.sleep(seconds))


def test_stops_after_the_batch_that_crosses_the_budget():
    trainer = sleepy_trainer(0.05)
    TimeBudget(0.12).attach(trainer)
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
