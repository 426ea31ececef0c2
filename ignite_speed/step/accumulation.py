"""Gradient accumulation as Lightning counts it: which batches step the optimizer, and which skip the
data-parallel gradient reduction.

Windows are counted within each epoch and the last batch of an epoch always steps. DDP (and fairscale's
ShardedDataParallel) skip their reduction (``no_sync``) on the batches that do not step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, cast

import torch
from ignite.engine import Engine, Events
from torch.nn.parallel import DistributedDataParallel as DDP

__all__ = ["AccumulationWindow", "WindowReduction", "is_sharded_ddp", "no_sync_of"]


class AccumulationWindow:
    """Counts batches within the epoch to decide which ones step the optimizer (every k-th and the last)."""

    def __init__(self, k: int, on_leftover: Callable[[], None] | None = None) -> None:
        self.k = k
        self.on_leftover = on_leftover  # called when an epoch starts with the gradients of a cut-short window
        self.batch_in_epoch = 0
        self.pending = False  # gradients accumulated since the last optimizer step
        self._resume_offset = 0
        self._cut_short = False

    def attach(self, engine: Engine, flush: Callable[[], None]) -> None:
        def on_started(engine: Engine) -> None:
            # Resuming mid-epoch from a checkpoint: Ignite itself places us at iteration % epoch_length.
            length = engine.state.epoch_length
            self._resume_offset = engine.state.iteration % length if length else 0

        def on_epoch_started(engine: Engine) -> None:
            self.batch_in_epoch, self._resume_offset = self._resume_offset, 0
            if self.pending and self.on_leftover is not None:
                self.on_leftover()
            self.pending = False  # leftovers of an interrupted epoch are dropped: next batch zeroes the grads
            self._cut_short = False

        def on_epoch_cut_short(engine: Engine, iter_counter: int | None = None) -> None:
            self._cut_short = True

        def on_epoch_completed(engine: Engine) -> None:
            # epoch_length was unknown during the epoch (iterator without len): the final partial window still
            # steps, as it would on a known last batch. An epoch ended early (terminate_epoch(): a stop request,
            # max_steps, end_epoch()) does not step its partial window, as in Lightning.
            if self.pending and not engine.should_terminate and not self._cut_short:
                flush()

        engine.add_event_handler(Events.STARTED, on_started)
        engine.add_event_handler(Events.EPOCH_STARTED, on_epoch_started)
        engine.add_event_handler(Events.TERMINATE_SINGLE_EPOCH, on_epoch_cut_short)
        engine.add_event_handler(Events.EPOCH_COMPLETED, on_epoch_completed)

    def resume(self, batch_in_epoch: int) -> None:
        """A resumed run continues the epoch after ``batch_in_epoch`` batches, with no gradients accumulated
        (ignite-speed's loop then replays the batches of an open window through the step: the gradients of
        a window are in no checkpoint)."""
        self.batch_in_epoch = batch_in_epoch
        self.pending = False

    def next_batch(self, epoch_length: int | None) -> bool:
        """Advance by one batch; True when this batch ends an accumulation window."""
        self.batch_in_epoch += 1
        last = epoch_length is not None and self.batch_in_epoch >= epoch_length
        return self.batch_in_epoch % self.k == 0 or last


def is_sharded_ddp(model: torch.nn.Module) -> bool:
    """Whether ``model`` is fairscale's ShardedDataParallel (recognised by name: fairscale is optional)."""
    cls = type(model)
    return cls.__name__ == "ShardedDataParallel" and cls.__module__.startswith("fairscale")


def no_sync_of(model: torch.nn.Module) -> Callable[[], Any] | None:
    """The ``no_sync`` context of a data-parallel wrapper that reduces gradients in backward, or None."""
    if isinstance(model, DDP):
        return model.no_sync
    if is_sharded_ddp(model):
        return cast(Callable[[], Any], model.no_sync)
    return None


class WindowReduction:
    """The gradient reduction of a data-parallel ``model`` during the accumulation windows of ``accumulate``
    batches: skipped (``no_sync``) on the batches that do not step, where the wrapper allows it."""

    def __init__(self, model: torch.nn.Module, accumulate: int) -> None:
        # DDP and fairscale's ShardedDataParallel reduce in backward; only the batch that steps needs it.
        # (FSDP2 reduce-scatters on every backward: its gradients stay sharded, as Lightning leaves them.)
        self.no_sync = no_sync_of(model) if accumulate > 1 else None
        # ShardedDataParallel reduces a window's skipped gradients on request (DDP cannot: see during_batch())
        self.reduce_later = (
            cast(Callable[[], None], model.reduce) if self.no_sync is not None and is_sharded_ddp(model) else None
        )

    def during_batch(self, steps_now: bool, epoch_length: int | None) -> AbstractContextManager[Any]:
        """The context of a batch's forward and backward: ``no_sync`` when it skips the reduction."""
        # While the epoch's length is unknown (the first epoch of a loader without len()), any batch may be the
        # last, whose window is stepped at EPOCH_COMPLETED: DDP must reduce every batch then (its all-reduced
        # sums accumulate correctly); ShardedDataParallel cannot (it frees what it reduced), but reduces later.
        skip = (
            self.no_sync is not None and not steps_now and (epoch_length is not None or self.reduce_later is not None)
        )
        return self.no_sync() if skip and self.no_sync is not None else contextlib.nullcontext()

    def reduce_skipped(self) -> None:
        """Reduce the gradients of the batches that skipped it (ShardedDataParallel only; DDP reduced them)."""
        if self.reduce_later is not None:
            self.reduce_later()
