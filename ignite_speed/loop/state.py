"""The loop's own state (:class:`LoopState`): counters, where the run stands, and the open accumulation
window; plain data with a ``state_dict``.

Ignite's ``Checkpoint`` runs inside the trainer's handlers, before the loop's own decisions of the same
event, so a saved state can be "between" two of them. :class:`Stage` names the four places; a resumed run
first makes the decision that was pending.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .progress import Progress
from .stop import StopRequest, unless_preempted

__all__ = ["Stage", "LoopState", "PENDING_STAGES"]


class Stage(str, enum.Enum):
    """Where the run stands when its state is saved (the ``str`` value is what the state stores)."""

    BETWEEN = "between"  # between epochs (or the run is done): nothing pending
    IN_EPOCH = "in_epoch"  # inside an epoch, the last batch fully decided
    BATCH_PENDING = "batch_pending"  # after a batch's ITERATION_COMPLETED handlers, before its decision
    EPOCH_PENDING = "epoch_pending"  # inside EPOCH_COMPLETED, before the epoch-end decision


PENDING_STAGES = (Stage.BATCH_PENDING, Stage.EPOCH_PENDING)  # a resumed run makes their decision first


@dataclass
class LoopState:
    """What the loop knows of the run, besides the stop controller, the clock and the data position.

    Attributes:
        progress: the counters (:class:`~ignite_speed.loop.Progress`).
        stage: where the run stands (:class:`Stage`).
        end_after_epoch: the stop that ends the run at the end of the current epoch (set mid-epoch).
        epoch_ended_early: the current epoch was ended before its last batch (``end_epoch()``, a stop).
        window_batches: batches of the epoch since its last optimizer step (``accumulate_grad_batches``).
        window_rng: the generator states where the open accumulation window began (for an exact resume).
    """

    progress: Progress = field(default_factory=Progress)
    stage: Stage = Stage.BETWEEN
    end_after_epoch: StopRequest | None = None
    epoch_ended_early: bool = False
    window_batches: int = 0
    window_rng: Any = None

    def start_epoch(self, epoch: int) -> None:
        """A new epoch (0-based ``epoch``) begins at its first batch."""
        p = self.progress
        p.epoch, p.batch_in_epoch = epoch, 0
        self.window_batches = 0
        self.epoch_ended_early = False
        self.end_after_epoch = None

    def end_after(self, request: StopRequest) -> None:
        """The run ends with ``request`` at the end of the current epoch."""
        self.end_after_epoch = request

    def leave_decision_pending(self) -> None:
        """The run stops before deciding for its last batch (a preemption): a run resumed from a checkpoint
        written now makes that batch's decision first (a validation due there, ``max_steps`` reached there)."""
        self.stage = Stage.BATCH_PENDING

    def end_epoch_early(self) -> None:
        """The current epoch ends before its last batch (``end_epoch()``)."""
        self.epoch_ended_early = True

    def note_window_draws(self, rng_state: Callable[[], Any]) -> None:
        """Something drew from the generators inside the open accumulation window (a validation run): the
        window's next batch starts from ``rng_state()``, and a resume inside the window replays it from there."""
        if self.window_batches and self.window_rng is not None:
            later = {**self.window_rng.get("later", {}), self.window_batches: rng_state()}
            self.window_rng = {**self.window_rng, "later": later}

    def count_fetched_batch(self) -> None:
        """A batch was fetched but not trained (``end_epoch()`` from ``ITERATION_STARTED``)."""
        p = self.progress
        p.batch_in_epoch += 1
        p.total_batches += 1

    def state_dict(self) -> dict[str, Any]:
        between = self.stage is Stage.BETWEEN
        return {
            "progress": self.progress.state_dict(),
            "stage": self.stage.value,
            "end_after_epoch": self.end_after_epoch.to_dict() if self.end_after_epoch else None,
            "epoch_ended_early": bool(self.epoch_ended_early),
            # an open accumulation window: its batches are replayed on resume, from the generator states it began with
            "window_batches": int(self.window_batches),
            "window_rng": self.window_rng if self.window_batches and not between else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.progress.load_state_dict(state["progress"])
        self.stage = Stage(str(state.get("stage", Stage.BETWEEN.value)))
        self.end_after_epoch = unless_preempted(StopRequest.from_dict(state.get("end_after_epoch")))
        self.epoch_ended_early = bool(state.get("epoch_ended_early", False))
        self.window_batches = int(state.get("window_batches", 0))
        self.window_rng = state.get("window_rng")
