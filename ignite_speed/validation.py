"""Validation scheduling (``val_check_interval``, ``check_val_every_n_epoch``) and the sanity check.

:class:`ValSchedule` is a small pure decision object: given the loop counters after a training batch,
should validation run now? It follows Lightning 2.x's per-batch rules (see docs/validation.rst).
:func:`run_evaluator` and :func:`run_sanity_check` run an Ignite evaluator on a limited number of
batches.
"""

from __future__ import annotations

import contextlib
import datetime
import math
from dataclasses import dataclass
from typing import Any

from ignite.engine import Engine

from ._compat import prepare_engine_rerun
from .durations import BatchLimit
from .progress import Progress

__all__ = ["ValSchedule", "resolve_val_schedule", "run_evaluator", "run_sanity_check"]

INF = math.inf


@dataclass(frozen=True)
class ValSchedule:
    enabled: bool
    every_n_epochs: int | None  # None: count batches across epochs
    check_batch: float | None  # validate every this many batches (inf: at the end of the loader); None: time
    interval_seconds: float | None  # time-based interval
    train_limit_count: int | None  # limit_train_batches when it is an int (Lightning rule 5)

    def is_val_epoch(self, epoch_index: int) -> bool:
        return self.every_n_epochs is None or (epoch_index + 1) % self.every_n_epochs == 0

    def after_batch(self, p: Progress, is_last: bool, exhausted: bool, stopping: bool,
                    seconds_since_val: float) -> bool:
        """Validate after the batch just completed? (``p`` already counts that batch.)"""
        if not self.enabled or not self.is_val_epoch(p.epoch):
            return False
        if exhausted and self.check_batch == INF:
            return True
        if stopping:
            return True  # the one extra validation when a stop request ends training mid-epoch
        if self.interval_seconds is not None:
            return seconds_since_val >= self.interval_seconds
        if self.train_limit_count is not None and self.check_batch == INF:
            return p.batch_in_epoch % self.train_limit_count == 0
        if self.check_batch is not None and self.check_batch != INF:
            counter = p.total_batches if self.every_n_epochs is None else p.batch_in_epoch
            return counter % int(self.check_batch) == 0
        return is_last


def resolve_val_schedule(vci: BatchLimit | datetime.timedelta, every_n_epochs: int | None, *,
                         train_batches: int | None, train_limit: BatchLimit, enabled: bool) -> ValSchedule:
    """Turn ``val_check_interval`` into a batch cadence for an epoch of ``train_batches`` batches
    (``None``: unknown length). Raises ``ValueError`` for an int interval longer than the epoch."""
    limit_count = int(train_limit.value) if train_limit.kind == "count" else None
    if isinstance(vci, datetime.timedelta):
        return ValSchedule(enabled, every_n_epochs, None, vci.total_seconds(), limit_count)
    if vci.kind == "count":
        if (train_batches is not None and vci.value > train_batches and every_n_epochs is not None and enabled):
            raise ValueError(
                f"val_check_interval={vci.value} is more than the {train_batches} training batches of an epoch; "
                f"use val_check_interval <= {train_batches}, a fraction such as 0.5, or set "
                f"check_val_every_n_epoch=None to count batches across epochs")
        return ValSchedule(enabled, every_n_epochs, float(vci.value), None, limit_count)
    if train_batches is None:
        if vci.value != 1.0:
            raise ValueError(
                f"val_check_interval={vci.value!r} is a fraction of an epoch, but the training loader has no length; "
                f"accepted here: 1.0 (validate when the loader is exhausted), an int number of batches, or a duration")
        return ValSchedule(enabled, every_n_epochs, INF, None, limit_count)
    return ValSchedule(enabled, every_n_epochs, float(max(1, int(train_batches * vci.value))), None, limit_count)


def run_evaluator(evaluator: Engine, data: Any, n_batches: int | None) -> None:
    """One evaluator run over the first ``n_batches`` batches of a fresh iterator of ``data``."""
    prepare_engine_rerun(evaluator)
    evaluator.run(data, max_epochs=1, epoch_length=n_batches)


@contextlib.contextmanager
def _isolated_rng() -> Any:
    """Leave the global RNG states as they were (the sanity check must not change training)."""
    import random

    import torch

    py_state = random.getstate()
    try:
        import numpy as np

        np_state: Any = np.random.get_state()
    except ImportError:  # numpy is optional
        np = None  # type: ignore[assignment]
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(py_state)
            if np is not None:
                np.random.set_state(np_state)


def run_sanity_check(evaluator: Engine, data: Any, n_batches: int | None) -> int:
    """Run the evaluator's step on the first ``n_batches`` batches with none of its handlers, metrics
    discarded and RNG state untouched. Returns the number of batches run."""
    counted = [0]

    def step(engine: Engine, batch: Any) -> Any:
        counted[0] += 1
        return evaluator._process_function(engine, batch)

    shadow = Engine(step)
    shadow.logger.disabled = True
    with _isolated_rng():
        shadow.run(data, max_epochs=1, epoch_length=n_batches)
    return counted[0]
