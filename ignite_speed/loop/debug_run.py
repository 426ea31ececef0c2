"""``fast_dev_run=n``: every engine that runs while the trainer trains takes ``n`` batches.

An app keeps engines that ignite-speed is never told about: Ignite's examples (and docs/existing_apps.rst)
run a second evaluator on the *training* data from an ``EPOCH_COMPLETED`` handler. A debug run that limits
the trainer and the validation schedule but lets that evaluator take a full pass over the training set is
not a debug run (cifar10: 2 x 32 batches after 1 training batch).

Why a limit on every run rather than a registration of the app's engines: registration needs the same
knowledge to catch the engine nobody registered (else the full pass is silent again), and then the only
useful thing to do with an unregistered engine is what registration would have done, limit it. So for
the length of a ``fast_dev_run``'s ``trainer.run`` (and only then), ``Engine.run`` is wrapped: a run of
any other engine started from inside it is one epoch of at most ``n`` batches of a fresh state, as
Lightning's ``fast_dev_run`` runs every loop. One dispatcher stands in for ``Engine.run`` while any
thread has a ``fast_dev_run`` open (a count under a lock: concurrent runs in several threads share it, and
the real ``run`` is back when the last one returns or raises); each thread's limits are its own record.
(An ``Engine`` subclass whose own ``run`` calls ``super().run`` is limited too; engines run by threads
without an open ``fast_dev_run``, an HPO study's parallel trials say, are not.)
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from ignite.engine import Engine

from .._callers import caller_outside_the_frameworks
from .._compat import prepare_engine_rerun
from ..data.loaders import data_length

__all__ = ["engines_limited_to"]


_lock = threading.Lock()
_active = 0  # the fast_dev_runs open in all threads (the dispatcher is installed while > 0)
_records = threading.local()  # .stack: this thread's open runs, [(n_batches, trainer, limited), ...]


def _dispatch(
    engine: Engine, data: Any = None, max_epochs: int | None = None, epoch_length: int | None = None, **kwargs: Any
) -> Any:
    """``Engine.run`` while a ``fast_dev_run`` is open: the calling thread's innermost run limits the engine."""
    real = _dispatch.real_run  # type: ignore[attr-defined]
    stack = getattr(_records, "stack", None)
    if not stack or engine is stack[-1][1]:  # (a thread without a debug run, or the trainer itself: unlimited)
        return real(engine, data, max_epochs=max_epochs, epoch_length=epoch_length, **kwargs)
    n_batches, _, limited = stack[-1]
    kwargs.pop("max_iters", None)
    length = epoch_length if epoch_length is not None else data_length(data)
    n = n_batches if length is None else min(length, n_batches)
    prepare_engine_rerun(engine)  # (a fresh state: a finished engine may run with another epoch_length)
    if length is None or length > n_batches:  # (the schedule's own runs are limited already)
        where = caller_outside_the_frameworks()
        name = where[0] if where else type(engine).__name__
        if name not in limited:
            limited.append(name)
    return real(engine, data, max_epochs=1, epoch_length=n, **kwargs)


@contextlib.contextmanager
def engines_limited_to(n_batches: int, trainer: Engine, limited: list[str]) -> Iterator[None]:
    """While it is open, a run of any engine but ``trainer`` in this thread runs 1 epoch of at most
    ``n_batches`` batches. The callers whose runs it shortened are added to ``limited``
    (``"log_training_results (main.py:42)"``), for the debug run's summary."""
    global _active
    with _lock:
        if _active == 0:
            _dispatch.real_run = Engine.__dict__["run"]  # type: ignore[attr-defined]
            setattr(Engine, "run", _dispatch)  # noqa: B010  (mypy: a method replaced on the class)
        _active += 1
    stack = _records.__dict__.setdefault("stack", [])
    stack.append((n_batches, trainer, limited))
    try:
        yield
    finally:
        stack.pop()
        with _lock:
            _active -= 1
            if _active == 0:
                setattr(Engine, "run", _dispatch.real_run)  # type: ignore[attr-defined]  # noqa: B010
