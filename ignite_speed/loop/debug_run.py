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
Lightning's ``fast_dev_run`` runs every loop. The class's ``run`` is restored when the trainer's run
returns or raises. (An ``Engine`` subclass whose own ``run`` calls ``super().run`` is limited too; engines
run by other threads, an HPO study's parallel trials say, are not.)
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


@contextlib.contextmanager
def engines_limited_to(n_batches: int, trainer: Engine, limited: list[str]) -> Iterator[None]:
    """While it is open, a run of any engine but ``trainer`` runs 1 epoch of at most ``n_batches``
    batches. The callers whose runs it shortened are added to ``limited`` (``"log_training_results
    (main.py:42)"``), for the debug run's summary."""
    original, thread = Engine.__dict__["run"], threading.get_ident()

    def run(
        engine: Engine, data: Any = None, max_epochs: int | None = None, epoch_length: int | None = None, **kwargs: Any
    ) -> Any:
        if engine is trainer or threading.get_ident() != thread:  # (another thread's engines: not this run's)
            return original(engine, data, max_epochs=max_epochs, epoch_length=epoch_length, **kwargs)
        kwargs.pop("max_iters", None)
        length = epoch_length if epoch_length is not None else data_length(data)
        n = n_batches if length is None else min(length, n_batches)
        prepare_engine_rerun(engine)  # (a fresh state: a finished engine may run with another epoch_length)
        if length is None or length > n_batches:  # (the schedule's own runs are limited already)
            where = caller_outside_the_frameworks()
            name = where[0] if where else type(engine).__name__
            if name not in limited:
                limited.append(name)
        return original(engine, data, max_epochs=1, epoch_length=n, **kwargs)

    setattr(Engine, "run", run)  # noqa: B010  (mypy: a method replaced on the class)
    try:
        yield
    finally:
        setattr(Engine, "run", original)  # noqa: B010
