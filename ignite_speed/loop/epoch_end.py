"""The pieces of the loop's decision at the end of each training epoch (the loop makes it: see
:meth:`~ignite_speed.loop.TrainingLoop.on_epoch_completed`)."""

from __future__ import annotations

import math
from typing import Any

from ..data.loaders import UnsizedView
from .plan import RunLimits
from .progress import Progress
from .stop import StopReason, StopRequest

__all__ = ["hard_limit_reached", "one_shot", "empty_one_shot_message", "ignite_max_epochs_ahead",
           "TERMINATED", "TERMINATED_MESSAGE"]

TERMINATED_MESSAGE = "trainer.terminate() was called by a handler or user code (not by ignite-speed)"
TERMINATED = StopRequest(StopReason.TERMINATED, TERMINATED_MESSAGE, "terminate")


def hard_limit_reached(progress: Progress, limits: RunLimits) -> StopRequest | None:
    """``max_steps`` or ``max_epochs`` reached at an epoch end (whatever the minimums), else ``None``."""
    if limits.max_steps.reached(progress.global_step):
        return StopRequest(StopReason.MAX_STEPS, f"max_steps={limits.max_steps} reached", "max_steps")
    if limits.max_epochs.reached(progress.epochs_done):
        return StopRequest(StopReason.MAX_EPOCHS, f"max_epochs={limits.max_epochs} reached", "max_epochs")
    return None


def empty_one_shot_message(epoch: int) -> str:
    return (f"the training data gave no batches in epoch {epoch} (0-based): a one-shot generator or "
            f"iterator is exhausted after one pass; pass a re-iterable (a DataLoader or a list) to train "
            f"more epochs")


def ignite_max_epochs_ahead(epoch: int, max_epochs: int, epochs_done: int, elapsed: float,
                            budget_seconds: float | None) -> int | None:
    """No epoch limit: the ``max_epochs`` to give Ignite so that it trains on and a ``ProgressBar`` shows
    an estimate (one more epoch than ``epoch``, or as many as ``max_time`` is likely to allow), or ``None``
    to leave it."""
    wanted = epoch + 1
    if budget_seconds is not None and epochs_done:
        per_epoch = elapsed / epochs_done
        if per_epoch > 0:
            wanted = max(wanted, math.ceil(budget_seconds / per_epoch))
    return wanted if epoch >= max_epochs or wanted > max_epochs else None


def one_shot(data: Any) -> bool:
    """Whether ``data`` is an iterator (``iter()`` gives itself back): exhausted after one pass."""
    data = data.data if isinstance(data, UnsizedView) else data
    try:
        return iter(data) is data
    except TypeError:
        return False
