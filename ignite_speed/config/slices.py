"""The typed slices of the config that the handlers are built from: one per handler, its constructor's arguments.

:class:`~ignite_speed.config.SpeedConfig` exposes each slice (``cfg.loop_limits_flags()``, ...); a handler's
constructor takes the same fields as keyword arguments and checks them with the same validator (a parsed value
passes it unchanged), so a handler attached alone and one that ``attach_speedups`` builds hold the same values.
``fast_dev_run`` and ``overfit_batches`` are fields of the slices they change, and their effect on a handler is
resolved here, once (:meth:`LoopLimitsFlags.resolved`, :meth:`TrainBatchFlags.limit`,
:meth:`ValidationFlags.resolved`); :meth:`SpeedConfig.effective <ignite_speed.config.SpeedConfig.effective>`
reads the same rules.
"""

from __future__ import annotations

import dataclasses
import datetime
from dataclasses import dataclass
from typing import Any

from .durations import BatchLimit, parse_batch_limit
from .effective import fast_dev_run_limit, overfit_limit, resolve_min_epochs, resolve_min_steps
from .flags import (
    validate_fast_dev_run,
    validate_loop_limits,
    validate_overfit_batches,
    validate_validation_schedule,
)

__all__ = ["LoopLimitsFlags", "TrainBatchFlags", "ValidationFlags", "ResolvedLoopLimits", "kwargs_of"]


def kwargs_of(flags: Any) -> dict[str, Any]:
    """A slice as the keyword arguments of its handler's constructor."""
    return {f.name: getattr(flags, f.name) for f in dataclasses.fields(flags)}


@dataclass(frozen=True)
class ResolvedLoopLimits:
    """The loop limits once ``fast_dev_run`` applies (``max_epochs`` ``None``: Lightning's default, resolved per run)."""

    max_epochs: int | None
    max_steps: int
    min_epochs: int
    min_steps: int


@dataclass(frozen=True)
class LoopLimitsFlags:
    """:class:`~ignite_speed.handlers.LoopLimits`: ``max_epochs``, ``min_epochs``, ``max_steps``, ``min_steps``, ``fast_dev_run``."""

    max_epochs: int | None = None
    min_epochs: int | None = None
    max_steps: int = -1
    min_steps: int | None = None
    fast_dev_run: int = 0

    @staticmethod
    def parse(
        max_epochs: Any = None,
        min_epochs: Any = None,
        max_steps: Any = -1,
        min_steps: Any = None,
        fast_dev_run: Any = 0,
    ) -> LoopLimitsFlags:
        limits = validate_loop_limits(max_epochs, min_epochs, max_steps, min_steps)
        return LoopLimitsFlags(
            limits.max_epochs,
            limits.min_epochs,
            limits.max_steps,
            limits.min_steps,
            validate_fast_dev_run(fast_dev_run),
        )

    def resolved(self) -> ResolvedLoopLimits:
        """``fast_dev_run=n``: one epoch of ``n`` steps, no minimums (Lightning); else the flags, minimums resolved."""
        if self.fast_dev_run:
            return ResolvedLoopLimits(1, self.fast_dev_run, 0, 0)
        return ResolvedLoopLimits(
            self.max_epochs,
            self.max_steps,
            resolve_min_epochs(self.min_epochs, self.min_steps),
            resolve_min_steps(self.min_steps),
        )


@dataclass(frozen=True)
class TrainBatchFlags:
    """:class:`~ignite_speed.handlers.TrainBatchLimit`: ``limit_train_batches``, ``overfit_batches``, ``fast_dev_run``."""

    limit_train_batches: BatchLimit = dataclasses.field(default_factory=BatchLimit.all)
    overfit_batches: BatchLimit = dataclasses.field(default_factory=lambda: BatchLimit("fraction", 0.0))
    fast_dev_run: int = 0

    @staticmethod
    def parse(limit_train_batches: Any = None, overfit_batches: Any = 0.0, fast_dev_run: Any = 0) -> TrainBatchFlags:
        return TrainBatchFlags(
            parse_batch_limit(limit_train_batches, "limit_train_batches"),
            validate_overfit_batches(overfit_batches),
            validate_fast_dev_run(fast_dev_run),
        )

    @property
    def overfit(self) -> bool:
        """``overfit_batches``: the same first batches every epoch (a sequential copy of the data)."""
        return not self.overfit_batches.is_zero

    @property
    def limit(self) -> BatchLimit:
        """The batches per epoch: ``overfit_batches`` wins over ``fast_dev_run``, which wins over the limit."""
        if self.overfit:
            return overfit_limit(self.overfit_batches)
        return fast_dev_run_limit(self.fast_dev_run) if self.fast_dev_run else self.limit_train_batches

    @property
    def is_all(self) -> bool:
        return not self.overfit and self.limit.is_all


@dataclass(frozen=True)
class ValidationFlags:
    """:class:`~ignite_speed.handlers.ValidationSchedule`'s flags (besides the evaluator and the data)."""

    val_check_interval: BatchLimit | datetime.timedelta = dataclasses.field(default_factory=BatchLimit.all)
    check_val_every_n_epoch: int | None = 1
    num_sanity_val_steps: int = 2
    limit_val_batches: BatchLimit = dataclasses.field(default_factory=BatchLimit.all)
    val_time_fraction: float | None = None
    overfit_batches: BatchLimit = dataclasses.field(default_factory=lambda: BatchLimit("fraction", 0.0))
    fast_dev_run: int = 0

    @staticmethod
    def parse(
        val_check_interval: Any = None,
        check_val_every_n_epoch: Any = 1,
        num_sanity_val_steps: Any = 2,
        limit_val_batches: Any = None,
        val_time_fraction: Any = None,
        overfit_batches: Any = 0.0,
        fast_dev_run: Any = 0,
    ) -> ValidationFlags:
        s = validate_validation_schedule(
            val_check_interval, check_val_every_n_epoch, num_sanity_val_steps, limit_val_batches, val_time_fraction
        )
        return ValidationFlags(
            s.val_check_interval,
            s.check_val_every_n_epoch,
            s.num_sanity_val_steps,
            s.limit_val_batches,
            s.val_time_fraction,
            validate_overfit_batches(overfit_batches),
            validate_fast_dev_run(fast_dev_run),
        )

    @property
    def overfit(self) -> bool:
        return not self.overfit_batches.is_zero

    def resolved(self) -> ValidationFlags:
        """The schedule that runs: ``overfit_batches`` sets the batches per run; ``fast_dev_run=n`` validates
        ``n`` batches once per epoch with no sanity check and no time budget (Lightning)."""
        limit = overfit_limit(self.overfit_batches) if self.overfit else self.limit_val_batches
        if not self.fast_dev_run:
            return dataclasses.replace(self, limit_val_batches=limit)
        if not self.overfit:
            limit = fast_dev_run_limit(self.fast_dev_run)
        return dataclasses.replace(
            self,
            val_check_interval=BatchLimit.all(),
            check_val_every_n_epoch=1,
            num_sanity_val_steps=0,
            limit_val_batches=limit,
            val_time_fraction=None,
        )
