"""Ignite events that ignite-speed fires on the trainer."""

from __future__ import annotations

from ignite.engine import EventEnum

__all__ = ["StepEvents"]


class StepEvents(EventEnum):
    """Events of the trainer's loop (registered on the trainer by any ignite-speed handler).

    ``OPTIMIZER_STEP`` fires after each batch that took an optimizer step (every ``accumulate_grad_batches``
    batches, and at an epoch's last batch), at the start of that batch's ``ITERATION_COMPLETED``, once the
    loop has counted it; ``trainer.state.optimizer_step`` is the number of steps so far, so filters count
    steps: ``trainer.add_event_handler(StepEvents.OPTIMIZER_STEP(every=100), checkpoint)``. A checkpoint
    written there never lands inside an accumulation window.
    """

    OPTIMIZER_STEP = "optimizer_step"
