"""Early stopping with Lightning 2.6 semantics, a few Keras-style extras, and one decision for all ranks.

Three layers, each in its own module:

* :func:`~ignite_speed.config.early_stopping.validate_early_stopping_kwargs` checks and normalizes the
  keyword arguments (the ``early_stopping`` flag of :class:`~ignite_speed.config.SpeedConfig` and this class);
* :func:`~ignite_speed.handlers.early_stopping_rule.decide` is the pure, per-check decision;
* :class:`EarlyStopping` (here) reads the monitor from the engines, calls ``decide``, sends stop requests
  through the :class:`~ignite_speed.loop.stop.StopController` (one collective per check) and keeps the
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
from ..config.durations import format_value
from ..config.early_stopping import EARLY_STOPPING_DEFAULTS, validate_early_stopping_kwargs
from ..distributed._dist import gather_message, get_rank, get_world_size
from ..loop.progress import Progress
from ..loop.stop import StopController, StopReason
from .early_stopping_rule import (
    STOP_REASONS,
    Criteria,
    Decision,
    EarlyStoppingReason,
    decide,
    resolve_check_on_train_epoch_end,
    to_float,
)

__all__ = ["EarlyStopping", "EarlyStoppingReason"]



def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside DDP / DataParallel wrappers (their state dict keys carry a ``module.`` prefix)."""
    wrappers = (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
    while isinstance(model, wrappers):
        model = model.module
    return model


def _is_trainer_metric(trainer: Any, name: str) -> bool:
    """``name`` is a metric computed on the trainer (attached Ignite ``Metric`` or already in its state)."""
    state = getattr(trainer, "state", None)
    if state is not None and name in (getattr(state, "metrics", None) or {}):
        return True
    try:
        from ignite.metrics import Metric

        handlers = getattr(trainer, "_event_handlers", {})
        for entries in handlers.values():
            for entry in entries:
                func, args = entry[0], entry[1]
                owner = getattr(func, "__self__", None)
                if isinstance(owner, Metric) and getattr(func, "__name__", "") == "completed" and name in args:
                    return True
    except Exception:  # pragma: no cover - private layout changed: be permissive
        return True
    return False


# ---------------------------------------------------------------------------------------------- the class


class EarlyStopping:
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
            run (``False``), or ``None``: Lightning's rule, resolved in :meth:`setup`.
        log_rank_zero_only: only rank 0 logs.
        baseline: stop when the monitor has not beaten this value within ``patience``.
        restore_best_weights: keep a CPU copy of the weights of the best check and load it back when
            training ends for any reason (needs the model).
        start_from_epoch: warm-up: in epochs ``< start_from_epoch`` (0-based) the best value is tracked
            but no stop is ever requested.
        patience_unit: ``"checks"`` (Lightning), ``"epochs"`` or ``"steps"`` (optimizer steps).
        min_delta_mode: ``"abs"`` or ``"rel"`` (``min_delta`` is a fraction of ``|best|``).
    """

    def __init__(
        self,
        monitor: str,
        min_delta: float = 0.0,
        patience: int = 3,
        verbose: bool = False,
        mode: str = "min",
        strict: bool = True,
        check_finite: bool = True,
        stopping_threshold: float | None = None,
        divergence_threshold: float | None = None,
        check_on_train_epoch_end: bool | None = None,
        log_rank_zero_only: bool = False,
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
        patience_unit: str = "checks",
        min_delta_mode: str = "abs",
    ) -> None:
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

        self.wait_count: int = 0
        self.best_score: float = math.inf if self.mode == "min" else -math.inf
        self.stopped_epoch: int = 0
        self.stopping_reason: EarlyStoppingReason = EarlyStoppingReason.NOT_STOPPED
        self.stopping_reason_message: str | None = None
        self.checks: int = 0  # checks evaluated (skipped ones excluded), over all runs
        self._since: int = 0
        self._best_weights: dict[str, torch.Tensor] | None = None

        self._controller: StopController | None = None
        self._model: torch.nn.Module | None = None
        self._on_epoch_end: bool = bool(self.check_on_train_epoch_end)
        self._val_runs = 0  # validation runs seen in the current run (sanity check excluded)
        self._restored = False
        self._loop: Any = None  # the trainer's TrainingLoop once attached
        self._evaluator: Any = None  # the evaluator whose runs are judged when no ValidationSchedule governs
        self._scheduled = False  # a ValidationSchedule governs this run: judge its validation runs only
        self._last_metrics: dict[str, Any] | None = None  # metrics of the last judged validation run
        self._replayed_value: float | None = None

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
        """Where checks happen (resolved by :meth:`setup` or :meth:`attach`)."""
        return self._on_epoch_end

    def __repr__(self) -> str:
        return (f"EarlyStopping(monitor={self.monitor!r}, mode={self.mode!r}, patience={self.patience}, "
                f"patience_unit={self.patience_unit!r}, min_delta={self.min_delta})")

    # ------------------------------------------------------------------ integration contract
    def bind(self, controller: StopController, *, model: torch.nn.Module | None = None) -> None:
        """Send stop requests to ``controller``; ``model`` is needed for ``restore_best_weights``."""
        if self.restore_best_weights and model is None and self._model is None:
            raise ValueError("EarlyStopping(restore_best_weights=True) needs the model: pass model=... "
                             "(attach_speedups(..., model=model) or EarlyStopping.attach(..., model=model))")
        self._controller = controller
        if model is not None:
            self._model = model

    def setup(self, *, val_check_interval: Any, check_val_every_n_epoch: int | None, validation_enabled: bool,
              trainer: Any, evaluator: Any) -> None:
        """Resolve where checks happen for this run and refuse a run that can never see the monitor.

        ``check_on_train_epoch_end=None`` follows :func:`resolve_check_on_train_epoch_end`. When
        validation is disabled, the monitor must be a metric of the trainer.
        """
        if self.check_on_train_epoch_end is None:
            self._on_epoch_end = resolve_check_on_train_epoch_end(val_check_interval, check_val_every_n_epoch)
        else:
            self._on_epoch_end = self.check_on_train_epoch_end
        if not validation_enabled and not _is_trainer_metric(trainer, self.monitor):
            raise ValueError(
                f"early_stopping monitors {self.monitor!r}, which is not a metric of the trainer, but validation "
                f"is disabled (limit_val_batches=0 or no val_data), so it would never be computed; accepted: "
                f"enable validation, or monitor a metric attached to the trainer (Metric.attach(trainer, name)); "
                f"a metric attached to the trainer after attach_speedups is not there yet: attach it first"
            )
        self._val_runs = 0
        self._restored = False

    def prepare_run(self, trainer: Any, schedule: Any) -> None:
        """A run starts: with a :class:`~ignite_speed.handlers.ValidationSchedule`, judge its runs on
        Lightning's rule (:meth:`setup`); without one, judge the attached evaluator's runs."""
        self._scheduled = schedule is not None
        if schedule is not None:
            self.setup(val_check_interval=schedule.val_check_interval,
                       check_val_every_n_epoch=schedule.check_val_every_n_epoch,
                       validation_enabled=schedule.enabled, trainer=trainer, evaluator=schedule.evaluator)
            return
        if self.check_on_train_epoch_end is None:
            self._on_epoch_end = self._evaluator is None
        else:
            self._on_epoch_end = self.check_on_train_epoch_end
        if self._evaluator is None and not self._on_epoch_end:
            raise ValueError("EarlyStopping.attach(evaluator=None) with check_on_train_epoch_end=False: without an "
                             "evaluator or a ValidationSchedule there is no validation end to check at; pass the "
                             "evaluator or use check_on_train_epoch_end=True with a trainer metric")
        self._val_runs = 0
        self._restored = False

    def on_validation_end(self, trainer: Any, evaluator: Any, progress: Progress,
                          metrics: Mapping[str, Any] | None = None) -> None:
        """Called after each validation run during training (never for the sanity check) with that run's
        ``metrics`` (default: the evaluator's now)."""
        if metrics is None:
            metrics = getattr(getattr(evaluator, "state", None), "metrics", None) or {}
        self._last_metrics = dict(metrics)
        self._replayed_value = None
        self._val_runs += 1
        if not self._on_epoch_end:
            self._check(trainer, progress)

    def on_train_epoch_end(self, trainer: Any, progress: Progress) -> None:
        """Called at the end of every training epoch, after that epoch's validation. Syncs the stop
        controller once either way (the epoch end is a decision point for every stop source)."""
        if self._on_epoch_end:
            self._check(trainer, progress)
        elif self._controller is not None:
            self._controller.sync()

    def monitor_value_now(self, trainer: Any) -> float | None:
        """The monitor a check would read now (the last judged validation run's, else the trainer's): saved
        with the loop, since a resumed run may replay the check and metrics are in no checkpoint."""
        try:
            return self._read_monitor(trainer)
        except (TypeError, ValueError, RuntimeError):
            return None

    def restore_monitor_value(self, value: float) -> None:
        """The monitor for a check the resumed run replays (see :meth:`monitor_value_now`): it stands in for
        the last validation run's metrics, or for a trainer metric, until :meth:`end_replay`."""
        self._last_metrics = {self.monitor: float(value)}
        self._replayed_value = float(value)

    def end_replay(self) -> None:
        """The resumed run made its pending decision: metrics are live again."""
        self._replayed_value = None

    def reset(self) -> None:
        """Forget everything learnt (best score, patience, reason, best weights): for a fresh run."""
        self.wait_count = 0
        self.best_score = math.inf if self.mode == "min" else -math.inf
        self.stopped_epoch = 0
        self.stopping_reason = EarlyStoppingReason.NOT_STOPPED
        self.stopping_reason_message = None
        self.checks = 0
        self._since = 0
        self._best_weights = None
        self._val_runs = 0
        self._restored = False
        self._last_metrics = None

    def rearm(self) -> None:
        """Let a continued run (``Speedups.extend`` after an early stop) stop again: a fresh patience and
        reason; the best score and best weights are kept."""
        self.wait_count = 0
        self.stopped_epoch = 0
        self._since = 0
        self.stopping_reason = EarlyStoppingReason.NOT_STOPPED
        self.stopping_reason_message = None

    def count_earlier_validations(self, val_runs: int) -> None:
        """A resumed run: ``val_runs`` validations already ran, so the evaluator metrics restored from the
        checkpoint are real ones, not a sanity check's."""
        self._val_runs = int(val_runs)

    def on_train_end(self, trainer: Any) -> None:
        """Training ended (for any reason): load the best weights back when asked to."""
        if self._restored:
            return
        self._restored = True
        if not self.restore_best_weights or self._model is None:
            return
        if self._best_weights is None:
            self._log("restore_best_weights: no best weights were recorded in this run; weights left as they are")
            return
        _unwrap(self._model).load_state_dict(self._best_weights)
        self._log(f"restored the weights of the best check ({self.monitor}={self.best_score:.6g})")

    # ------------------------------------------------------------------ the check
    def _read_monitor(self, trainer: Any) -> float | None:
        # the judged validation run's metrics (a sanity check's or another handler's evaluator run never count)
        if self._last_metrics is not None and self._val_runs > 0 and self.monitor in self._last_metrics:
            return to_float(self._last_metrics[self.monitor], self.monitor)
        metrics = getattr(getattr(trainer, "state", None), "metrics", None) or {}
        if self.monitor in metrics:
            return to_float(metrics[self.monitor], self.monitor)
        return self._replayed_value  # a resumed run's replayed check of a trainer metric (not checkpointed)

    def _available(self, trainer: Any) -> list[str]:
        keys: list[str] = list(self._last_metrics or {})
        keys += list(getattr(getattr(trainer, "state", None), "metrics", None) or {})
        return sorted(set(keys))

    def _check(self, trainer: Any, progress: Progress) -> None:
        controller = self._controller
        if controller is None:
            raise RuntimeError("EarlyStopping is not bound to a StopController; call attach() or bind() first")
        world, rank = get_world_size(), get_rank()
        flags = [0] * len(STOP_REASONS)
        improved_on_rank0 = 0
        missing = 0
        decision: Decision | None = None

        value = self._read_monitor(trainer)
        if value is None:
            if self.strict:
                missing = 1
            elif self.verbose:
                warnings.warn(f"EarlyStopping: the monitor {self.monitor!r} is missing; check skipped (available: "
                              f"{self._available(trainer)})", RuntimeWarning, stacklevel=2)
        else:
            self.checks += 1
            position = {"checks": self.checks, "epochs": progress.epoch + 1,
                        "steps": progress.global_step}[self.patience_unit]
            decision = decide(value, best=self.best_score, wait=self.wait_count, since=self._since,
                              position=position, criteria=self.criteria,
                              warmup=progress.epoch < self.start_from_epoch)
            self.best_score, self.wait_count, self._since = decision.best_score, decision.wait_count, decision.since
            if decision.should_stop:
                flags[STOP_REASONS.index(decision.reason)] = world - rank  # MAX picks the lowest rank
                controller.request(StopReason.EARLY_STOPPING, decision.message, "early_stopping")
            if decision.improved and rank == 0:
                improved_on_rank0 = 1
            self._log(decision.message)

        controller.sync(extra=[*flags, improved_on_rank0, missing])
        agreed = list(controller.last_extra)
        if agreed[-1]:
            where = "" if missing else " on another rank"
            raise RuntimeError(f"EarlyStopping could not find the monitor {self.monitor!r}{where} (strict=True); "
                               f"available metrics: {self._available(trainer)}. Log it in validation "
                               f"(evaluator.state.metrics) or on the trainer, or pass strict=False")
        if agreed[-2] and self.restore_best_weights and self._model is not None:
            self._best_weights = {k: v.detach().to("cpu", copy=True)
                                  for k, v in _unwrap(self._model).state_dict().items()}
        codes = agreed[:len(STOP_REASONS)]
        if any(codes):
            reason = STOP_REASONS[codes.index(max(codes))]
            self.stopped_epoch = progress.epoch
            self.stopping_reason = reason
            self.stopping_reason_message = self._agreed_message(controller, decision)

    def _agreed_message(self, controller: StopController, decision: Decision | None) -> str:
        local = decision.message if decision is not None and decision.should_stop else None
        last = controller.history[-1] if controller.history else None
        if last is not None and last["reason"] == StopReason.EARLY_STOPPING.value:
            return last["message"]
        # another stop source won this decision point: agree on early stopping's own message
        return gather_message(local, "early_stopping")[0]

    def _log(self, message: str) -> None:
        if not self.verbose:
            return
        if self.log_rank_zero_only and get_world_size() > 1 and get_rank() != 0:
            return
        logger.info("EarlyStopping: %s", message)  # the package logger adds "[rank: N]" when distributed

    # ------------------------------------------------------------------ standalone use
    def attach(self, trainer: Engine, evaluator: Engine | None = None, model: torch.nn.Module | None = None,
               min_epochs: int = 0, min_steps: int = 0) -> EarlyStopping:
        """Use early stopping in a plain Ignite app (without ``attach_speedups``).

        With a :class:`~ignite_speed.handlers.ValidationSchedule` on the trainer (attached before or after),
        checks follow its validation runs with Lightning's rule for ``check_on_train_epoch_end=None``.
        Without one, checks run when ``evaluator`` completes a run while ``trainer`` trains (or at the
        trainer's ``EPOCH_COMPLETED`` with ``check_on_train_epoch_end=True``; ``None`` means at validation end
        here, or at epoch end without an evaluator). A stop is synced across ranks and deferred until
        ``min_epochs`` / ``min_steps`` (optimizer steps) are met; the trainer's loop then ends the run on
        every rank (after the batch, or at the end of the epoch, of the check).
        """
        from ignite.engine import Events

        from ..loop.training_loop import TrainingLoop

        for flag, value in (("min_epochs", min_epochs), ("min_steps", min_steps)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"EarlyStopping.attach({flag}={format_value(value)}): accepted: an int >= 0")
        if evaluator is not None and not hasattr(evaluator, "add_event_handler"):
            raise TypeError(f"EarlyStopping.attach(evaluator={type(evaluator).__name__}) is not an ignite Engine")
        loop = TrainingLoop.of_or_attach(trainer)
        if self._loop is not None and self._loop is not loop:
            raise ValueError("EarlyStopping is already attached to another trainer; make one per trainer")
        loop.controller.set_minimums(min_epochs, min_steps, caller="EarlyStopping.attach")
        loop.add("early_stopping", self)
        self.bind(loop.controller, model=model)
        self._loop = loop
        if evaluator is not None and evaluator is not self._evaluator:
            evaluator.add_event_handler(Events.COMPLETED, self._on_evaluator_completed)
        self._evaluator = evaluator
        return self

    def detach(self) -> None:
        """Stop judging the evaluator's runs (a replaced early-stopping handler)."""
        from ignite.engine import Events

        if self._evaluator is not None and self._evaluator.has_event_handler(self._on_evaluator_completed,
                                                                             Events.COMPLETED):
            self._evaluator.remove_event_handler(self._on_evaluator_completed, Events.COMPLETED)
        self._evaluator = None

    def _on_evaluator_completed(self, evaluator: Any) -> None:
        loop = self._loop
        if loop is None or self._scheduled or not loop.clock.running:
            return  # the schedule's runs are judged instead; or a run outside training (a final test)
        self.on_validation_end(loop.trainer, evaluator, loop.progress)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Plain data (loadable with ``torch.load(weights_only=True)``); the best weights (CPU tensors) are
        included when ``restore_best_weights`` recorded some."""
        state: dict[str, Any] = {
            "wait_count": self.wait_count,
            "stopped_epoch": self.stopped_epoch,
            "best_score": float(self.best_score),
            "patience": self.patience,
            "stopping_reason": self.stopping_reason.value,
            "stopping_reason_message": self.stopping_reason_message,
            "checks": self.checks,
            "since": self._since,
            "monitor": self.monitor,
            "mode": self.mode,
        }
        if self.restore_best_weights and self._best_weights is not None:
            state["best_weights"] = dict(self._best_weights)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output (also a Lightning ``EarlyStopping`` state; as in Lightning,
        the saved ``patience`` replaces the constructor's)."""
        missing = [k for k in ("wait_count", "stopped_epoch", "best_score", "patience") if k not in state]
        if missing:
            raise ValueError(f"EarlyStopping.load_state_dict: the state lacks {missing}; got keys {sorted(state)}")
        self.wait_count = int(state["wait_count"])
        self.stopped_epoch = int(state["stopped_epoch"])
        self.best_score = to_float(state["best_score"], self.monitor)
        self.patience = int(state["patience"])
        reason = state.get("stopping_reason", 0)
        if isinstance(reason, str):
            self.stopping_reason = EarlyStoppingReason[reason.upper()]
        else:
            self.stopping_reason = EarlyStoppingReason(int(getattr(reason, "value", reason)))
        message = state.get("stopping_reason_message")
        self.stopping_reason_message = None if message is None else str(message)
        self.checks = int(state.get("checks", 0))
        self._since = int(state.get("since", 0))
        weights = state.get("best_weights")
        self._best_weights = {k: v.detach().to("cpu", copy=True) for k, v in weights.items()} if weights else None
