"""The training clock: elapsed training time on a monotonic clock, resumable from a checkpoint."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["TrainingClock"]


class TrainingClock:
    """Elapsed training time: an offset (restored from a checkpoint) plus the running segment.

    Args:
        time_source: the seconds counter read (``time.monotonic``); tests may give one they advance
            themselves. Set :attr:`time_source` before a run starts to change it on an attached loop.
    """

    def __init__(self, time_source: Callable[[], float] = time.monotonic) -> None:
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
