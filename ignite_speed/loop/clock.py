"""The package's one time source (``TIME_SOURCE``), and the training clock: elapsed training time on it,
resumable from a checkpoint.

Every duration ignite-speed measures is read from ``TIME_SOURCE``: the training clock that ``max_time``
and ``val_time_fraction`` count (:class:`TrainingClock`), the run profile (:class:`~ignite_speed.loop.run_timer.RunTimer`)
and the ranks' agreement interval (:class:`~ignite_speed.loop.stop.StopAgreement`), so their seconds compare.
Each reader that tests drive takes a time source of its own (a fake clock they advance).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["TrainingClock", "TIME_SOURCE"]

# Monotonic (never set back with the wall clock) and of the finest resolution the platform has (time.monotonic's
# is about 15 ms on Windows): short parts of a run profile and a fast batch's duration are measured with it too.
TIME_SOURCE: Callable[[], float] = time.perf_counter


class TrainingClock:
    """Elapsed training time: an offset (restored from a checkpoint) plus the running segment.

    Args:
        time_source: the seconds counter read (``TIME_SOURCE``); tests may give one they advance
            themselves. Set :attr:`time_source` before a run starts to change it on an attached loop.
    """

    def __init__(self, time_source: Callable[[], float] = TIME_SOURCE) -> None:
        self.offset = 0.0
        self._started_at: float | None = None
        self.time_source = time_source

    def start(self) -> None:
        if self._started_at is None:
            self._started_at = self.time_source()

    def pause(self) -> None:
        if self._started_at is not None:
            self.offset += self.time_source() - self._started_at
            self._started_at = None

    def reset(self) -> None:
        self.offset = 0.0
        self._started_at = None

    @property
    def running(self) -> bool:
        return self._started_at is not None

    def elapsed(self) -> float:
        if self._started_at is None:
            return self.offset
        return self.offset + (self.time_source() - self._started_at)

    def state_dict(self) -> dict[str, Any]:
        return {"elapsed": self.elapsed()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.offset = float(state.get("elapsed", 0.0))
        self._started_at = None
