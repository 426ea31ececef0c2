"""The stop controller: the one place that decides whether training ends, and why.

Every stop source (early stopping, ``max_time``, a non-finite loss, a user request) calls
:meth:`StopController.request`. The controller

* syncs local requests across ranks with one collective per decision point, so every rank makes the
  same decision on the same iteration and records the same reason;
* keeps a request *pending* (sticky) until ``min_epochs`` / ``min_steps`` are met (Lightning >= 1.8);
* records one final :class:`StopReason` and message;
* is checkpointable as plain data.

Hard limits (``max_epochs``, ``max_steps``) are not requests: they end the run where they are
reached, whatever the minimums, and are recorded with :meth:`StopController.finish`.

When the ranks agree (:class:`StopAgreement`): at *agreement* batches only. Stops that every rank computes
alike (limits, epoch ends, planned validation) need no collective. A request that starts on one rank (the
clock of rank 0, a non-finite loss, ``request_stop()``, a failed rank) rides an asynchronous all-reduce started
at one agreement batch and read at the next, whose distance the ranks agreed on in that same all-reduce: every
rank reads it on the same batch, none waits for it.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .._logging import logger
from .clock import TIME_SOURCE
from .trainer_parts import TrainerParts

__all__ = [
    "StopReason",
    "StopRequest",
    "StopController",
    "RankFailureError",
    "StopAgreement",
    "AGREEMENT_SECONDS",
    "MAX_AGREEMENT_INTERVAL",
]


class StopReason(str, enum.Enum):
    """Why a run ended. ``str`` values are what ``state_dict()`` stores."""

    NOT_STOPPED = "not_stopped"
    MAX_EPOCHS = "max_epochs"
    MAX_STEPS = "max_steps"
    DATA_EXHAUSTED = "data_exhausted"  # a one-shot iterable gave no batches for another epoch
    NO_TRAINING = "no_training"  # limit_train_batches=0, max_epochs=0 or max_steps=0: nothing to train
    MAX_TIME = "max_time"
    EARLY_STOPPING = "early_stopping"
    NON_FINITE_LOSS = "non_finite_loss"
    USER_REQUEST = "user_request"
    TERMINATED = "terminated"  # trainer.terminate() called by another handler or user code
    RANK_FAILURE = "rank_failure"
    PREEMPTED = "preempted"  # a signal of the job scheduler (PreemptionGuard): save and exit, resume later
    PRUNED = "pruned"  # a hyperparameter search stopped this trial (handlers.Pruning)


# When ranks request different reasons on the same iteration, the reason recorded by every rank is the
# first of this list that any rank requested.
# A prune outranks early stopping: the search must record the trial as pruned.
_PRIORITY = (
    StopReason.RANK_FAILURE,
    StopReason.PREEMPTED,
    StopReason.NON_FINITE_LOSS,
    StopReason.PRUNED,
    StopReason.EARLY_STOPPING,
    StopReason.MAX_TIME,
    StopReason.USER_REQUEST,
)
_REQUESTABLE = frozenset(_PRIORITY)
# Training on after these is pointless (NaN weights), impossible (a rank is gone) or cut short anyway (the job
# is preempted): min_epochs/min_steps do not defer them.
_URGENT = frozenset({StopReason.RANK_FAILURE, StopReason.PREEMPTED, StopReason.NON_FINITE_LOSS})
# Every sync reduces this many flags (the reasons, then the stop sources' extras, zero-padded): a failing
# rank joins whichever sync the other ranks are at without knowing its extras.
_SYNC_FLAGS = 16


def unless_preempted(request: StopRequest | None) -> StopRequest | None:
    """``request``, or ``None`` for a preemption: a run loaded from a checkpoint does not repeat the
    preemption its saved run was stopping for (every part of the loop's state drops it on loading)."""
    return None if request is not None and request.reason is StopReason.PREEMPTED else request


class RankFailureError(RuntimeError):
    """Raised on the healthy ranks when another rank's training raised (its message says which rank
    and what it raised): the failed rank takes no part in collectives any more, so training cannot go on."""


@dataclass(frozen=True)
class StopRequest:
    reason: StopReason
    message: str
    source: str

    def to_dict(self) -> dict[str, str]:
        return {"reason": self.reason.value, "message": self.message, "source": self.source}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> StopRequest | None:
        if not d:
            return None
        return cls(StopReason(d["reason"]), str(d["message"]), str(d["source"]))


class StopController:
    """Owns the "should training end, and why" decision.

    Args:
        min_epochs: a pending stop request is deferred until this many epochs have completed.
        min_steps: ... and until this many optimizer steps have been taken.
    """

    def __init__(self, min_epochs: int = 0, min_steps: int = 0) -> None:
        self.min_epochs = int(min_epochs or 0)
        self.min_steps = int(min_steps or 0)
        self._local: dict[StopReason, StopRequest] = {}
        self.unsynced = self._local  # (the same dict, never replaced: the loop's per-batch check reads it)
        self.pending: StopRequest | None = None
        self.final: StopRequest | None = None
        self._deferral_logged = False
        self.history: list[dict[str, str]] = []
        self.last_extra: list[int] = []
        self._inflight: tuple[Any, dict[StopReason, StopRequest], int, int] | None = None
        self.syncs = 0  # decision points so far (syncs completed): the loop syncs an epoch end once

    # ------------------------------------------------------------------ one controller per trainer
    @classmethod
    def of(cls, trainer: Any) -> StopController | None:
        """The controller that governs ``trainer``, if one is attached."""
        parts = TrainerParts.find(trainer)
        return None if parts is None else parts.controller

    def bind(self, trainer: Any) -> None:
        """Make this the controller of ``trainer`` (what :meth:`of` returns)."""
        TrainerParts.of(trainer).controller = self

    def set_minimums(self, min_epochs: int = 0, min_steps: int = 0, *, caller: str) -> None:
        """Set ``min_epochs``/``min_steps`` given by a handler (0: not given). Two handlers that give
        different non-zero values conflict: ``caller`` is named in the error."""
        if (min_epochs and self.min_epochs and min_epochs != self.min_epochs) or (
            min_steps and self.min_steps and min_steps != self.min_steps
        ):
            raise ValueError(
                f"{caller}(min_epochs={min_epochs}, min_steps={min_steps}) conflicts with the trainer's "
                f"stop controller (min_epochs={self.min_epochs}, min_steps={self.min_steps}); "
                f"give the minimums once"
            )
        self.min_epochs = int(min_epochs or self.min_epochs)
        self.min_steps = int(min_steps or self.min_steps)

    def replace_minimums(self, min_epochs: int, min_steps: int) -> None:
        """New minimums for a continued run (``Speedups.extend``)."""
        self.min_epochs, self.min_steps = int(min_epochs or 0), int(min_steps or 0)

    # ------------------------------------------------------------------ requests
    def request(self, reason: StopReason | str, message: str, source: str | None = None) -> None:
        """Ask to stop (takes effect at the next decision point, after syncing across ranks)."""
        reason = StopReason(reason)
        if reason not in _REQUESTABLE:
            raise ValueError(
                f"reason={reason.value!r} cannot be requested; accepted: {sorted(r.value for r in _REQUESTABLE)}"
            )
        self._local.setdefault(reason, StopRequest(reason, str(message), source or reason.value))

    @property
    def has_local_request(self) -> bool:
        return bool(self._local)

    def local_requests(self) -> list[StopRequest]:
        """This rank's requests since the last sync (what the next :meth:`sync` will combine)."""
        return list(self._local.values())

    def sync(
        self, world_size: int | None = None, extra: Sequence[int] = (), timeout: datetime.timedelta | None = None
    ) -> StopRequest | None:
        """Combine this decision point's requests of all ranks (one blocking collective when distributed).

        ``extra`` are small non-negative ints a stop source wants MAX-reduced in the same collective
        (early stopping sends its per-reason flags so that ranks agree on its reason too); the reduced
        values are left in :attr:`last_extra`. A sync started with :meth:`start_sync` is completed first.

        Returns the pending request (sticky: the first synced request wins), or ``None``. Raises
        :class:`RankFailureError` when another rank signalled its failure (:meth:`signal_failure`).
        """
        from ..distributed._dist import all_reduce_flags, get_world_size

        world_size = get_world_size() if world_size is None else world_size
        if self._inflight is not None:
            self.finish_sync()
        sent = dict(self._local)
        if world_size <= 1:
            self.last_extra = [int(v) for v in extra]
            return self._combine([1 if r in sent else 0 for r in _PRIORITY], sent, 0, world_size)
        flags = all_reduce_flags(self._encode(sent, extra), timeout)
        return self._combine(flags, sent, len(extra), world_size)

    def start_sync(self, world_size: int, extra: Sequence[int] = ()) -> None:
        """Start combining the ranks' requests without waiting (an asynchronous collective, when the
        backend has one); :meth:`finish_sync` completes it, on every rank at the same point of training.
        Requests made in between go into the next sync."""
        from ..distributed._dist import all_reduce_flags_async

        if self._inflight is not None:
            self.finish_sync()
        sent = dict(self._local)
        self._inflight = (all_reduce_flags_async(self._encode(sent, extra)), sent, len(extra), world_size)

    @property
    def sync_in_flight(self) -> bool:
        return self._inflight is not None

    def finish_sync(self) -> StopRequest | None:
        """Complete the sync :meth:`start_sync` started (nothing to do when none is in flight); as :meth:`sync`."""
        if self._inflight is None:
            return self.pending
        handle, sent, n_extra, world_size = self._inflight
        self._inflight = None
        return self._combine(handle.wait(), sent, n_extra, world_size)

    @staticmethod
    def _encode(sent: dict[StopReason, StopRequest], extra: Sequence[int]) -> list[int]:
        flags = [1 if r in sent else 0 for r in _PRIORITY] + [int(v) for v in extra]
        if len(flags) > _SYNC_FLAGS:
            raise ValueError(f"sync(extra=...) takes at most {_SYNC_FLAGS - len(_PRIORITY)} values, got {len(extra)}")
        return flags + [0] * (_SYNC_FLAGS - len(flags))

    def _combine(
        self, flags: Sequence[int], sent: dict[StopReason, StopRequest], n_extra: int, world_size: int
    ) -> StopRequest | None:
        """Apply the reduced ``flags`` of a sync to which this rank sent the requests ``sent``."""
        self.syncs += 1
        from ..distributed._dist import gather_message

        if world_size > 1:
            self.last_extra = [int(v) for v in flags[len(_PRIORITY) : len(_PRIORITY) + n_extra]]
        requested = [r for r, f in zip(_PRIORITY, flags) if f]
        for reason, request in sent.items():  # what this sync carried; later requests wait for the next one
            if self._local.get(reason) is request:
                del self._local[reason]
        if not requested:
            return self.pending
        chosen = requested[0]
        local = sent.get(chosen)
        if world_size > 1:
            # agree on the message as well: the lowest rank that asked for the chosen reason speaks for all
            message, source = gather_message(local.message if local else None, local.source if local else None)
        else:
            assert local is not None
            message, source = local.message, local.source
        if chosen is StopReason.RANK_FAILURE and local is None:
            # another rank failed and takes part in no further collective: stop here, on every healthy rank
            self.finish(chosen, message, source)
            raise RankFailureError(message)
        synced = StopRequest(chosen, message, source)
        self.history.append(synced.to_dict())
        if self.pending is None:
            self.pending = synced
        return self.pending

    def signal_failure(
        self, message: str, source: str, world_size: int, timeout: datetime.timedelta | None = None
    ) -> None:
        """On a rank whose training raised: join the other ranks' next sync once with ``RANK_FAILURE``
        set, so that they raise :class:`RankFailureError` there instead of waiting in their next
        collective until the process group times out. Raises ``RuntimeError`` if they do not reach a
        sync within ``timeout`` (e.g. they wait in a DDP all-reduce that only the group timeout ends)."""
        self.request(StopReason.RANK_FAILURE, message, source)
        # a started sync is not waited for: every rank posted it at the same batch, so it completes anyway,
        # and the failure must go out now
        self._inflight = None
        self.sync(world_size, timeout=timeout)
        self.finish(StopReason.RANK_FAILURE, message, source)

    # ------------------------------------------------------------------ decisions
    def minimums_met(self, epochs_done: int, global_step: int) -> bool:
        return epochs_done >= self.min_epochs and global_step >= self.min_steps

    def should_stop(self, epochs_done: int, global_step: int) -> bool:
        """True when a synced request is pending and the minimums are met (or it is too urgent to wait:
        a non-finite loss, a failed rank)."""
        if self.pending is None:
            return False
        if self.pending.reason in _URGENT or self.minimums_met(epochs_done, global_step):
            return True
        if not self._deferral_logged:
            self._deferral_logged = True
            logger.info(
                "%s: stop requested but training continues until min_epochs=%d and min_steps=%d are met",
                self.pending.reason.value,
                self.min_epochs,
                self.min_steps,
            )
        return False

    def finish(
        self, reason: StopReason | str | None = None, message: str = "", source: str | None = None
    ) -> StopRequest:
        """Record why the run ended. With no ``reason``, the pending request is the cause."""
        if self.final is not None:
            return self.final
        if reason is None:
            if self.pending is None:
                raise RuntimeError("StopController.finish() without a reason needs a pending request")
            self.final = self.pending
        else:
            r = StopReason(reason)
            self.final = StopRequest(r, message, source or r.value)
        return self.final

    @property
    def stop_reason(self) -> StopReason:
        return self.final.reason if self.final is not None else StopReason.NOT_STOPPED

    @property
    def stop_message(self) -> str | None:
        return self.final.message if self.final is not None else None

    def reset_run(self) -> None:
        """Forget the outcome of a finished run (used when a finished run is explicitly extended)."""
        self.pending = None
        self.final = None
        self._local.clear()
        self._deferral_logged = False

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "min_epochs": self.min_epochs,
            "min_steps": self.min_steps,
            "pending": self.pending.to_dict() if self.pending else None,
            "final": self.final.to_dict() if self.final else None,
            "history": [dict(h) for h in self.history],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output. A preemption is not the end of training: a run saved with
        ``PREEMPTED`` pending or final continues when its state is loaded (its history keeps the record)."""
        self.pending = unless_preempted(StopRequest.from_dict(state.get("pending")))
        self.final = unless_preempted(StopRequest.from_dict(state.get("final")))
        self.history = [dict(h) for h in state.get("history", [])]
        self._local.clear()


# ------------------------------------------------------------------ when the ranks agree
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
        self.time_source = TIME_SOURCE  # (measures the batches' pace; a test may give its own)
        self.next_at = 1
        self._agreed_at: tuple[int, float] | None = None  # (total_batches, time) of the last one
        self._interval = 1  # batches between agreements, as last agreed

    def start_run(self, total_batches: int) -> None:
        self.next_at = total_batches + 1
        self._agreed_at = None
        self._interval = 1

    def agree(
        self, controller: StopController, total_batches: int, world_size: int, time_due_here: Callable[[], bool]
    ) -> bool:
        """At an agreement batch (the same on every rank), after the deferred checks reported: in a
        distributed run the sync started at the previous agreement batch is completed and the next one
        started, without waiting. ``time_due_here``: whether this rank's clock says a time-based validation
        is due (asked on rank 0 only). Returns whether one is due (rank 0's clock decides)."""
        now = self.time_source()
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
