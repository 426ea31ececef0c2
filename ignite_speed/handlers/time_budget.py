"""``max_time``: a training-time budget measured on a monotonic clock (:class:`TimeBudget`).

Counted from training start (after the sanity check), validation included; the elapsed time and the
measured epoch durations are part of the loop state, so a resumed run continues the same budget with the
same measurements. In distributed runs only rank 0's clock decides (the stop controller syncs its request),
so ranks with drifting clocks cannot disagree.

Three modes (``max_time_mode``):

* ``"step"`` (Lightning's ``max_time``): checked after every training batch; the run stops after the batch
  that crosses the budget.
* ``"epoch"`` (Lightning's ``Timer(interval="epoch")``): checked at epoch ends only; the epoch in which the
  time ran out is finished.
* ``"fit"``: at every epoch end, the next epoch's duration (its validation included) is predicted from the
  epochs measured so far; the run stops at that boundary when the next epoch would not fit. The per-batch
  check of ``"step"`` stays as a guard (the first epoch, with nothing measured yet, or a prediction that
  fell short), so the budget is never exceeded by more than a batch.

``max_time_reserve`` is held back for what comes after training (a final save, a test run): training
plans against ``max_time - max_time_reserve`` in every mode.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from ignite.engine import Engine

from ..config.effective import resolve_max_epochs
from ..config.flags import MAX_TIME_MODES, validate_max_time_flags
from ..config.limits import UNLIMITED
from ..loop.clock import TrainingClock
from ..loop.plan import RunLimits, RunPlan
from ..loop.progress import Progress
from ..loop.state import Stage
from ..loop.stop import StopReason
from ..loop.training_loop import TrainingLoop
from ..report.record import EpochTime, format_seconds
from .base import LoopHandler

__all__ = ["TrainingClock", "TimeBudget", "MAX_TIME_MODES"]

# "fit" predicts from the last this many complete epochs (the longest of them: a slow epoch is not forgotten
# at once, a slow first epoch (warm-up) is after a few)
PREDICTION_WINDOW = 3


class TimeBudget(LoopHandler):
    """Stop training once ``max_time`` of training has elapsed (Lightning's ``max_time``), or, with
    ``mode="fit"``, at the last epoch boundary after which another epoch would not fit.

    Checked at the start of a run in every mode (a resumed run whose time is spent stops before its first
    batch); then after every training batch (``"step"``, ``"fit"``: a clock read, on rank 0 only in
    distributed runs) and at every epoch end (``"epoch"``, ``"fit"``). A stop is a request: it waits for
    ``min_epochs``/``min_steps`` like any other. Validation time counts; the sanity check does not. Without
    ``max_epochs`` (from ``run()`` or a :class:`LoopLimits`), the budget bounds the run, as Lightning's ``max_time``
    does: attached alone, ``trainer.run(data)`` trains until the budget, not Ignite's one epoch.

    Args:
        max_time: ``"DD:HH:MM:SS"``, a dict such as ``{"minutes": 5}``, a ``timedelta`` or seconds.
        mode: ``"step"`` (default), ``"epoch"`` or ``"fit"`` (see the module docs and docs/loop_limits.rst).
        reserve: a duration held back from ``max_time`` for the final save or test (same forms; less than
            ``max_time``): training plans against ``max_time - reserve``.

    Attributes:
        epochs: the measured :class:`~ignite_speed.report.EpochTime` of every epoch of the run.
    """

    name = "time_budget"
    order = 10  # before the limits (a budget bounds a run without max_epochs) and early stopping

    def __init__(self, max_time: Any, mode: str = "step", reserve: Any = None) -> None:
        super().__init__()
        if max_time is None:
            raise ValueError(
                'TimeBudget(max_time=None): accepted: a duration ("DD:HH:MM:SS", a dict such as '
                '{"minutes": 5}, a timedelta or seconds)'
            )
        flags = validate_max_time_flags(max_time, mode, reserve)  # names the flag, the value, what is accepted
        assert flags.max_time is not None
        self.max_time: datetime.timedelta = flags.max_time
        self.mode: str = flags.mode
        self.reserve: datetime.timedelta = flags.reserve or datetime.timedelta(0)
        self.seconds = self.max_time.total_seconds()
        self.reserve_seconds = self.reserve.total_seconds()
        self.limit = self.seconds - self.reserve_seconds  # what training plans against
        self.epochs: list[EpochTime] = []
        self._epoch_start: float | None = None  # training-clock time of the current epoch's start
        if self.mode == "epoch":
            self.skip_hooks = frozenset({"on_batch_end"})  # "epoch" adds no per-batch work

    def __repr__(self) -> str:
        extra = "" if self.mode == "step" else f", mode={self.mode!r}"
        if self.reserve_seconds:
            extra += f", reserve={self.reserve}"
        return f"TimeBudget(max_time={self.max_time}{extra})"

    @property
    def budget_name(self) -> str:
        """How the budget is named in stop messages: ``max_time=0:10:00`` (``less max_time_reserve=...``)."""
        name = f"max_time={self.max_time}"
        return f"{name} less max_time_reserve={self.reserve}" if self.reserve_seconds else name

    # ------------------------------------------------------------------ hooks
    def plan_run(self, plan: RunPlan) -> None:
        plan.time_budget_seconds = self.seconds
        if plan.limits is None:
            # Alone (LoopLimits plans after it and sets its own): Lightning's max_time rule, no epoch limit
            # unless run() gives one, instead of Ignite's one-epoch default (the rule of resolve_max_epochs).
            max_epochs, _ = resolve_max_epochs(plan.max_epochs_arg, UNLIMITED, time_bounded=True)
            plan.limits = RunLimits.of(max_epochs, UNLIMITED if plan.max_iters_arg is None else plan.max_iters_arg)

    def on_train_start(self) -> None:
        self.check(self.loop)

    def on_batch_end(self, engine: Engine) -> None:
        loop = self._loop
        assert loop is not None
        if loop.plan.is_rank_zero:
            elapsed = loop.clock.elapsed()
            if elapsed >= self.limit:
                self._request_spent(loop, elapsed, "")

    def _request_spent(self, loop: TrainingLoop, elapsed: float, where: str) -> None:
        loop.controller.request(
            StopReason.MAX_TIME, f"{self.budget_name} reached after {elapsed:.3f} s of training{where}", "max_time"
        )

    def check(self, loop: TrainingLoop) -> None:
        """At the start of a run (the loop calls it): begin the epoch measurements and request the stop when
        the budget is already spent (only rank 0's clock decides); ``"fit"`` also predicts the next epoch when
        the run starts at an epoch boundary (a resumed or extended run)."""
        elapsed = loop.clock.elapsed()
        self._run_started(loop, elapsed)
        if not loop.plan.is_rank_zero:
            return
        if elapsed >= self.limit:
            self._request_spent(loop, elapsed, "")
        elif self.mode == "fit" and loop.state.stage is Stage.BETWEEN:
            self._predict_and_request(loop, elapsed)

    def _run_started(self, loop: TrainingLoop, elapsed: float) -> None:
        p = loop.progress
        if p.total_batches == 0 and p.epochs_done == 0:  # a new run (or a restarted one): nothing measured
            self.epochs = []
            self._epoch_start = None
        if self._epoch_start is None:
            self._epoch_start = elapsed

    def on_epoch_end(self, engine: Engine) -> None:
        self.check_epoch_end(self.loop)

    def check_epoch_end(self, loop: TrainingLoop) -> None:
        """At every epoch end (before the epoch end's stop sync): record the epoch's duration; ``"epoch"``
        requests the stop when the budget is spent, ``"fit"`` when the next epoch would not fit."""
        p = loop.progress
        now = loop.clock.elapsed()
        start = self._epoch_start if self._epoch_start is not None else now
        schedule = loop.plan.validation
        val_seconds, val_runs = (0.0, 0) if schedule is None else schedule.epoch_runs(p.epoch, start)
        state = loop.state
        complete = not (state.epoch_ended_early or state.end_after_epoch is not None)
        self.epochs.append(EpochTime(p.epoch, now - start, val_seconds, val_runs, complete))
        self._epoch_start = now
        if self.mode == "step" or not loop.plan.is_rank_zero or state.end_after_epoch is not None:
            return  # ("step" checks per batch; a run that ends at this boundary anyway needs no request)
        lim = loop.plan.run_limits
        if lim.max_epochs.reached(p.epochs_done) or lim.max_steps.reached(p.global_step):
            return  # the run ends here anyway
        if now >= self.limit:
            self._request_spent(loop, now, f" (checked at the end of epoch {p.epoch}, 0-based)")
        elif self.mode == "fit":
            self._predict_and_request(loop, now)

    # ------------------------------------------------------------------ "fit"
    def predict_next_epoch(self, loop: TrainingLoop) -> tuple[float, int] | None:
        """The predicted duration of the next epoch (seconds, validation included) and its validation runs,
        or ``None`` before any complete epoch was measured.

        The training part is the longest of the last three complete epochs' (their duration less their
        validation); each validation run the schedule will make in the next epoch adds the longest of the
        last three validation runs (before any, an estimate from the sanity check's batches)."""
        recent = [e for e in self.epochs if e.complete][-PREDICTION_WINDOW:]
        if not recent:
            return None
        train = max(e.train_seconds for e in recent)
        runs = self._val_runs_next_epoch(loop, recent)
        return train + runs * self._val_run_seconds(loop), runs

    def _val_runs_next_epoch(self, loop: TrainingLoop, recent: list[EpochTime]) -> int:
        schedule = loop.plan.validation
        if schedule is None:
            return 0
        done = loop.progress.epochs_done  # the next epoch's 0-based index
        runs = schedule.count_due(
            Progress(epoch=done, epochs_done=done, total_batches=loop.progress.total_batches), loop.plan.train_batches
        )
        return (
            max(e.val_runs for e in recent) if runs is None else runs
        )  # on a clock, or of unknown length: as measured

    def _val_run_seconds(self, loop: TrainingLoop) -> float:
        schedule = loop.plan.validation
        return 0.0 if schedule is None else schedule.run_seconds(PREDICTION_WINDOW)

    def _predict_and_request(self, loop: TrainingLoop, now: float) -> None:
        predicted = self.predict_next_epoch(loop)
        if predicted is None:
            return
        seconds, runs = predicted
        left = self.limit - now
        if seconds > left:
            with_val = "with validation" if runs else "without validation"
            loop.controller.request(
                StopReason.MAX_TIME,
                f"{self.budget_name}: the next epoch (about {format_seconds(seconds)} {with_val}) "
                f"would not fit in the {format_seconds(left)} left",
                "max_time",
            )

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The measurements (the elapsed time itself is the loop's clock, in the loop's part of the state)."""
        return {"epochs": [e.to_dict() for e in self.epochs], "epoch_start": self._epoch_start}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.epochs = [EpochTime.from_dict(e) for e in state.get("epochs") or []]
        start = state.get("epoch_start")
        self._epoch_start = None if start is None else float(start)

    def report_fields(self) -> dict[str, Any]:
        return {
            "max_time": self.seconds,
            "max_time_reserve": self.reserve_seconds,
            "max_time_mode": self.mode,
            "epoch_times": tuple(self.epochs),
        }
