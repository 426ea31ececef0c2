"""When the ranks of a distributed run agree on stop requests: at *agreement* batches only.

Stops that every rank computes alike (limits, epoch ends, planned validation) need no collective. A
request that starts on one rank (the clock of rank 0, a non-finite loss, ``request_stop()``, a failed rank)
rides an asynchronous all-reduce started at one agreement batch and read at the next, whose distance the
ranks agreed on in that same all-reduce: every rank reads it on the same batch, none waits for it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ignite.engine import Engine

if TYPE_CHECKING:  # pragma: no cover
    from .training_loop import TrainingLoop

__all__ = ["StopAgreement", "AGREEMENT_SECONDS", "MAX_AGREEMENT_INTERVAL"]

# The ranks agree about this often (a stop that starts on one rank lands at most two agreement intervals
# later, on the same batch on every rank). Each agreement costs a collective on the stop group, which on
# gloo slows the next DDP step by about a millisecond: once a second keeps that under 0.2 % ...
AGREEMENT_SECONDS = 1.0
# ... and at least every this many batches.
MAX_AGREEMENT_INTERVAL = 1000


class StopAgreement:
    """The agreement batches of one trainer's loop (single-process runs use them for deferred checks only).

    Attributes:
        sync_every_n_batches: a fixed number of batches between agreements (``None``: about every
            :data:`AGREEMENT_SECONDS` of training).
        next_at: the ``total_batches`` count of the next agreement.
    """

    def __init__(self) -> None:
        self.sync_every_n_batches: int | None = None
        self.next_at = 1
        self._agreed_at: tuple[int, float] | None = None  # (total_batches, monotonic time) of the last one
        self._interval = 1  # batches between agreements, as last agreed

    def start_run(self, total_batches: int) -> None:
        self.next_at = total_batches + 1
        self._agreed_at = None
        self._interval = 1

    def agree(self, loop: TrainingLoop, engine: Engine) -> bool:
        """At an agreement batch (the same on every rank): the checks deferred to here (a device-side
        non-finite flag) report, and in a distributed run the sync started at the previous agreement
        batch is completed and the next one started, without waiting. Returns whether a time-based
        validation is due (rank 0's clock decides)."""
        controller, p = loop.controller, loop.progress
        for flush in loop.flushes:
            flush(engine)
        now = time.monotonic()
        if self._agreed_at is not None and p.total_batches > self._agreed_at[0]:
            per_batch = (now - self._agreed_at[1]) / (p.total_batches - self._agreed_at[0])
            proposal = min(MAX_AGREEMENT_INTERVAL, max(1, int(AGREEMENT_SECONDS / max(per_batch, 1e-9))))
        else:
            proposal = 1
        self._agreed_at = (p.total_batches, now)
        if loop.world_size <= 1:
            if controller.has_local_request:
                controller.sync(1)
            self.next_at = p.total_batches + (self.sync_every_n_batches or proposal)
            return False
        time_due = False
        if controller.sync_in_flight:  # (a blocking sync since, at an epoch end say, completed it already)
            controller.finish_sync()
            time_due, self._interval = bool(controller.last_extra[0]), max(1, controller.last_extra[1])
        schedule = loop.get("validation")
        due_here = schedule is not None and schedule.time_based and loop.is_rank_zero and \
            schedule.time_due(loop.clock.elapsed())
        controller.start_sync(loop.world_size, [int(due_here), self.sync_every_n_batches or proposal])
        self.next_at = p.total_batches + self._interval
        return time_due
