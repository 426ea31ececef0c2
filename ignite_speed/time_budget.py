"""``max_time``: a training-time budget measured on a monotonic clock (:class:`TimeBudget`).

Counted from training start (after the sanity check), validation included; the elapsed time is part
of the state, so a resumed run continues the same budget. In distributed runs only rank 0's clock
decides (the stop controller syncs its request), so ranks with drifting clocks cannot disagree.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from .clock import TrainingClock
from .durations import parse_duration
from .loop import LoopHandler
from .stop import StopReason

if TYPE_CHECKING:  # pragma: no cover
    from .loop import TrainingLoop

__all__ = ["TrainingClock", "TimeBudget"]


class TimeBudget(LoopHandler):
    """Stop training once ``max_time`` of training has elapsed (Lightning's ``max_time``).

    Checked after every training batch (a clock read, on rank 0 only in distributed runs: the stop is
    synced to every rank) and at the start of a run; the run ends after the batch that crosses the budget,
    after ``min_epochs``/``min_steps`` like any stop request. Validation time counts; the sanity check does not.

    Args:
        max_time: ``"DD:HH:MM:SS"``, a dict such as ``{"minutes": 5}``, a ``timedelta`` or seconds.
    """

    concern = "time_budget"

    def __init__(self, max_time: Any) -> None:
        super().__init__()
        budget = parse_duration(max_time, "max_time")
        if budget is None:
            raise ValueError("TimeBudget(max_time=None): accepted: a duration (\"DD:HH:MM:SS\", a dict such as "
                             "{\"minutes\": 5}, a timedelta or seconds)")
        self.max_time: datetime.timedelta = budget
        self.seconds = budget.total_seconds()

    def __repr__(self) -> str:
        return f"TimeBudget(max_time={self.max_time})"

    def check_batch(self, engine: Any) -> None:
        loop = self._loop
        assert loop is not None
        if loop.is_rank_zero and loop.clock.elapsed() >= self.seconds:
            self.check(loop)

    def check(self, loop: TrainingLoop) -> None:
        """Request the stop when the budget is spent (only rank 0's clock decides)."""
        elapsed = loop.clock.elapsed()
        if loop.is_rank_zero and elapsed >= self.seconds:
            loop.controller.request(StopReason.MAX_TIME, f"max_time={self.max_time} reached after {elapsed:.3f} s of "
                                    f"training", "max_time")
