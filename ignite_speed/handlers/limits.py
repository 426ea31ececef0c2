"""Loop limits and the training-batch limit, as standalone Ignite handlers.

* :class:`LoopLimits`: ``max_epochs``, ``min_epochs``, ``max_steps``, ``min_steps`` with Lightning's
  defaults (``max_epochs`` unset: 1000, or no limit when ``max_steps`` or a time budget bounds the run).
* :class:`TrainBatchLimit`: ``limit_train_batches``, the first N batches of a fresh iterator every epoch.
"""

from __future__ import annotations

import warnings
from typing import Any

from ..config.durations import BatchLimit
from ..config.effective import resolve_max_epochs
from ..config.limits import STEPS, UNLIMITED, Limit
from ..config.slices import LoopLimitsFlags, TrainBatchFlags
from ..loop.plan import RunLimits, RunPlan
from ..loop.training_loop import TrainingLoop
from .base import LoopHandler
from .progress_bars import UntotalledBars

__all__ = ["LoopLimits", "TrainBatchLimit"]


class LoopLimits(LoopHandler):
    """Epoch and optimizer-step limits of training (Lightning's ``max_epochs``/``min_epochs``/``max_steps``/
    ``min_steps``/``fast_dev_run``). Attached, it governs ``trainer.run(data)``: give no ``max_epochs`` to ``run``.
    The minimums live here: the trainer's stop controller holds this handler's.

    Args:
        max_epochs: stop after this many epochs; ``-1``: no limit; ``None``: 1000, or no limit when
            ``max_steps`` is set or a :class:`~ignite_speed.handlers.TimeBudget` is attached.
        min_epochs: stop requests (early stopping, ``max_time``, ``request_stop()``) wait until this many
            epochs are done.
        max_steps: stop after this many optimizer steps; ``-1``: no limit.
        min_steps: stop requests wait until this many optimizer steps are done (also makes ``min_epochs`` 1).
        fast_dev_run: ``n`` (``True``: 1): one epoch of ``n`` steps, no minimums (the other flags' limits are unused).
    """

    name = "limits"
    order = 20  # after the time budget (without max_epochs, a budget bounds the run)

    def __init__(
        self,
        max_epochs: int | None = None,
        min_epochs: int | None = None,
        max_steps: int = UNLIMITED,
        min_steps: int | None = None,
        fast_dev_run: int = 0,
    ) -> None:
        super().__init__()
        self._bars = UntotalledBars()  # (a run without a planned total: progress_bars.py)
        self.flags = LoopLimitsFlags.parse(max_epochs, min_epochs, max_steps, min_steps, fast_dev_run)
        limits = self.flags.resolved()
        self.fast_dev_run = self.flags.fast_dev_run
        self.max_epochs = limits.max_epochs  # None: Lightning's default (1000, or no limit when something else bounds)
        self.max_steps = Limit(limits.max_steps, STEPS)
        self.min_epochs, self.min_steps = limits.min_epochs, limits.min_steps

    def __repr__(self) -> str:
        return (
            f"LoopLimits(max_epochs={self.max_epochs}, min_epochs={self.min_epochs}, max_steps={self.max_steps}, "
            f"min_steps={self.min_steps})"
        )

    def _attached(self, loop: TrainingLoop) -> None:
        loop.controller.set_minimums(self.min_epochs, self.min_steps, caller="LoopLimits")

    def detach(self) -> None:
        """Taken off (``Speedups.extend`` replaces it): its minimums go with it."""
        if self._loop is not None:
            self._loop.controller.replace_minimums(0, 0)

    def plan_run(self, plan: RunPlan) -> None:
        plan.limits = self.for_run(
            plan.max_epochs_arg,
            plan.max_iters_arg,
            has_time_budget=plan.time_budget_seconds is not None,
            accumulate=plan.accumulate,
        )
        plan.fast_dev_run = self.fast_dev_run

    def on_run_start(self, plan: RunPlan) -> None:
        lim = plan.run_limits
        if lim.max_epochs.unlimited and lim.max_steps.unlimited:  # no planned total: a ProgressBar shows none
            self._bars.start(self.loop.trainer)
        if plan.new_run and plan.run_limits.max_epochs_defaulted:
            warnings.warn(
                "max_epochs was not set and nothing else bounds the run: training stops after 1000 epochs "
                "(set max_epochs=-1 for no limit)",
                UserWarning,
                stacklevel=5,
            )

    def on_run_exit(self) -> None:
        self._bars.stop()

    def for_run(
        self, run_max_epochs: int | None, max_iters: int | None, *, has_time_budget: bool, accumulate: int
    ) -> RunLimits:
        """The limits of one ``trainer.run(data, max_epochs=..., max_iters=...)``."""
        max_steps: int = self.max_steps
        max_epochs, defaulted = resolve_max_epochs(self.max_epochs, self.max_steps, has_time_budget)
        if run_max_epochs is not None:
            if isinstance(run_max_epochs, bool) or not isinstance(run_max_epochs, int) or run_max_epochs < 0:
                raise ValueError(f"trainer.run(max_epochs={run_max_epochs!r}): accepted: an int >= 0")
            if self.fast_dev_run:
                warnings.warn(
                    f"fast_dev_run={self.fast_dev_run} runs 1 epoch; max_epochs={run_max_epochs} given to "
                    f"run() is not used",
                    UserWarning,
                    stacklevel=7,
                )
            elif self.max_epochs is not None and self.max_epochs != run_max_epochs:
                raise ValueError(
                    f"trainer.run(max_epochs={run_max_epochs}) conflicts with the config's "
                    f"max_epochs={self.max_epochs}; give max_epochs in one place only"
                )
            else:
                max_epochs, defaulted = run_max_epochs, False
        if max_iters is not None:
            if self.fast_dev_run or (self.max_steps != UNLIMITED and self.max_steps != max_iters) or accumulate != 1:
                raise ValueError(
                    f"trainer.run(max_iters={max_iters}) conflicts with the config (max_steps="
                    f"{self.max_steps}, accumulate_grad_batches={accumulate}); set max_steps in the "
                    f"config instead"
                )
            max_steps = int(max_iters)
            if run_max_epochs is None and self.max_epochs is None:
                max_epochs, defaulted = UNLIMITED, False
        return RunLimits.of(max_epochs, max_steps, defaulted)


