"""What governs a run once ``fast_dev_run``, ``overfit_batches`` and Lightning's defaults apply
(:class:`EffectiveLimits`), and the rules that derive it from the flags."""

from __future__ import annotations

import dataclasses
import datetime
from dataclasses import dataclass

from .durations import BatchLimit
from .limits import UNLIMITED, Limit

__all__ = [
    "EffectiveLimits",
    "UNLIMITED",
    "DEFAULT_MAX_EPOCHS",
    "resolve_max_epochs",
    "resolve_min_epochs",
    "resolve_min_steps",
    "fast_dev_run_limit",
    "overfit_limit",
]

DEFAULT_MAX_EPOCHS = 1000  # Lightning's max_epochs when nothing bounds the run


@dataclass(frozen=True)
class EffectiveLimits:
    """The limits that govern a run once ``fast_dev_run`` and ``overfit_batches`` are applied."""

    max_epochs: Limit  # an int with a unit (ignite_speed.config.limits); UNLIMITED (-1): none
    max_steps: Limit
    min_epochs: int
    min_steps: int
    max_time: datetime.timedelta | None
    limit_train_batches: BatchLimit
    limit_val_batches: BatchLimit
    limit_test_batches: BatchLimit
    limit_predict_batches: BatchLimit
    val_check_interval: BatchLimit | datetime.timedelta
    check_val_every_n_epoch: int | None
    num_sanity_val_steps: int  # -1 = all
    overfit: bool
    fast_dev_run: int  # 0 = off
    early_stopping_enabled: bool
    max_epochs_defaulted: bool  # True when 1000 was chosen because nothing bounds the run
    val_time_fraction: float | None = None  # the validation time budget (None: none, or under fast_dev_run)


def resolve_max_epochs(max_epochs: int | None, max_steps: int, time_bounded: bool) -> tuple[int, bool]:
    """``max_epochs`` with Lightning's default for ``None``: 1000 when neither ``max_steps`` nor a time budget
    (``max_time``) bounds the run, else no limit. Returns the limit and whether the 1000 default was chosen.
    The one home of the rule: the config's effective limits and every run's limits (``LoopLimits``) use it."""
    if max_epochs is not None:
        return max_epochs, False
    if max_steps == UNLIMITED and not time_bounded:
        return DEFAULT_MAX_EPOCHS, True
    return UNLIMITED, False


def resolve_min_epochs(min_epochs: int | None, min_steps: int | None) -> int:
    """``min_epochs`` unset is 0, or 1 when ``min_steps`` is set (as in Lightning)."""
    if min_epochs is None:
        return 1 if min_steps is not None else 0
    return min_epochs


def resolve_min_steps(min_steps: int | None) -> int:
    return min_steps or 0


def fast_dev_run_limit(batches: int) -> BatchLimit:
    """The limit ``fast_dev_run=n`` puts on every loader (errors about it name ``fast_dev_run``)."""
    return BatchLimit("count", batches, source="fast_dev_run")


def overfit_limit(overfit_batches: BatchLimit) -> BatchLimit:
    """The train and val limit ``overfit_batches`` sets (errors about it name ``overfit_batches``)."""
    return dataclasses.replace(overfit_batches, source="overfit_batches")
