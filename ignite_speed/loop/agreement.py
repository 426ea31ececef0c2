"""When the ranks of a distributed run agree on stop requests: at *agreement* batches only.

Stops that every rank computes alike (limits, epoch ends, planned validation) need no collective. A
request that starts on one rank (the clock of rank 0, a non-finite loss, ``request_stop()``, a failed rank)
rides an asynchronous all-reduce started at one agreement batch and read at the next, whose distance the
ranks agreed on in that same all-reduce: every rank reads it on the same batch, none waits for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .stop import StopController

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

    def agree(self, controller: StopController, total_batches: int, world_size: int,
              time_due_here: Callable[[], bool]) -> bool:
        """At an agreement batch (the same on every rank), after the deferred checks reported: in a
        distributed run the sync started at the previous agreement batch is completed and the next one
        started, without waiting. ``time_due_here``: whether this rank's clock says a time-based validation
        is due (asked on rank 0 only). Returns whether one is due (rank 0's clock decides)."""
        now = time.monotonic()
        if self._agreed_at is not None and total_batches > self._agreed_at[0]:
            per_batch = (now - self._agreed_at[1]) / (total_batches - self._agreed_at[0])
            proposal = min(MAX_AGREEMENT_INTERVAL, max(1, int(AGREEMENT_SECONDS / max(per_batch, 1e-9))))
        else:
            proposal = 1
        self._agreed_at = (total_batches, now)
        if world_size <= 1:
            if controller.has_local_request:
                controller.sync(1)
            self.next_at = total_batches + (self.sync_every_n_batches or proposal)
            return False
        time_due = False
        if controller.sync_in_flight:  # (a blocking sync since, at an epoch end say, completed it already)
            controller.finish_sync()
            time_due, self._interval = bool(controller.last_extra[0]), max(1, controller.last_extra[1])
        controller.start_sync(world_size, [int(time_due_here()), self.sync_every_n_batches or proposal])
        self.next_at = total_batches + self._interval
        return time_due
