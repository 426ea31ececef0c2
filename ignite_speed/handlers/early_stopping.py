"""Early stopping with Lightning 2.6 semantics, a few Keras-style extras, and one decision for all ranks.

Three layers, each in its own module:

* :func:`~ignite_speed.config.early_stopping.validate_early_stopping_kwargs` checks and normalizes the
  keyword arguments (the ``early_stopping`` flag of :class:`~ignite_speed.config.SpeedConfig` and this class);
* :func:`~ignite_speed.handlers.early_stopping_rule.decide` is the pure, per-check decision;
* :class:`EarlyStopping` (here) reads the monitor from the engines, calls ``decide``, sends stop requests
  through the trainer's :class:`~ignite_speed.loop.StopController` (one collective per check) and keeps the
  Lightning-style attributes (``wait_count``, ``best_score``, ``stopped_epoch``, ``stopping_reason``...).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from ignite.engine import Engine

from .._logging import logger
from ..config.early_stopping import EARLY_STOPPING_DEFAULTS, validate_early_stopping_kwargs
from ..distributed._dist import get_rank, get_world_size
from ..loop.plan import RunPlan
from ..loop.progress import Progress
from .base import LoopHandler
from .early_stopping_parts import (
    BestWeights,
    EvaluatorRuns,
    MonitorReader,
    agree_on_check,
    check_attach_arguments,
    checks_at_epoch_end,
    checks_at_epoch_end_unscheduled,
    parse_saved_state,
    refuse_unseen_monitor,
)
from .early_stopping_rule import (
    Criteria,
    Decision,
    EarlyStoppingReason,
    decide,
)

__all__ = ["EarlyStopping", "EarlyStoppingReason"]


class EarlyStopping(LoopHandler):
    """Stop training when a monitored metric stops improving (Lightning 2.6 semantics, plus extras).

    Args:
        monitor: metric name, read from ``evaluator.state.metrics`` (else ``trainer.state.metrics``).
        min_delta: smallest change that counts as an improvement (>= 0; the direction follows ``mode``).
        patience: how many checks (``patience_unit``) without improvement before stopping.
        verbose: log each check's outcome (and warn about a missing metric when ``strict=False``).
        mode: ``"min"`` (lower is better) or ``"max"``.
        strict: a missing monitor raises ``RuntimeError`` (``False``: the check is skipped).
        check_finite: stop when the monitor is NaN or infinite.
        stopping_threshold: stop as soon as the monitor is strictly better than this.
        divergence_threshold: stop as soon as the monitor is strictly worse than this.
        check_on_train_epoch_end: check at the end of the training epoch (``True``), after each validation
            run (``False``), or ``None``: Lightning's rule (:meth:`setup`).
        log_rank_zero_only: only rank 0 logs.
        baseline: stop when the monitor has not beaten this value within ``patience``.
        restore_best_weights: keep a CPU copy of the weights of the best check and load it back when
            training ends for any reason (needs the model).
        start_from_epoch: warm-up: in epochs ``< start_from_epoch`` (0-based) the best value is tracked
            but no stop is ever requested.
        patience_unit: ``"checks"`` (Lightning), ``"epochs"`` or ``"steps"`` (optimizer steps).
        min_delta_mode: ``"abs"`` or ``"rel"`` (``min_delta`` is a fraction of ``|best|``).
    """

    name = "early_stopping"
    order = 50  # after the other stop sources and the validation schedule: it judges the schedule's runs

    def __init__(self, monitor: str, min_delta: float = 0.0, patience: int = 3, verbose: bool = False,
                 mode: str = "min", strict: bool = True, check_finite: bool = True,
                 stopping_threshold: float | None = None, divergence_threshold: float | None = None,
                 check_on_train_epoch_end: bool | None = None, log_rank_zero_only: bool = False,
                 baseline: float | None = None, restore_best_weights: bool = False, start_from_epoch: int = 0,
                 patience_unit: str = "checks", min_delta_mode: str = "abs") -> None:
        super().__init__()
        given = {k: v for k, v in locals().items() if k in EARLY_STOPPING_DEFAULTS}
        opts = {**EARLY_STOPPING_DEFAULTS, **validate_early_stopping_kwargs(given, flag="EarlyStopping")}
        self.monitor: str = opts["monitor"]
        self.min_delta: float = opts["min_delta"]
        self.patience: int = opts["patience"]
        self.verbose: bool = opts["verbose"]
        self.mode: str = opts["mode"]
        self.strict: bool = opts["strict"]
        self.check_finite: bool = opts["check_finite"]
        self.stopping_threshold: float | None = opts["stopping_threshold"]
        self.divergence_threshold: float | None = opts["divergence_threshold"]
        self.check_on_train_epoch_end: bool | None = opts["check_on_train_epoch_end"]
        self.log_rank_zero_only: bool = opts["log_rank_zero_only"]
        self.baseline: float | None = opts["baseline"]
        self.restore_best_weights: bool = opts["restore_best_weights"]
        self.start_from_epoch: int = opts["start_from_epoch"]
        self.patience_unit: str = opts["patience_unit"]
        self.min_delta_mode: str = opts["min_delta_mode"]
        self.reset()
        self.checks = 0  # checks evaluated (skipped ones excluded), over all runs
        self._on_epoch_end: bool = bool(self.check_on_train_epoch_end)
        self._evaluator = EvaluatorRuns(self._on_evaluator_completed)  # judged when no schedule governs
        self._scheduled = False  # a ValidationSchedule governs this run: judge its validation runs only
        self._saved_monitor: float | None = None  # the monitor saved with a loaded checkpoint

    # ------------------------------------------------------------------ description
    @property
    def criteria(self) -> Criteria:
        return Criteria(self.monitor, self.mode, self.min_delta, self.min_delta_mode, self.patience,
                        self.patience_unit, self.check_finite, self.stopping_threshold,
                        self.divergence_threshold, self.baseline)

    @property
    def state_key(self) -> str:
        """Key under which a checkpoint stores this callback (as Lightning: monitor and mode)."""
        return f"EarlyStopping{{'monitor': {self.monitor!r}, 'mode': {self.mode!r}}}"

    @property
    def checks_at_epoch_end(self) -> bool:
        """Where checks happen (resolved by :meth:`setup` or at the start of a run)."""
        return self._on_epoch_end

    def __repr__(self) -> str:
        return (f"EarlyStopping(monitor={self.monitor!r}, mode={self.mode!r}, patience={self.patience}, "
                f"patience_unit={self.patience_unit!r}, min_delta={self.min_delta})")

    # ------------------------------------------------------------------ attaching
    def attach(self, trainer: Engine, evaluator: Engine | None = None,  # type: ignore[override]
               model: torch.nn.Module | None = None, min_epochs: int = 0, min_steps: int = 0) -> EarlyStopping:
        """Attach early stopping to ``trainer``'s loop (``model``: for ``restore_best_weights``).

        With a :class:`~ignite_speed.handlers.ValidationSchedule` (attached before or after), checks follow its
        runs with Lightning's rule for ``check_on_train_epoch_end=None``; without one, they follow ``evaluator``'s
        runs during training (or the trainer's epoch ends: ``True``, or ``None`` without an evaluator). A stop is
        synced across ranks and waits for ``min_epochs`` / ``min_steps``; the loop then ends the run on every
        rank (after the batch, or at the end of the epoch, of the check)."""
        check_attach_arguments(evaluator, min_epochs, min_steps,
                               needs_model=self.restore_best_weights and model is None and self._best.model is None)
        self._attach_to(trainer, min_epochs, min_steps)
        if model is not None:
            self._best.model = model
        self._evaluator.watch(evaluator)
        return self

    def detach(self) -> None:
        """Stop judging the evaluator's runs (the loop is taken off, or this handler is replaced)."""
        self._evaluator.watch(None)

    def _on_evaluator_completed(self, evaluator: Engine) -> None:
        loop = self._loop
        if loop is None or self._scheduled or not loop.clock.running:
            return  # the schedule's runs are judged instead; or a run outside training (a final test)
        self.on_validation_end(getattr(evaluator.state, "metrics", None) or {})

    def setup(self, *, val_check_interval: Any, check_val_every_n_epoch: int | None, validation_enabled: bool,
              trainer: Engine, budgeted: bool = False) -> None:
        """Resolve where checks happen for a schedule and refuse one that can never see the monitor.

        ``check_on_train_epoch_end=None`` follows
        :func:`~ignite_speed.handlers.early_stopping_parts.checks_at_epoch_end` (``budgeted``: under
        ``val_time_fraction``). When validation is disabled, the monitor must be a metric of the trainer.
        """
        self._on_epoch_end = checks_at_epoch_end(self.check_on_train_epoch_end, val_check_interval,
                                                 check_val_every_n_epoch, budgeted=budgeted)
        refuse_unseen_monitor(self.monitor, validation_enabled, trainer)

    # ------------------------------------------------------------------ hooks
    def on_run_start(self, plan: RunPlan) -> None:
        """With a :class:`~ignite_speed.handlers.ValidationSchedule`, judge its runs on Lightning's rule
        (:meth:`setup`); without one, judge the attached evaluator's runs."""
        schedule: Any = plan.validation
        self._scheduled = schedule is not None
        if schedule is not None:
            self.setup(val_check_interval=schedule.val_check_interval, check_val_every_n_epoch=schedule.check_val_every_n_epoch,
                       validation_enabled=schedule.enabled, trainer=self.loop.trainer,
                       budgeted=getattr(schedule, "budget", None) is not None)
        else:
            self._on_epoch_end = checks_at_epoch_end_unscheduled(self.check_on_train_epoch_end,
                                                                 has_evaluator=self._evaluator.engine is not None)
        self._monitor.reset()
        self._restored = False

    def on_validation_end(self, metrics: Mapping[str, Any]) -> None:
        """After each validation run during training (never the sanity check), with that run's ``metrics``."""
        self._monitor.record(metrics)
        if not self._on_epoch_end:
            self._check()

    def on_epoch_end(self, engine: Engine) -> None:
        if self._on_epoch_end:
            self._check()

    def on_resume(self, replaying: bool) -> None:
        # the restored evaluator metrics are real validation runs', not a sanity check's; a replayed
        # decision reads the monitor saved with the checkpoint (metrics are in no checkpoint)
        self._monitor.val_runs = self.loop.progress.val_runs
        if replaying and self._saved_monitor is not None:
            self._monitor.replay(self._saved_monitor)

    def on_train_start(self) -> None:
        self._monitor.end_replay()  # (after a resumed run's pending decision: metrics are live again)
        self._saved_monitor = None

    def on_train_end(self, engine: Engine) -> None:
        """Training ended (for any reason): load the best weights back when asked to."""
        if self.restore_best_weights and not self._restored:
            self._best.restore(f"{self.monitor}={self.best_score:.6g}", self._log)
        self._restored = True

    def on_new_run(self) -> None:
        self.reset()

    def report_fields(self) -> dict[str, Any]:
        return {"early_stopping": {"monitor": self.monitor, "mode": self.mode, "best_score": self.best_score,
                                   "stopping_threshold": self.stopping_threshold,
                                   "divergence_threshold": self.divergence_threshold}}

    def reset(self) -> None:
        """Forget everything learnt (best score, patience, reason, best weights): for a fresh run."""
        self.rearm()
        self.best_score = math.inf if self.mode == "min" else -math.inf
        self.checks = 0
        model = getattr(getattr(self, "_best", None), "model", None)
        self._best = BestWeights()
        self._best.model = model
        self._monitor = MonitorReader(self.monitor)
        self._restored = False

    def rearm(self) -> None:
        """Let a continued run (``Speedups.extend`` after an early stop) stop again: a fresh patience and
        reason; the best score and best weights are kept."""
        self.wait_count = 0
        self.stopped_epoch = 0
        self._since = 0  # position (in patience units) of the check that last reset the patience
        self.stopping_reason = EarlyStoppingReason.NOT_STOPPED
        self.stopping_reason_message: str | None = None

    # ------------------------------------------------------------------ the check
    def _check(self) -> None:
        loop = self.loop
        trainer, progress = loop.trainer, loop.progress
        decision: Decision | None = None
        value = self._monitor.read(trainer)
        if value is None and not self.strict and self.verbose:
            warnings.warn(f"EarlyStopping: the monitor {self.monitor!r} is missing; check skipped (available: "
                          f"{self._monitor.available(trainer)})", RuntimeWarning, stacklevel=2)
        if value is not None:
            decision = self._decide(value, progress)
            self._log(decision.message)
        agreed = agree_on_check(loop.controller, decision, missing=value is None and self.strict,
                                monitor=self.monitor, available=lambda: self._monitor.available(trainer))
        if agreed.keep_best_weights and self.restore_best_weights:
            self._best.keep()
        if agreed.stop_reason is not None:
            self.stopped_epoch, self.stopping_reason = progress.epoch, agreed.stop_reason
            self.stopping_reason_message = agreed.message

    def _decide(self, value: float, progress: Progress) -> Decision:
        self.checks += 1
        position = {"checks": self.checks, "epochs": progress.epoch + 1,
                    "steps": progress.global_step}[self.patience_unit]
        decision = decide(value, best=self.best_score, wait=self.wait_count, since=self._since, position=position,
                          criteria=self.criteria, warmup=progress.epoch < self.start_from_epoch)
        self.best_score, self.wait_count, self._since = decision.best_score, decision.wait_count, decision.since
        return decision

    def _log(self, message: str) -> None:
        if not self.verbose:
            return
        if self.log_rank_zero_only and get_world_size() > 1 and get_rank() != 0:
            return
        logger.info("EarlyStopping: %s", message)  # the package logger adds "[rank: N]" when distributed

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Plain data (loadable with ``torch.load(weights_only=True)``): Lightning's keys and ours; the best
        weights (CPU tensors) when ``restore_best_weights`` recorded some; and the monitor a check would read
        now, for a resumed run that replays a pending decision."""
        state: dict[str, Any] = dict(
            wait_count=self.wait_count, stopped_epoch=self.stopped_epoch, best_score=float(self.best_score),
            patience=self.patience, stopping_reason=self.stopping_reason.value, checks=self.checks, since=self._since,
            stopping_reason_message=self.stopping_reason_message, monitor=self.monitor, mode=self.mode,
            monitor_value=self._monitor.read_or_none(self._loop.trainer) if self._loop is not None else None)
        if self.restore_best_weights and self._best.weights is not None:
            state["best_weights"] = dict(self._best.weights)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output (also a Lightning ``EarlyStopping`` state; as in Lightning,
        the saved ``patience`` replaces the constructor's)."""
        (self.wait_count, self.stopped_epoch, self.best_score, self.patience, self.stopping_reason,
         self.stopping_reason_message, self.checks, self._since) = parse_saved_state(state, self.monitor)
        self._best.load(state.get("best_weights"))
        saved = state.get("monitor_value")
        self._saved_monitor = None if saved is None else float(saved)
