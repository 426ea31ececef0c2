"""What one ``trainer.run()`` will do: its limits and batches, and the handlers' part in it.

The loop makes a :class:`RunPlan` when a run starts; the handlers fill in what they govern through the
``plan_run`` hook (:mod:`ignite_speed.loop.hooks`): the limits, the training-batch limit, the validation
schedule, the time budget. The loop then resolves the rest (batches per epoch, ranks) and the handlers
see the finished plan in ``on_run_start``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from ..config.durations import BatchLimit
from ..config.limits import EPOCHS, STEPS, UNLIMITED, Limit
from .progress import Progress

__all__ = ["RunLimits", "RunPlan", "ValidationRole"]


@dataclass(frozen=True)
class RunLimits:
    """The hard limits of one ``trainer.run()`` (:class:`~ignite_speed.config.Limit`; ``UNLIMITED``: none)."""

    max_epochs: Limit = Limit(UNLIMITED, EPOCHS)
    max_steps: Limit = Limit(UNLIMITED, STEPS)
    max_epochs_defaulted: bool = False  # 1000 was chosen because nothing else bounds the run

    @classmethod
    def of(cls, max_epochs: int, max_steps: int, max_epochs_defaulted: bool = False) -> RunLimits:
        return cls(Limit(max_epochs, EPOCHS), Limit(max_steps, STEPS), max_epochs_defaulted)


class ValidationRole(Protocol):
    """What the loop asks of the handler that validates during training (a ``ValidationSchedule``)."""

    time_based: bool
    last_metrics: dict[str, Any] | None
    # the settings early stopping places its checks by (Lightning's rule for check_on_train_epoch_end=None)
    val_check_interval: Any  # a BatchLimit or a timedelta
    check_val_every_n_epoch: int | None
    val_time_fraction: float | None

    @property
    def enabled(self) -> bool: ...

    def due_after_batch(self, progress: Progress, is_last: bool, stopping: bool, time_due: bool) -> bool: ...

    def next_due(self, progress: Progress, train_batches: int | None) -> float: ...

    def time_due(self, elapsed: float) -> bool: ...

    def due_at_exhaustion(self, progress: Progress) -> bool: ...

    def validate(self) -> None: ...

    def sanity_check(self) -> None: ...

    # what the time budget and a fast_dev_run's projection read of the schedule
    def count_due(self, start: Progress, batches: int | None, epoch_batches: int | None = None) -> int | None: ...

    def run_seconds(self, window: int) -> float: ...

    def epoch_runs(self, epoch: int, since: float) -> tuple[float, int]: ...


@dataclass
class RunPlan:
    """One run's plan. The run's arguments come first; handlers set the fields they govern in
    ``plan_run``; the loop sets the resolved fields before ``on_run_start``."""

    new_run: bool = True
    max_epochs_arg: int | None = None  # trainer.run(max_epochs=...)
    max_iters_arg: int | None = None  # trainer.run(max_iters=...)
    accumulate: int = 1  # batches per optimizer step
    # set by handlers in plan_run
    limits: RunLimits | None = None  # LoopLimits (None: Ignite's own run arguments govern)
    fast_dev_run: int = 0  # LoopLimits under fast_dev_run (its Checkpoints are rehearsed)
    debug_limited: list[str] = field(default_factory=list)  # fast_dev_run: who ran other engines it limited
    train_limit: BatchLimit = field(default_factory=BatchLimit.all)  # TrainBatchLimit
    overfit: bool = False  # TrainBatchLimit for overfit_batches: a sequential copy of the data
    validation: ValidationRole | None = None  # the ValidationSchedule
    time_budget_seconds: float | None = None  # TimeBudget's max_time
    # resolved by the loop
    train_batches: int | None = None  # per epoch (None: unknown length)
    train_data: Any = None  # the data the user passed to run() (the run's advice looks at its loader)
    data_batches: int | None = None  # batches in that data (or run()'s epoch_length), before limit_train_batches
    fresh_iterator_each_epoch: bool = False  # limit_train_batches: each epoch takes the first N of a new iterator
    world_size: int = 1
    is_rank_zero: bool = True

    @property
    def run_limits(self) -> RunLimits:
        return self.limits if self.limits is not None else RunLimits()
