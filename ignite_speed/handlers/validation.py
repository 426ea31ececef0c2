"""Validation scheduling (``val_check_interval``, ``check_val_every_n_epoch``) and the sanity check.

:class:`ValidationSchedule` is the handler that runs the evaluator on that schedule during training.

:class:`ValSchedule` is a small pure decision object: given the loop counters after a training batch,
should validation run now? It follows Lightning 2.x's per-batch rules (see docs/validation.rst).
:func:`run_evaluator` and :func:`run_sanity_check` run an Ignite evaluator on a limited number of
batches. ``val_time_fraction``'s budget, which skips some of the schedule's points, is in
:mod:`~ignite_speed.handlers.validation_budget`.
"""

from __future__ import annotations

import contextlib
import datetime
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ignite.engine import Engine, Events

from .._callers import caller_outside_the_frameworks, warn_at_users_line
from .._compat import prepare_engine_rerun, process_function, set_process_function
from ..config.durations import BatchLimit
from ..config.slices import ValidationFlags
from ..data.batched_fetch import with_batched_fetch
from ..data.loaders import data_length, for_ignite, sequential_copy
from ..loop.plan import RunPlan
from ..loop.progress import Progress
from ..report.record import ValidationRecord, numeric_metrics
from .base import LoopHandler
from .validation_budget import ValidationBudget

if TYPE_CHECKING:
    from ..loop.training_loop import TrainingLoop

