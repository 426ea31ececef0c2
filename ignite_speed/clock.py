"""The training clock: elapsed training time on a monotonic clock, resumable from a checkpoint."""

from __future__ import annotations

import time
from typing import Any

__all__ = ["TrainingClock"]


class TrainingClock:
    """Elapsed training time: an offset (restored from a checkpoint) plus the running segment."""

    def __init__(self) -> None:
        self.offset = 0.0
        self._started_at: float | None = None

    def start(self) -> None:
        if self._started_at is None:
            self._started_at = time.monotonic()

    def pause(self) -> None:
        if self._started_at is not None:
            self.offset += time.monotonic() - self._started_at
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
        return self.offset + (time.monotonic() - self._started_at)

    def state_dict(self) -> dict[str, Any]:
        return {"elapsed": self.elapsed()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.offset = float(state.get("elapsed", 0.0))
        self._started_at = None
