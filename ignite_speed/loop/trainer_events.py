"""How the :class:`~ignite_speed.loop.TrainingLoop` sits on its trainer: its event handlers, the ``run``
wrapper, their order at the start of each run, and taking them off again."""

from __future__ import annotations

import functools
from typing import Any

from ignite.engine import Events, State

from .._compat import engine_run_original, event_handlers, move_handler
from .view import LoopView

__all__ = ["attach_loop", "keep_decisions_last", "detach_loop"]


def _event_handlers(loop: LoopView) -> tuple[tuple[Any, Any], ...]:
    """Every (event, handler) the loop may have on its trainer."""
    pos = loop.position
    return ((Events.STARTED, loop.on_started), (Events.EPOCH_STARTED, loop.on_epoch_started),
            (Events.EPOCH_STARTED, loop.on_epoch_data),
            (Events.DATALOADER_STOP_ITERATION, pos.on_iterator_renewed),
            (Events.TERMINATE_SINGLE_EPOCH, pos.on_iterator_renewed),
            (Events.EPOCH_COMPLETED, loop.on_epoch_pending),
            (Events.ITERATION_COMPLETED, loop.on_iteration_counted),
            (Events.ITERATION_COMPLETED, loop.on_iteration_decide),
            (Events.ITERATION_COMPLETED, loop.on_iteration_completed),
            (Events.EPOCH_COMPLETED, loop.on_epoch_completed), (Events.TERMINATE, loop.on_terminate),
            (Events.COMPLETED, loop.on_completed))


def attach_loop(loop: LoopView, run: Any) -> None:
    """Register the loop's event handlers on its trainer and wrap ``trainer.run`` with ``run(original, data,
    max_epochs, epoch_length, **kwargs)`` (once per trainer)."""
    t, pos = loop.trainer, loop.position
    t.add_event_handler(Events.STARTED, loop.on_started)
    t.add_event_handler(Events.EPOCH_STARTED, loop.on_epoch_started)
    t.add_event_handler(Events.EPOCH_STARTED, loop.on_epoch_data)
    t.add_event_handler(Events.DATALOADER_STOP_ITERATION, pos.on_iterator_renewed)
    t.add_event_handler(Events.TERMINATE_SINGLE_EPOCH, pos.on_iterator_renewed)
    t.add_event_handler(Events.EPOCH_COMPLETED, loop.on_epoch_pending)
    t.add_event_handler(Events.ITERATION_COMPLETED, loop.on_iteration_counted)
    move_handler(t, Events.ITERATION_COMPLETED, loop.on_iteration_counted, first=True)
    t.add_event_handler(Events.ITERATION_COMPLETED, loop.on_iteration_decide)
    t.add_event_handler(Events.EPOCH_COMPLETED, loop.on_epoch_completed)
    t.add_event_handler(Events.TERMINATE, loop.on_terminate)
    t.add_event_handler(Events.COMPLETED, loop.on_completed)
    _wrap_run(loop, run)


def _wrap_run(loop: LoopView, run_setup: Any) -> None:
    # Why a wrapper of this one trainer's ``run``: the loop must see the arguments the user passed
    # (Ignite's state cannot tell run(data) from run(data, max_epochs=1), and a config conflict must be
    # refused), run the sanity check before any training event, and put a resumed trainer where the
    # saved run stood before Ignite derives its position from ``iteration % epoch_length``.
    original = engine_run_original(loop.trainer)

    timer = loop.timer

    @functools.wraps(original)
    def run(data: Any = None, max_epochs: int | None = None, epoch_length: int | None = None,
            **kwargs: Any) -> State:
        timer.run_started()  # [run profile] the wall time of the whole call
        try:
            return run_setup(original, data, max_epochs, epoch_length, **kwargs)
        finally:
            timer.run_ended()

    loop.trainer.run = run  # type: ignore[method-assign,assignment]


def keep_decisions_last(loop: LoopView) -> None:
    """Handlers attached after the loop still run before the decisions of the same event."""
    t = loop.trainer
    t.state.optimizer_step = loop.progress.global_step  # type: ignore[attr-defined]
    iteration = Events.ITERATION_COMPLETED
    if t.has_event_handler(loop.on_iteration_completed, iteration):  # merged by the last run: split again
        t.remove_event_handler(loop.on_iteration_completed, iteration)
        t.add_event_handler(iteration, loop.on_iteration_counted)
        t.add_event_handler(iteration, loop.on_iteration_decide)
    move_handler(t, iteration, loop.on_iteration_decide, first=False)
    move_handler(t, Events.EPOCH_COMPLETED, loop.on_epoch_completed, first=False)
    move_handler(t, iteration, loop.on_iteration_counted, first=True)
    move_handler(t, Events.EPOCH_COMPLETED, loop.on_epoch_pending, first=True)
    move_handler(t, Events.EPOCH_STARTED, loop.on_epoch_data, first=False)
    move_handler(t, Events.TERMINATE, loop.on_terminate, first=True)
    if len(event_handlers(t, iteration)) == 2:
        # nothing runs between counting and deciding: one handler call per batch instead of two (Ignite's
        # dispatch costs about as much as either body)
        t.remove_event_handler(loop.on_iteration_counted, iteration)
        t.remove_event_handler(loop.on_iteration_decide, iteration)
        t.add_event_handler(iteration, loop.on_iteration_completed)


def detach_loop(loop: LoopView) -> None:
    """Take the loop and its handlers off the trainer (an ``attach_speedups`` refused part-way leaves the
    trainer as it found it, so that a corrected call can attach)."""
    t = loop.trainer
    for event, handler in _event_handlers(loop):
        if t.has_event_handler(handler, event):
            t.remove_event_handler(handler, event)
    t.__dict__.pop("run", None)  # the class's run again
    loop.handlers.call("detach")
    loop.parts.forget_loop(t, loop, loop.controller if loop.owns_controller else None)
