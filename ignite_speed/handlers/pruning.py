"""Trial pruning for hyperparameter searches: after every validation run, report the monitored metric to the
search at a step in a chosen unit and stop the trial, on every rank at the same batch, when the search says so.

:class:`Pruning` is the engine-neutral handler: it takes a ``should_prune(value, step)`` callable, which rank 0
alone calls. The adapters of :mod:`ignite_speed.search` (Optuna, Ray Tune) subclass it and talk to their search
engine in :meth:`Pruning.ask`. A prune is a stop request with :attr:`~ignite_speed.loop.StopReason.PRUNED`, sent
through the trainer's :class:`~ignite_speed.loop.StopController`: the ranks agree on it in the one sync of the
validation run, and ``min_epochs`` / ``min_steps`` defer it like any request.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from ..config.durations import format_value
from ..config.pruning import PRUNING_UNITS, validate_pruning_unit
from ..distributed._dist import get_rank, get_world_size
from ..loop.plan import RunPlan, ValidationRole
from ..loop.stop import StopReason
from ..loop.training_loop import TrainingLoop
from .base import LoopHandler
from .validation import ValidationSchedule

__all__ = ["Pruning", "PRUNING_UNITS"]


class Pruning(LoopHandler):
    """Report ``monitor`` to a hyperparameter search after every validation run and stop when it says prune.

    Args:
        monitor: the metric of the validation run to report (``evaluator.state.metrics[monitor]``).
        should_prune: ``should_prune(value, step) -> bool``, called on rank 0 only, once per validation run
            (the adapters of :mod:`ignite_speed.search` supply it: leave it ``None`` there).
        unit: what ``step`` counts, so that trials are compared at equal progress: ``"steps"`` (optimizer
            steps, an int), ``"epochs"`` (a float: 1.5 is the middle of the second epoch) or ``"seconds"``
            (training seconds, validation included, of the loop's clock).

    A prune is a stop request with ``StopReason.PRUNED`` and the message ``"pruned at <unit> <step>:
    <monitor>=<value>"``. Every rank takes part in one sync per validation run, so all stop after the same
    batch. ``min_epochs`` / ``min_steps`` defer it (the trial is still reported to and asked at every
    validation run meanwhile; the first prune stands once the minimums are met). A validation run that a
    resumed run replays (a checkpoint written during it) is not reported twice: the search is asked again.
    It reports the runs of the trainer's :class:`~ignite_speed.handlers.ValidationSchedule`: without one, or
    with validation disabled, it is refused (at ``attach``, else when the run starts).
    """

    name = "pruning"
    # after the validation schedule (40), before early stopping (50) (StopReason.PRUNED outranks EARLY_STOPPING in
    # the controller whatever the order)
    order = 45

    def __init__(
        self, monitor: str, should_prune: Callable[[float, float], bool] | None = None, unit: str = "steps"
    ) -> None:
        super().__init__()
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"{type(self).__name__}(monitor={format_value(monitor)}): accepted: a metric name (str)")
        if should_prune is not None and not callable(should_prune):
            raise TypeError(
                f"{type(self).__name__}(should_prune={format_value(should_prune)}): accepted: a callable "
                f"should_prune(value, step) -> bool"
            )
        self.monitor = monitor
        self.unit = validate_pruning_unit(unit, type(self).__name__)
        self._should_prune = should_prune
        self.reports = 0  # validation runs reported to the search (all runs of this trial)
        self.last_reported_batch = -1  # total_batches at the last report: a replayed validation is not reported again
        self.pruned_at: float | None = None  # the step of the prune (None: not pruned)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(monitor={self.monitor!r}, unit={self.unit!r})"

    # ------------------------------------------------------------------ what the search sees
    def ask(self, value: float, step: float, first: bool) -> bool:
        """Report ``value`` at ``step`` (``first``: this validation run was not reported before) and return
        whether to prune. Rank 0 only. Adapters override this."""
        if self._should_prune is None:
            raise ValueError(
                f"{type(self).__name__}(should_prune=None): pass a callable, or use an adapter of "
                f"ignite_speed.search (OptunaPruning, RayTunePruning)"
            )
        return bool(self._should_prune(value, step))

    def step_now(self) -> float:
        """The trial's progress in :attr:`unit`, now."""
        loop = self.loop
        p = loop.progress
        if self.unit == "steps":
            return p.global_step
        if self.unit == "seconds":
            return loop.clock.elapsed()
        batches = loop.plan.train_batches
        if not batches:  # a loader of unknown length validates when it runs out: the epoch is whole
            return float(p.epochs_done + 1)
        return p.epochs_done + min(p.batch_in_epoch, batches) / batches

    # ------------------------------------------------------------------ hooks
    def _attached(self, loop: TrainingLoop) -> None:
        schedule = ValidationSchedule.of(loop)
        if schedule is not None:  # (one attached later is checked at the run's start)
            self._refuse_without_validation(schedule)

    def on_run_start(self, plan: RunPlan) -> None:
        self._refuse_without_validation(plan.validation)

    def _refuse_without_validation(self, schedule: ValidationRole | None) -> None:
        """No validation run, no report: the search would get nothing from this trial and never prune it."""
        if schedule is None:
            why = "no ValidationSchedule is attached to the trainer"
        elif not schedule.enabled:
            why = "validation is disabled (limit_val_batches=0, or no or empty val_data)"
        else:
            return
        raise ValueError(
            f"{self!r} reports the validation runs of the schedule to the search, but {why}, so the trial would "
            f"never be reported or pruned; accepted: validation enabled (attach_speedups with an evaluator and "
            f"val_data, or a ValidationSchedule attached to the trainer), or no pruning (pruning=None)"
        )

    def on_validation_end(self, metrics: Mapping[str, Any]) -> None:
        """After each validation run of the schedule during training (mid-epoch ones too)."""
        loop = self.loop
        pruned, step, value = False, 0.0, math.nan
        if get_rank() == 0:
            value, step = self._read(metrics), self.step_now()
            first = loop.progress.total_batches != self.last_reported_batch
            self.last_reported_batch = loop.progress.total_batches
            self.reports += int(first)
            pruned = self.ask(value, step, first)
        if pruned:
            self.pruned_at = step
            loop.controller.request(
                StopReason.PRUNED, f"pruned at {self.unit} {_fmt(step)}: {self.monitor}={value:.6g}", self.name
            )
        if get_world_size() > 1:
            loop.controller.sync()  # every rank, at this validation run: all stop at the same batch

    def _read(self, metrics: Mapping[str, Any]) -> float:
        if self.monitor not in metrics:
            raise RuntimeError(
                f"{type(self).__name__} could not find the monitor {self.monitor!r} in the "
                f"validation metrics; available: {sorted(metrics)}"
            )
        value = metrics[self.monitor]
        return float(value.item() if hasattr(value, "item") else value)

    def on_new_run(self) -> None:
        self.reports, self.last_reported_batch, self.pruned_at = 0, -1, None

    def report_fields(self) -> dict[str, Any]:
        return {
            "pruning": {
                "monitor": self.monitor,
                "unit": self.unit,
                "reports": self.reports,
                "pruned_at": self.pruned_at,
            }
        }

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        self.loop  # noqa: B018  (refuses a handler not attached)
        return {"reports": self.reports, "last_reported_batch": self.last_reported_batch, "pruned_at": self.pruned_at}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.reports = int(state.get("reports", 0))
        self.last_reported_batch = int(state.get("last_reported_batch", -1))
        pruned_at = state.get("pruned_at")
        self.pruned_at = None if pruned_at is None else float(pruned_at)


def _fmt(step: float) -> str:
    return str(step) if isinstance(step, int) else f"{step:.4g}"
