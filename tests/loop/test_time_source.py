"""One time source: the training clock (``max_time``, ``val_time_fraction``), the run profile and the ranks'
agreement interval all read ``ignite_speed.loop.clock.TIME_SOURCE``, a monotonic counter, so their seconds
compare; each still takes a time source of its own for tests."""

from __future__ import annotations

import time

from ignite.engine import Engine

from ignite_speed import attach_speedups
from ignite_speed.loop.clock import TIME_SOURCE, TrainingClock
from ignite_speed.loop.run_timer import RunTimer
from ignite_speed.loop.stop import StopAgreement


def test_the_clock_the_run_profile_and_the_agreement_read_the_one_monotonic_source():
    assert time.get_clock_info(TIME_SOURCE.__name__).monotonic
    assert TrainingClock().time_source is RunTimer().time_source is StopAgreement().time_source is TIME_SOURCE
    loop = attach_speedups(Engine(lambda e, b: None), cfg={"max_time": "00:00:01:00"}).loop
    assert loop.clock.time_source is loop.timer.time_source is loop.agreement.time_source is TIME_SOURCE


def test_each_reader_takes_a_time_source_of_its_own():
    now = [10.0]
    clock = TrainingClock(time_source=lambda: now[0])
    clock.start()
    now[0] = 12.5
    assert clock.elapsed() == 2.5
    agreement = StopAgreement()
    agreement.time_source = lambda: now[0]
    assert agreement.time_source() == 12.5