__all__ = [
    "ValSchedule",
    "ValidationSchedule",
    "modes_kept",
    "resolve_val_schedule",
    "run_evaluator",
    "run_sanity_check",
]

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

    def after_batch(
        self, p: Progress, is_last: bool, exhausted: bool, stopping: bool, seconds_since_val: float
    ) -> bool:
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

    def next_due(self, p: Progress, train_batches: int | None) -> float:
        """The epoch batch index (``batch_in_epoch``) of the next batch after ``p``'s at which
        :meth:`after_batch` can be true without a stop or a clock (``inf``: none in this epoch). The loop asks
        ``after_batch`` only from there on: the per-batch cost of a schedule is one comparison."""
        if not self.enabled or not self.is_val_epoch(p.epoch) or self.interval_seconds is not None:
            return INF
        n = p.batch_in_epoch
        if self.train_limit_count is not None and self.check_batch == INF:
            k = self.train_limit_count
            return (n // k + 1) * k
        if self.check_batch is not None and self.check_batch != INF:
            k = int(self.check_batch)
            if self.every_n_epochs is None:  # counted across epochs
                return n + (k - p.total_batches % k)
            return (n // k + 1) * k
        return train_batches if train_batches is not None and train_batches > n else INF

    def count_due(self, start: Progress, batches: int | None, epoch_batches: int | None = None) -> int | None:
        """The validation runs this schedule makes in the ``batches`` training batches after ``start`` in
        ``start``'s epoch (of ``epoch_batches`` batches; default: it ends with them), without stops; ``None`` when
        that cannot be counted (a schedule on a clock, or ``batches`` unknown). The one simulation of the schedule:
        the time budget's next-epoch prediction and a ``fast_dev_run``'s projection both count with it."""
        if not self.enabled or not self.is_val_epoch(start.epoch):
            return 0
        if self.interval_seconds is not None or batches is None:
            return None
        end = start.batch_in_epoch + batches
        epoch_batches = end if epoch_batches is None else epoch_batches
        p = Progress(
            epoch=start.epoch,
            epochs_done=start.epochs_done,
            batch_in_epoch=start.batch_in_epoch,
            total_batches=start.total_batches,
        )
        runs = 0
        while True:  # from one possible point to the next (next_due), as the loop asks
            due = self.next_due(p, epoch_batches)
            if due > end:
                return runs
            p.total_batches += int(due) - p.batch_in_epoch
            p.batch_in_epoch = int(due)
            runs += self.after_batch(p, p.batch_in_epoch == epoch_batches, False, False, 0.0)


def resolve_val_schedule(
    interval: BatchLimit | datetime.timedelta,
    every_n_epochs: int | None,
    *,
    train_batches: int | None,
    train_limit: BatchLimit,
    enabled: bool,
) -> ValSchedule:
    """Turn ``val_check_interval`` into a batch cadence for an epoch of ``train_batches`` batches
    (``None``: unknown length). Raises ``ValueError`` for an int interval longer than the epoch."""
    limit_count = int(train_limit.value) if train_limit.kind == "count" else None
    if isinstance(interval, datetime.timedelta):
        return ValSchedule(enabled, every_n_epochs, None, interval.total_seconds(), limit_count)
    if interval.kind == "count":
        if train_batches is not None and interval.value > train_batches and every_n_epochs is not None and enabled:
            raise ValueError(
                f"val_check_interval={interval.value} is more than the {train_batches} training batches of an epoch; "
                f"use val_check_interval <= {train_batches}, a fraction such as 0.5, or set "
                f"check_val_every_n_epoch=None to count batches across epochs"
            )
        return ValSchedule(enabled, every_n_epochs, float(interval.value), None, limit_count)
    if train_batches is None:
        if interval.value != 1.0:
            raise ValueError(
                f"val_check_interval={interval.value!r} is a fraction of an epoch, but the training loader has no length; "
                f"accepted here: 1.0 (validate when the loader is exhausted), an int number of batches, or a duration"
            )
        return ValSchedule(enabled, every_n_epochs, INF, None, limit_count)
    return ValSchedule(enabled, every_n_epochs, float(max(1, int(train_batches * interval.value))), None, limit_count)


def run_evaluator(evaluator: Engine, data: Any, n_batches: int | None) -> None:
    """One evaluator run over the first ``n_batches`` batches of a fresh iterator of ``data``."""
    prepare_engine_rerun(evaluator)
    evaluator.run(for_ignite(data), max_epochs=1, epoch_length=n_batches)


@contextlib.contextmanager
def modes_kept(model: Any) -> Any:
    """Give every module of ``model`` back the train/eval mode it had (Lightning's rule after a validation
    run): an evaluator's step calls ``model.eval()``, and a training step that sets ``model.train()`` only at
    ``EPOCH_STARTED`` would train the rest of the epoch in eval mode (dropout off, BatchNorm frozen)."""
    modes = None if model is None else [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        for module, training in modes or ():
            module.training = training


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
        return process_function(evaluator)(engine, batch)

    shadow = Engine(step)
    shadow.logger.disabled = True
    with _isolated_rng():
        shadow.run(for_ignite(data), max_epochs=1, epoch_length=n_batches)
    return counted[0]


class ValidationSchedule(LoopHandler):
    """Run ``evaluator`` on ``val_data`` on Lightning's validation schedule while the trainer trains.

    Args:
        evaluator: the validation :class:`~ignite.engine.Engine` (keep its metrics and handlers).
        val_data: the validation data (a ``DataLoader`` or any iterable).
        val_check_interval: validate every fraction of an epoch (float), every n training batches (int), or
            on a clock (a duration such as ``"00:00:10:00"``); ``None``: once per epoch.
        check_val_every_n_epoch: validate in every n-th epoch; ``None`` counts an int ``val_check_interval``
            across epochs.
        num_sanity_val_steps: validation batches run through the evaluator's step before training (none of
            its handlers, metrics discarded); ``-1``: all, ``0``: off.
        limit_val_batches: batches per validation run and sanity check: a fraction or an int; ``0`` turns
            validation off.
        val_time_fraction: the most of the training clock that validation may take, in (0, 1): a candidate
            of the schedule validates only when the budget allows it (see docs/validation.rst); ``None``: no budget.
        overfit_batches: Lightning's flag (``0``: off): validate on that many batches of a sequential copy of
            ``val_data`` (wins over ``limit_val_batches``), as ``TrainBatchLimit(overfit_batches=...)`` trains.
        fast_dev_run: ``n`` (``True``: 1): validate ``n`` batches once per epoch, no sanity check, no budget; every
            other run of the evaluator during and after training takes at most ``n`` batches too.

    After each run the evaluator's metrics are kept (:attr:`last_metrics`): early stopping judges those,
    whatever other handlers later run the evaluator on. Each run (and the sanity check) gives the trained
    model back the train/eval mode of each of its modules: set :attr:`model` (``attach_speedups`` sets its
    ``model=``), or let ``create_trainer`` tell it; without either the modes are the evaluator's step's.
    """

    name = "validation"
    order = 40  # after the limits; before early stopping, which judges its runs

    def __init__(
        self,
        evaluator: Engine,
        val_data: Any,
        val_check_interval: Any = None,
        check_val_every_n_epoch: int | None = 1,
        num_sanity_val_steps: int = 2,
        limit_val_batches: Any = None,
        val_time_fraction: float | None = None,
        overfit_batches: Any = 0.0,
        fast_dev_run: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(evaluator, Engine):
            raise TypeError(
                f"ValidationSchedule(evaluator={type(evaluator).__name__}) is not an ignite Engine; "
                f"accepted: the Engine that runs validation"
            )
        if val_data is None:
            raise ValueError(
                "ValidationSchedule(val_data=None): accepted: the validation data (a DataLoader or an "
                "iterable); to turn validation off, set limit_val_batches=0"
            )
        self.flags = ValidationFlags.parse(
            val_check_interval,
            check_val_every_n_epoch,
            num_sanity_val_steps,
            limit_val_batches,
            val_time_fraction,
            overfit_batches,
            fast_dev_run,
        )
        flags = self.flags.resolved()  # fast_dev_run and overfit_batches applied
        self.evaluator, self.val_data = evaluator, val_data
        self.val_check_interval, self.check_val_every_n_epoch = flags.val_check_interval, flags.check_val_every_n_epoch
        self.num_sanity_val_steps, self.limit_val_batches = flags.num_sanity_val_steps, flags.limit_val_batches
        self.overfit = flags.overfit  # overfit_batches: validate on a sequential copy of the data
        self.val_time_fraction = fraction = flags.val_time_fraction
        self.budget = None if fraction is None else ValidationBudget(fraction)  # (validation_budget.py)
        if self.budget is None:
            self.skip_hooks = frozenset({"on_agreement"})
        self.fast_dev_run = flags.fast_dev_run  # n: every run of the evaluator, whoever starts it, takes n batches
        self.model: Any = None  # the trained model, whose modes each run gives back (see trained_model)
        self._own_run = False  # the evaluator runs for this schedule now
        self._warned_other_run: set[bool] = set()  # (named once each: a run on the validation data, on other data)
        self.plan: ValSchedule | None = None  # resolved for the current run
        self.time_based = False
        self.last_val_end = 0.0  # training-clock time at which the last validation run ended
        self.last_metrics: dict[str, Any] | None = None
        self._loader: Any = None
        self.batches: int | None = 0  # per validation run in the current run (None: all of an unsized loader)
        # [run record] every validation run of the run, the sanity check's duration (see ignite_speed.report)
        self.runs: list[ValidationRecord] = []
        self.sanity_seconds = 0.0
        self.sanity_batches = 0
        # the seconds of each call of the evaluator's step in this run's validation runs, timed in a fast_dev_run
        # (None: not timed): its projection tells what the runs took besides their steps, which recurs per run
        self.step_seconds: list[float] | None = None

    @classmethod
    def of(cls, loop: TrainingLoop) -> ValidationSchedule | None:
        """The schedule attached to ``loop``, if any."""
        return next((h for h in loop.handlers if isinstance(h, cls)), None)

    def __repr__(self) -> str:
        budget = "" if self.budget is None else f", val_time_fraction={self.budget.fraction}"
        return (
            f"ValidationSchedule(val_check_interval={self.val_check_interval!r}, check_val_every_n_epoch="
            f"{self.check_val_every_n_epoch}, limit_val_batches={self.limit_val_batches!r}{budget})"
        )

    @property
    def configured(self) -> bool:
        """Whether validation can run at all (data given, not limited to 0 batches, not empty)."""
        return self.val_data is not None and not self.limit_val_batches.is_zero and data_length(self.val_data) != 0

    @property
    def enabled(self) -> bool:
        return self.plan.enabled if self.plan is not None else self.configured

    def _attached(self, loop: Any) -> None:
        # refuse what can already be known to be wrong
        if self.val_data is not None and not self.limit_val_batches.is_zero:
            self.limit_val_batches.resolve(data_length(self.val_data), "limit_val_batches")
        if not self.evaluator.has_event_handler(self._on_evaluator_started, Events.STARTED):
            self.evaluator.add_event_handler(Events.STARTED, self._on_evaluator_started)

    def detach(self) -> None:
        """Stop watching the evaluator's runs (the loop is being taken off the trainer)."""
        if self.evaluator.has_event_handler(self._on_evaluator_started, Events.STARTED):
            self.evaluator.remove_event_handler(self._on_evaluator_started, Events.STARTED)

    def _on_evaluator_started(self, evaluator: Engine) -> None:
        """Runs of the evaluator that the schedule did not start: limited under ``fast_dev_run``, and
        named once when they happen during training (an app's own validation handler validates twice)."""
        if self._own_run:
            return
        if self.fast_dev_run:
            length = evaluator.state.epoch_length
            evaluator.state.epoch_length = self.fast_dev_run if length is None else min(length, self.fast_dev_run)
        loop = self._loop
        if loop is None or not loop.clock.running:
            return
        on_val_data = _same_data(evaluator.state.dataloader, self.val_data)
        if on_val_data in self._warned_other_run:
            return
        self._warned_other_run.add(on_val_data)
        _warn_other_run(on_val_data, self.val_check_interval, self.check_val_every_n_epoch)

    def plan_run(self, plan: RunPlan) -> None:
        plan.validation = self

    def on_run_start(self, plan: RunPlan) -> None:
        self.prepare_run(plan.train_batches, plan.train_limit)
        self.step_seconds = [] if plan.fast_dev_run else None

    def on_new_run(self) -> None:
        self.reset()

    def on_agreement(self, engine: Engine) -> None:
        """(``val_time_fraction`` only) an agreement batch: a mark for the budget's training time per batch."""
        assert self.budget is not None
        self.budget.mark_batch(self.loop.clock.elapsed(), self.loop.progress.total_batches)

    def prepare_run(self, train_batches: int | None, train_limit: BatchLimit) -> None:
        """Resolve the schedule for a run of ``train_batches`` batches per epoch (``None``: unknown)."""
        enabled = self.val_data is not None and not self.limit_val_batches.is_zero
        self._loader, self.batches = None, 0
        if enabled:
            self._loader = sequential_copy(self.val_data, "val") if self.overfit else self.val_data
            if self.loop.batched_fetch:
                self._loader = with_batched_fetch(self._loader)
            self.batches = self.limit_val_batches.resolve(data_length(self._loader), "limit_val_batches")
            enabled = self.batches != 0
        self.plan = resolve_val_schedule(
            self.val_check_interval,
            self.check_val_every_n_epoch,
            train_batches=train_batches,
            train_limit=train_limit,
            enabled=enabled,
        )
        self.time_based = self.plan.interval_seconds is not None and self.plan.enabled

    def sanity_check(self) -> None:
        """The sanity check of a new run (before any training event)."""
        plan, steps = self.plan, self.num_sanity_val_steps
        if plan is None or not plan.enabled or steps == 0:
            return
        n = self.batches if steps == -1 else (steps if self.batches is None else min(steps, self.batches))
        now = self.loop.clock.time_source  # [run record] timed on the training clock's time source
        started = now()
        with modes_kept(self.trained_model()):
            self.sanity_batches = run_sanity_check(self.evaluator, self._loader, n)
        self.sanity_seconds = now() - started

    def trained_model(self) -> Any:
        """The model whose train/eval modes a validation run gives back: :attr:`model` (``attach_speedups(...,
        model=)``), else ``create_trainer``'s; ``None``: not known (the app's step sets the mode itself)."""
        return self.model if self.model is not None else self.loop.parts.model

    def time_due(self, elapsed: float) -> bool:
        assert self.plan is not None and self.plan.interval_seconds is not None
        return elapsed - self.last_val_end >= self.plan.interval_seconds

    def due_after_batch(self, progress: Progress, is_last: bool, stopping: bool, time_due: bool) -> bool:
        assert self.plan is not None
        due = self.plan.after_batch(progress, is_last, False, stopping, INF if time_due else 0.0)
        return due and (self.budget is None or self.budget.allows(progress.total_batches))

    def next_due(self, progress: Progress, train_batches: int | None) -> float:
        """See :meth:`ValSchedule.next_due`."""
        assert self.plan is not None
        return self.plan.next_due(progress, train_batches)

    def count_due(self, start: Progress, batches: int | None, epoch_batches: int | None = None) -> int | None:
        """See :meth:`ValSchedule.count_due` (the schedule of the current run; 0 before one is resolved)."""
        return 0 if self.plan is None else self.plan.count_due(start, batches, epoch_batches)

    def run_seconds(self, window: int) -> float:
        """A validation run's predicted duration: the longest of the last ``window`` runs, or before any, the
        sanity check's time per batch times the batches of a run (0.0: nothing measured)."""
        recent = self.runs[-window:]
        if recent:
            return max(r.seconds for r in recent)
        if self.sanity_batches and self.batches:
            return self.sanity_seconds / self.sanity_batches * self.batches
        return 0.0

    def epoch_runs(self, epoch: int, since: float) -> tuple[float, int]:
        """The seconds and the number of the validation runs of ``epoch`` that ended at or after ``since`` (clock)."""
        seconds, runs = 0.0, 0
        for record in reversed(self.runs):
            if record.epoch != epoch or record.time < since:
                break
            seconds += record.seconds
            runs += 1
        return seconds, runs

    def due_at_exhaustion(self, progress: Progress) -> bool:
        """Validate when a loader of unknown length is exhausted (``val_check_interval=1.0``)?"""
        plan = self.plan
        due = plan is not None and plan.enabled and plan.check_batch == INF and plan.is_val_epoch(progress.epoch)
        return due and (self.budget is None or self.budget.allows(progress.total_batches))

    def validate(self) -> None:
        """One validation run now; its metrics are kept in :attr:`last_metrics`."""
        started = self.loop.clock.elapsed()  # [run record]
        self._own_run = True
        try:
            with modes_kept(self.trained_model()), self._steps_timed():
                run_evaluator(self.evaluator, self._loader, self.batches)
        finally:
            self._own_run = False
        self.last_metrics = dict(getattr(self.evaluator.state, "metrics", None) or {})
        self.last_val_end = self.loop.clock.elapsed()
        p = self.loop.progress  # [run record]
        self.runs.append(
            ValidationRecord(
                p.epoch,
                p.global_step,
                p.total_batches,
                self.last_val_end,
                self.last_val_end - started,
                numeric_metrics(self.last_metrics),
            )
        )
        if self.budget is not None:
            next_at = self.budget.record(self.last_val_end - started, self.last_val_end, p.total_batches)
            plan = self.loop.plan
            if plan.world_size > 1:  # the rank that waits longest decides: one small collective per validation run
                from ..distributed._dist import all_reduce_flags

                next_at = all_reduce_flags([next_at], self.loop.rank_failure_timeout)[0]
            self.budget.next_at = next_at

    @contextlib.contextmanager
    def _steps_timed(self) -> Any:
        """While a validation run runs: with :attr:`step_seconds`, time each call of the evaluator's step."""
        if self.step_seconds is None:
            yield
            return
        evaluator, seconds, now = self.evaluator, self.step_seconds, self.loop.timer.time_source
        step = process_function(evaluator)

        def timed(engine: Engine, batch: Any) -> Any:
            started = now()
            try:
                return step(engine, batch)
            finally:
                seconds.append(now() - started)

        set_process_function(evaluator, timed)
        try:
            yield
        finally:
            set_process_function(evaluator, step)

    def reset(self) -> None:
        """A new run: no validation yet."""
        self.last_val_end = 0.0
        self.last_metrics = None
        self.runs, self.sanity_seconds, self.sanity_batches = [], 0.0, 0
        if self.budget is not None:
            self.budget.reset()

    # ------------------------------------------------------------------ state and record
    def state_dict(self) -> dict[str, Any]:
        """When the last validation ended (a time-based schedule counts from there) and the run record."""
        state = {
            "last_val_end": float(self.last_val_end),
            "runs": [r.to_dict() for r in self.runs],
            "sanity_seconds": self.sanity_seconds,
            "sanity_batches": self.sanity_batches,
        }
        if self.budget is not None:
            state["budget"] = self.budget.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.last_val_end = float(state.get("last_val_end", 0.0))
        self.runs = [ValidationRecord.from_dict(r) for r in state.get("runs") or []]
        self.sanity_seconds = float(state.get("sanity_seconds", 0.0))
        self.sanity_batches = int(state.get("sanity_batches", 0))
        if self.budget is not None:
            self.budget.load_state_dict(state.get("budget") or {})

    def report_fields(self) -> dict[str, Any]:
        fields = {"validation_runs": list(self.runs), "sanity_seconds": self.sanity_seconds}
        if self.budget is not None:
            fields.update(val_time_fraction=self.budget.fraction, val_skipped=self.budget.skipped)
        return fields


def _same_data(data: Any, val_data: Any) -> bool:
    """Whether an evaluator's run is on the schedule's validation data (that loader, or one of its dataset)."""
    if data is val_data:
        return True
    dataset = getattr(data, "dataset", None)
    return dataset is not None and dataset is getattr(val_data, "dataset", None)


def _warn_other_run(on_val_data: bool, interval: Any, every_n_epochs: int | None) -> None:
    """Name the app's handler that ran the schedule's evaluator during training, with what to do about it: the
    run on the validation data is the one to remove (Ignite's examples run the same evaluator on the training
    data first: naming that one would send the user to the wrong handler)."""
    where = caller_outside_the_frameworks()
    who = where[0] if where else "a handler"
    if on_val_data:
        text = (
            f"the evaluator of ignite-speed's validation schedule was also run during training, on its "
            f"val_data, by {who}: remove it (the schedule validates: val_check_interval={_describe(interval)}, "
            f"check_val_every_n_epoch={every_n_epochs}), or the app validates twice"
        )
    else:
        text = (
            f"the evaluator of ignite-speed's validation schedule was also run during training, on data other "
            f"than val_data, by {who}: if it evaluates other data (training metrics), give that run an Engine of "
            f"its own (a second create_supervised_evaluator), so that its runs and metrics stay apart from "
            f"validation's (evaluator.state.metrics hold the last run's: read after trainer.run, they can be that "
            f"data's, not validation's); if it validates, remove it (the schedule validates: val_check_interval="
            f"{_describe(interval)}, check_val_every_n_epoch={every_n_epochs})"
        )
    warn_at_users_line(text, UserWarning, where)


def _describe(value: Any) -> str:
    if isinstance(value, BatchLimit):
        return "None (1.0)" if value.is_all else repr(value.value)
    return str(value)
