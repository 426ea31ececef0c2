"""Every difference between Ignite 0.4.x and 0.5.x that ignite-speed relies on, in one place.

Detected by feature, never by version string (Ignite's master builds differ from its releases).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ignite.engine import Engine

__all__ = ["ProgressBar", "RUN_HAS_MAX_ITERS", "prepare_engine_rerun", "engine_is_done", "move_handler",
           "engine_run_original"]

try:  # 0.5.x
    from ignite.handlers import ProgressBar
except ImportError:  # 0.4.x
    from ignite.contrib.handlers import ProgressBar  # type: ignore[no-redef]

RUN_HAS_MAX_ITERS = "max_iters" in inspect.signature(Engine.run).parameters


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
    """The class's ``run`` bound to ``engine`` (bypasses an instance-level wrapper)."""
    return type(engine).run.__get__(engine)