class TrainBatchLimit(LoopHandler):
    """Train on the first ``limit_train_batches`` batches of each epoch (Lightning's flag).

    Args:
        limit_train_batches: a fraction in [0, 1] of the loader's batches, or an int number of batches
            (``None``: all). Every epoch takes its batches from a fresh iterator of the data, so each epoch
            sees the first N batches of a new (possibly shuffled) pass, as in Lightning.
        overfit_batches: Lightning's ``overfit_batches`` (a fraction or an int; ``0``: off): the same first
            batches every epoch, from a sequential copy of the data (shuffling off); it wins over the limit.
        fast_dev_run: ``n`` (``True``: 1): ``n`` batches per epoch (unless ``overfit_batches``).
    """

    name = "train_batches"
    order = 30

    def __init__(self, limit_train_batches: Any = None, overfit_batches: Any = 0.0, fast_dev_run: int = 0) -> None:
        super().__init__()
        self.flags = TrainBatchFlags.parse(limit_train_batches, overfit_batches, fast_dev_run)
        self.limit: BatchLimit = self.flags.limit
        self.overfit = self.flags.overfit  # overfit_batches: the same first batches every epoch (shuffling off)

    def __repr__(self) -> str:
        return f"TrainBatchLimit({self.limit!r}{', overfit' if self.overfit else ''})"

    def plan_run(self, plan: RunPlan) -> None:
        plan.train_limit, plan.overfit = self.limit, self.overfit
