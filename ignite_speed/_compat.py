"""Every difference between Ignite 0.4.x and 0.5.x that ignite-speed relies on, in one place.

Detected by feature, never by version string (Ignite's master builds differ from its releases).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ignite.engine import Engine

__all__ = [
    "ProgressBar",
    "RUN_HAS_MAX_ITERS",
    "CHECKPOINT_SAVED_EVENT",
    "prepare_engine_rerun",
    "engine_is_done",
    "move_handler",
    "engine_run_original",
    "event_handlers",
    "all_event_handlers",
    "has_event",
    "process_function",
    "data_iterator",
    "set_batches_done_in_epoch",
    "checkpoint_saved",
    "set_checkpoint_saved",
    "checkpoint_handlers",
    "set_process_function",
    "replace_handler",
]

try:  # 0.5.x
    from ignite.handlers import ProgressBar
except ImportError:  # 0.4.x
    from ignite.contrib.handlers import ProgressBar  # type: ignore[no-redef]

RUN_HAS_MAX_ITERS = "max_iters" in inspect.signature(Engine.run).parameters


def _checkpoint_saved_event() -> Any:
    from ignite.handlers import checkpoint

    events = getattr(checkpoint, "CheckpointEvents", None)
    return None if events is None else events.SAVED_CHECKPOINT


# Ignite 0.5.x fires CheckpointEvents.SAVED_CHECKPOINT on the engine after each save; 0.4.x has no such event.
CHECKPOINT_SAVED_EVENT = _checkpoint_saved_event()


def engine_is_done(engine: Engine) -> bool:
    """Whether ``engine.run()`` would start a new run rather than resume."""
    state = engine.state
    if state.max_epochs is None and getattr(state, "max_iters", None) is None:
        return True
    return bool(Engine._is_done(state))


def prepare_engine_rerun(engine: Engine) -> None:
    """Let a finished evaluator/tester run again with another ``epoch_length``.

    0.4.x refuses a new ``epoch_length`` once state exists, even for a finished run; forgetting
    ``max_epochs`` makes ``run()`` create a fresh state on both versions.
    """
    engine.state.max_epochs = None
    if hasattr(engine.state, "max_iters"):
        engine.state.max_iters = None


def move_handler(engine: Engine, event: Any, handler: Callable, *, first: bool) -> None:
    """Move an attached handler to the front or the back of ``event``'s handler list.

    Ignite has no priority API; handlers run in registration order. The stored tuple is moved as is,
    which keeps the storage format of either version (0.5.3+ stores a weak engine reference).
    """
    handlers = engine._event_handlers[event]
    for i, entry in enumerate(handlers):
        if entry[0] == handler:  # bound methods are new objects on each access: compare by equality
            handlers.pop(i)
            if first:
                handlers.insert(0, entry)
            else:
                handlers.append(entry)
            return


def engine_run_original(engine: Engine) -> Callable[..., Any]:
    """The class's ``run`` bound to ``engine`` (bypasses an instance-level wrapper, and the dispatcher that
    stands in for ``Engine.run`` while a ``fast_dev_run`` is open in some thread: loop.debug_run)."""
    run = type(engine).run
    return getattr(run, "real_run", run).__get__(engine)


# ---------------------------------------------------------------------------------------------- private state
# Ignite has no public API for these; every supported version (0.4.11 to 0.5.x) has them as below.


def event_handlers(engine: Engine, event: Any) -> list[Any]:
    """``event``'s handler entries, in call order (each entry starts with the handler)."""
    return engine._event_handlers.get(event, [])


def all_event_handlers(engine: Engine) -> list[Any]:
    """Every handler entry of every event."""
    return [entry for entries in engine._event_handlers.values() for entry in entries]


def has_event(engine: Engine, event: Any) -> bool:
    """Whether ``event`` is registered on ``engine`` (custom events must be registered before use)."""
    return event in engine._allowed_events


def process_function(engine: Engine) -> Callable[[Engine, Any], Any]:
    return engine._process_function


def set_process_function(engine: Engine, function: Callable[[Engine, Any], Any]) -> None:
    """Give ``engine`` another process function (the run profile's timed wrapper, and back)."""
    engine._process_function = function


def replace_handler(engine: Engine, event: Any, old: Callable, new: Callable) -> bool:
    """Put ``new`` in ``old``'s place in ``event``'s handler list (same position, same stored arguments);
    returns whether ``old`` was there."""
    handlers = engine._event_handlers.get(event, [])
    for i, entry in enumerate(handlers):
        if entry[0] == old:
            handlers[i] = (new, *entry[1:])
            return True
    return False


def data_iterator(engine: Engine) -> Any:
    """The iterator ``engine`` draws its current epoch's batches from."""
    if not hasattr(engine, "_dataloader_iter"):  # pragma: no cover - every supported Ignite has it
        raise RuntimeError("exact resume needs Engine._dataloader_iter (Ignite 0.4.11 to 0.5.x)")
    return engine._dataloader_iter


def set_batches_done_in_epoch(engine: Engine, batches_done: int) -> None:
    """Where inside the epoch the next ``run()`` continues."""
    if not hasattr(engine, "_init_iter"):  # pragma: no cover - every supported Ignite has it
        raise RuntimeError("exact resume needs Engine._init_iter (Ignite 0.4.11 to 0.5.x)")
    engine._init_iter = int(batches_done)


def checkpoint_saved(checkpoint: Any) -> list[Any]:
    """The files a ``Checkpoint`` wrote so far (newest last)."""
    return checkpoint._saved


def set_checkpoint_saved(checkpoint: Any, saved: list[Any]) -> None:
    checkpoint._saved = saved


def checkpoint_handlers(engine: Engine, *, latest_state_only: bool = False) -> list[Any]:
    """The ``Checkpoint`` handlers attached to ``engine`` (also under an event filter), each once;
    ``latest_state_only``: only those that keep the latest state (no ``score_function``: not the best)."""
    from ignite.handlers import Checkpoint

    found: list[Any] = []
    for entry in all_event_handlers(engine):
        handler = getattr(entry[0], "__wrapped__", entry[0])  # Ignite wraps a filtered handler
        if (
            isinstance(handler, Checkpoint)
            and all(handler is not f for f in found)
            and not (latest_state_only and handler.score_function is not None)
        ):
            found.append(handler)
    return found
