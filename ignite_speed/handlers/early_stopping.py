"""Early stopping with Lightning 2.6 semantics, a few Keras-style extras, and one decision for all ranks.

Two modules: the pure rule (:mod:`~ignite_speed.handlers.early_stopping_rule`: one check's decision and
where a run's checks happen) and, here, :class:`EarlyStopping`, which reads the monitor from the engines,
applies the rule, sends stop requests through the trainer's :class:`~ignite_speed.loop.StopController`
(one collective per check) and keeps the Lightning-style attributes (``wait_count``, ``best_score``,
``stopped_epoch``, ``stopping_reason``...). Its settings are one
:class:`~ignite_speed.config.early_stopping.EarlyStoppingOptions`, checked when it is built.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from ignite.engine import Engine, Events

from .._compat import all_event_handlers
from .._logging import logger
from ..config.durations import format_value
from ..config.early_stopping import EarlyStoppingOptions, EarlyStoppingSettings, early_stopping_options
from ..distributed._dist import gather_message, get_rank, get_world_size
from ..distributed.checkpoint import unwrap_model
from ..loop.plan import RunPlan
from ..loop.progress import Progress
from ..loop.stop import StopController, StopReason
from ..loop.training_loop import TrainingLoop
from .base import LoopHandler
from .early_stopping_rule import (
    STOP_REASONS,
    Decision,
    EarlyStoppingReason,
    ValidationCadence,
    checks_at_epoch_end,
    decide,
    to_float,
)
from .validation import ValidationSchedule

if TYPE_CHECKING:  # pragma: no cover
    from typing_extensions import Unpack

__all__ = ["EarlyStopping", "EarlyStoppingReason", "EarlyStoppingOptions"]


class EarlyStopping(LoopHandler):
    """Stop training when a monitored metric stops improving (Lightning 2.6 semantics, plus extras).

    Build it from keyword settings, ``EarlyStopping(evaluator, monitor="val_loss", patience=3)``, or from
    options, ``EarlyStopping(evaluator, options=EarlyStoppingOptions("val_loss", patience=3))``; then
    ``attach(trainer)``. The settings are those of
    :class:`~ignite_speed.config.early_stopping.EarlyStoppingOptions` (``monitor`` is required).

    Args:
        evaluator: the engine whose runs compute the monitor. Next to a
            :class:`~ignite_speed.handlers.ValidationSchedule` the schedule's runs are judged; without one,
            every run of ``evaluator`` while the trainer trains is. ``None``: the schedule must be attached
            first, or the monitor be a metric of the trainer (else ``attach`` refuses).
        options: the settings, as one object (instead of keyword ``settings``).
        model: the model, needed by ``restore_best_weights=True`` (DDP / DataParallel wrappers are unwrapped).
        settings: the settings as keyword arguments (instead of ``options``).

    ``min_epochs`` / ``min_steps`` are not early stopping's: the trainer's stop controller defers every stop
    request until they are met (give them to :class:`~ignite_speed.handlers.LoopLimits`).
    """

    name = "early_stopping"
    order = 50  # after the other stop sources and the validation schedule: it judges the schedule's runs

    def __init__(
        self,
        evaluator: Engine | None = None,
        *,
        options: EarlyStoppingOptions | None = None,
        model: torch.nn.Module | None = None,
        **settings: Unpack[EarlyStoppingSettings],
    ) -> None:
        super().__init__()
        self.options = _options_of(evaluator, options, dict(settings))
        if self.options.restore_best_weights and model is None:
            raise ValueError(
                "EarlyStopping(restore_best_weights=True) needs the model: pass model=... "
                "(attach_speedups(..., model=model) or EarlyStopping(..., model=model))"
            )
        self.evaluator = evaluator
        self._best = BestWeights(model)
        self.reset()
        self._on_epoch_end: bool = bool(self.options.check_on_train_epoch_end)
        self._scheduled = False  # a ValidationSchedule governs this run: judge its validation runs only
        self._saved_monitor: float | None = None  # the monitor saved with a loaded checkpoint

    # ------------------------------------------------------------------ description
    @property
    def monitor(self) -> str:
        return self.options.monitor

    @property
    def mode(self) -> str:
        return self.options.mode

    @property
    def patience(self) -> int:
        """``options.patience`` (a loaded state's ``patience`` replaces it, as in Lightning)."""
        return self.options.patience

    @property
    def min_delta(self) -> float:
        return self.options.min_delta

    @property
    def state_key(self) -> str:
        """Key under which a checkpoint stores this callback (as Lightning: monitor and mode)."""
        return f"EarlyStopping{{'monitor': {self.monitor!r}, 'mode': {self.mode!r}}}"

    @property
    def checks_at_epoch_end(self) -> bool:
        """Where checks happen (resolved at the start of each run:
        :func:`~ignite_speed.handlers.early_stopping_rule.checks_at_epoch_end`)."""
        return self._on_epoch_end

    def __repr__(self) -> str:
        o = self.options
        return (
            f"EarlyStopping(monitor={o.monitor!r}, mode={o.mode!r}, patience={o.patience}, "
            f"patience_unit={o.patience_unit!r}, min_delta={o.min_delta})"
        )

    # ------------------------------------------------------------------ attaching
    def attach(self, trainer: Engine) -> EarlyStopping:
        """Attach early stopping to ``trainer``'s loop; returns ``self``.

        With a :class:`~ignite_speed.handlers.ValidationSchedule` (attached before or after), checks follow its
        runs; without one, they follow the evaluator's runs during training (or the trainer's epoch ends).
        A stop is synced across ranks and waits for the stop controller's ``min_epochs`` / ``min_steps``; the
        loop then ends the run on every rank. A monitor that nothing can compute (no validation, and not a
        metric of the trainer) is refused here, as ``attach_speedups`` refuses it."""
        loop = TrainingLoop.of(trainer)
        refuse_unseen_monitor(
            self.monitor,
            trainer,
            None if loop is None else ValidationSchedule.of(loop),
            has_evaluator=self.evaluator is not None,
        )
        super().attach(trainer)
        if self.evaluator is not None and not self.evaluator.has_event_handler(self._on_evaluator_completed):
            self.evaluator.add_event_handler(Events.COMPLETED, self._on_evaluator_completed)
        return self

    def detach(self) -> None:
        """Stop judging the evaluator's runs (the loop is taken off, or this handler is replaced)."""
        if self.evaluator is not None and self.evaluator.has_event_handler(
            self._on_evaluator_completed, Events.COMPLETED
        ):
            self.evaluator.remove_event_handler(self._on_evaluator_completed, Events.COMPLETED)

    def _on_evaluator_completed(self, evaluator: Engine) -> None:
        loop = self._loop
        if loop is None or self._scheduled or not loop.clock.running:
            return  # the schedule's runs are judged instead; or a run outside training (a final test)
        self.on_validation_end(getattr(evaluator.state, "metrics", None) or {})

    # ------------------------------------------------------------------ hooks
    def on_run_start(self, plan: RunPlan) -> None:
        """Resolve where this run's checks happen (:func:`checks_at_epoch_end`): under the run's
        :class:`~ignite_speed.handlers.ValidationSchedule`, judging its runs, or at the evaluator's runs."""
        schedule = ValidationSchedule.of(self.loop)
        self._scheduled = schedule is not None
        cadence = None
        if schedule is not None:  # (attached after this handler, it is only known now)
            refuse_unseen_monitor(self.monitor, self.loop.trainer, schedule, has_evaluator=self.evaluator is not None)
            cadence = ValidationCadence(
                schedule.val_check_interval, schedule.check_val_every_n_epoch, budgeted=schedule.budget is not None
            )
        self._on_epoch_end = checks_at_epoch_end(
            self.options.check_on_train_epoch_end, cadence, has_evaluator=self.evaluator is not None
        )
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
        if self.options.restore_best_weights and not self._restored:
            self._best.restore(f"{self.monitor}={self.best_score:.6g}", self._log)
        self._restored = True

    def on_new_run(self) -> None:
        self.reset()

    def report_fields(self) -> dict[str, Any]:
        o = self.options
        return {
            "early_stopping": {
                "monitor": o.monitor,
                "mode": o.mode,
                "best_score": self.best_score,
                "stopping_threshold": o.stopping_threshold,
                "divergence_threshold": o.divergence_threshold,
            }
        }

    def reset(self) -> None:
        """Forget everything learnt (best score, patience, reason, best weights): for a fresh run."""
        self.rearm()
        self.best_score = math.inf if self.mode == "min" else -math.inf
        self.checks = 0  # checks evaluated (skipped ones excluded), over all runs
        self._best.weights = None
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
        if value is None and not self.options.strict and self.options.verbose:
            warnings.warn(
                f"EarlyStopping: the monitor {self.monitor!r} is missing; check skipped (available: "
                f"{self._monitor.available(trainer)})",
                RuntimeWarning,
                stacklevel=2,
            )
        if value is not None:
            decision = self._decide(value, progress)
            self._log(decision.message)
        agreed = agree_on_check(
            loop.controller,
            decision,
            missing=value is None and self.options.strict,
            monitor=self.monitor,
            available=lambda: self._monitor.available(trainer),
        )
        if agreed.keep_best_weights and self.options.restore_best_weights:
            self._best.keep()
        if agreed.stop_reason is not None:
            self.stopped_epoch, self.stopping_reason = progress.epoch, agreed.stop_reason
            self.stopping_reason_message = agreed.message

    def _decide(self, value: float, progress: Progress) -> Decision:
        self.checks += 1
        o = self.options
        position = {"checks": self.checks, "epochs": progress.epoch + 1, "steps": progress.global_step}[o.patience_unit]
        decision = decide(
            value,
            best=self.best_score,
            wait=self.wait_count,
            since=self._since,
            position=position,
            options=o,
            warmup=progress.epoch < o.start_from_epoch,
        )
        self.best_score, self.wait_count, self._since = decision.best_score, decision.wait_count, decision.since
        return decision

    def _log(self, message: str) -> None:
        if not self.options.verbose:
            return
        if self.options.log_rank_zero_only and get_world_size() > 1 and get_rank() != 0:
            return
        logger.info("EarlyStopping: %s", message)  # the package logger adds "[rank: N]" when distributed

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Plain data (loadable with ``torch.load(weights_only=True)``): Lightning's keys and ours; the best
        weights (CPU tensors) when ``restore_best_weights`` recorded some; and the monitor a check would read
        now, for a resumed run that replays a pending decision."""
        state: dict[str, Any] = dict(
            wait_count=self.wait_count,
            stopped_epoch=self.stopped_epoch,
            best_score=float(self.best_score),
            patience=self.patience,
            stopping_reason=self.stopping_reason.value,
            checks=self.checks,
            since=self._since,
            stopping_reason_message=self.stopping_reason_message,
            monitor=self.monitor,
            mode=self.mode,
            monitor_value=self._monitor.read_or_none(self._loop.trainer) if self._loop is not None else None,
        )
        if self.options.restore_best_weights and self._best.weights is not None:
            state["best_weights"] = dict(self._best.weights)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output (also a Lightning ``EarlyStopping`` state; as in Lightning,
        the saved ``patience`` replaces the constructor's)."""
        missing = [k for k in ("wait_count", "stopped_epoch", "best_score", "patience") if k not in state]
        if missing:
            raise ValueError(f"EarlyStopping.load_state_dict: the state lacks {missing}; got keys {sorted(state)}")
        reason, message = state.get("stopping_reason", 0), state.get("stopping_reason_message")
        parsed = (
            int(state["wait_count"]),
            int(state["stopped_epoch"]),
            to_float(state["best_score"], self.monitor),
            dataclasses.replace(self.options, patience=int(state["patience"])),
            EarlyStoppingReason[reason.upper()]
            if isinstance(reason, str)
            else EarlyStoppingReason(int(getattr(reason, "value", reason))),
            None if message is None else str(message),
            int(state.get("checks", 0)),
            int(state.get("since", 0)),
        )
        # assigned together once all of it parsed: a bad state leaves this handler as it was
        (
            self.wait_count,
            self.stopped_epoch,
            self.best_score,
            self.options,
            self.stopping_reason,
            self.stopping_reason_message,
            self.checks,
            self._since,
        ) = parsed
        self._best.load(state.get("best_weights"))
        saved = state.get("monitor_value")
        self._saved_monitor = None if saved is None else float(saved)


def _options_of(evaluator: Any, options: EarlyStoppingOptions | None, settings: dict[str, Any]) -> EarlyStoppingOptions:
    """The options of ``EarlyStopping(evaluator, options=..., **settings)``: given in one of the two ways."""
    if evaluator is not None and not isinstance(evaluator, Engine):
        hint = (
            f"; the monitor is a keyword argument: EarlyStopping(evaluator, monitor={evaluator!r}, ...)"
            if isinstance(evaluator, str)
            else ""
        )
        raise TypeError(f"EarlyStopping(evaluator={format_value(evaluator)}) is not an ignite Engine{hint}")
    if options is not None:
        if settings:
            raise TypeError(
                f"EarlyStopping(options=..., {', '.join(settings)}=...): give the settings one way, "
                f"as options=EarlyStoppingOptions(...) or as keyword arguments"
            )
        if not isinstance(options, EarlyStoppingOptions):
            raise TypeError(
                f"EarlyStopping(options={format_value(options)}) has type {type(options).__name__}; "
                f"accepted: an EarlyStoppingOptions"
            )
        return options
    if "monitor" not in settings:
        raise TypeError(
            "EarlyStopping() needs monitor=...: the name of the metric to watch, e.g. "
            "EarlyStopping(evaluator, monitor='val_loss') (or options=EarlyStoppingOptions(...))"
        )
    return early_stopping_options(settings, flag="EarlyStopping")


def refuse_unseen_monitor(
    monitor: str, trainer: Engine, schedule: ValidationSchedule | None, *, has_evaluator: bool
) -> None:
    """Without validation the monitor must be a metric of the trainer, or no check could ever see it."""
    if schedule is not None:
        validates, why = schedule.enabled, "limit_val_batches=0 or no val_data"
    else:
        validates, why = has_evaluator, "no evaluator given, and no ValidationSchedule attached"
    if validates or is_trainer_metric(trainer, monitor):
        return
    raise ValueError(
        f"early_stopping monitors {monitor!r}, which is not a metric of the trainer, but validation is "
        f"disabled ({why}), so it would never be computed; accepted: enable validation (an evaluator and "
        f"val_data for attach_speedups; EarlyStopping(evaluator, ...) or a ValidationSchedule attached first), "
        f"or monitor a metric attached to the trainer (Metric.attach(trainer, name)); a metric attached to "
        f"the trainer after attach_speedups is not there yet: attach it first"
    )


def is_trainer_metric(trainer: Any, name: str) -> bool:
    """``name`` is a metric computed on the trainer (attached Ignite ``Metric`` or already in its state)."""
    state = getattr(trainer, "state", None)
    if state is not None and name in (getattr(state, "metrics", None) or {}):
        return True
    try:
        from ignite.metrics import Metric

        for entry in all_event_handlers(trainer):
            func, args = entry[0], entry[1]
            owner = getattr(func, "__self__", None)
            if isinstance(owner, Metric) and getattr(func, "__name__", "") == "completed" and name in args:
                return True
    except Exception:  # pragma: no cover - private layout changed: be permissive
        return True
    return False


class MonitorReader:
    """The monitored value a check reads: the last judged validation run's metrics (a sanity check's or
    another handler's evaluator run never count), else the trainer's metrics; after a resume, the value
    saved with the checkpoint stands in for the metrics of the decision the resumed run replays."""

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor
        self.val_runs = 0  # validation runs judged in the current run (sanity check excluded)
        self.last_metrics: dict[str, Any] | None = None
        self.replayed_value: float | None = None

    def record(self, metrics: Mapping[str, Any]) -> None:
        """A validation run ended with ``metrics``."""
        self.last_metrics = dict(metrics)
        self.replayed_value = None
        self.val_runs += 1

    def read(self, trainer: Any) -> float | None:
        if self.last_metrics is not None and self.val_runs > 0 and self.monitor in self.last_metrics:
            return to_float(self.last_metrics[self.monitor], self.monitor)
        metrics = getattr(getattr(trainer, "state", None), "metrics", None) or {}
        if self.monitor in metrics:
            return to_float(metrics[self.monitor], self.monitor)
        return self.replayed_value  # a resumed run's replayed check of a trainer metric (not checkpointed)

    def read_or_none(self, trainer: Any) -> float | None:
        try:
            return self.read(trainer)
        except (TypeError, ValueError, RuntimeError):
            return None

    def available(self, trainer: Any) -> list[str]:
        keys: list[str] = list(self.last_metrics or {})
        keys += list(getattr(getattr(trainer, "state", None), "metrics", None) or {})
        return sorted(set(keys))

    def replay(self, value: float) -> None:
        """The saved monitor stands in for the metrics until :meth:`end_replay`."""
        self.last_metrics = {self.monitor: float(value)}
        self.replayed_value = float(value)

    def end_replay(self) -> None:
        self.replayed_value = None

    def reset(self) -> None:
        self.val_runs = 0
        self.last_metrics = None


class BestWeights:
    """A CPU copy of the model's weights at the best check, loaded back when training ends."""

    def __init__(self, model: torch.nn.Module | None) -> None:
        self.model = model
        self.weights: dict[str, torch.Tensor] | None = None

    def keep(self) -> None:
        if self.model is not None:
            state = unwrap_model(self.model).state_dict()
            self.weights = {k: v.detach().to("cpu", copy=True) for k, v in state.items()}

    def load(self, weights: Mapping[str, torch.Tensor] | None) -> None:
        self.weights = {k: v.detach().to("cpu", copy=True) for k, v in weights.items()} if weights else None

    def restore(self, description: str, log: Callable[[str], None]) -> None:
        if self.model is None:
            return
        if self.weights is None:
            log("restore_best_weights: no best weights were recorded in this run; weights left as they are")
            return
        unwrap_model(self.model).load_state_dict(self.weights)
        log(f"restored the weights of the best check ({description})")


# ---------------------------------------------------------------------------------------------- the ranks agree
class AgreedCheck(NamedTuple):
    """What the ranks agreed on at one check."""

    stop_reason: EarlyStoppingReason | None  # the lowest stopping rank's reason (None: no rank stops)
    message: str | None  # ... and its message
    keep_best_weights: bool  # rank 0 improved: every rank keeps a copy of its weights


def agree_on_check(
    controller: StopController,
    decision: Decision | None,
    *,
    missing: bool,
    monitor: str,
    available: Callable[[], list[str]],
) -> AgreedCheck:
    """Send this rank's decision (``None``: no value; ``missing``: none where ``strict`` wants one) to the
    stop controller and agree with the other ranks in one sync: a stop request, its reason and message,
    whether rank 0 improved, and whether any rank misses the monitor (then every rank raises)."""
    world, rank = get_world_size(), get_rank()
    flags = [0] * len(STOP_REASONS)
    if decision is not None and decision.should_stop:
        flags[STOP_REASONS.index(decision.reason)] = world - rank  # MAX picks the lowest rank
        controller.request(StopReason.EARLY_STOPPING, decision.message, "early_stopping")
    improved_on_rank0 = int(decision is not None and decision.improved and rank == 0)
    controller.sync(extra=[*flags, improved_on_rank0, int(missing)])
    agreed = list(controller.last_extra)
    if agreed[-1]:
        where = "" if missing else " on another rank"
        raise RuntimeError(
            f"EarlyStopping could not find the monitor {monitor!r}{where} (strict=True); "
            f"available metrics: {available()}. Log it in validation "
            f"(evaluator.state.metrics) or on the trainer, or pass strict=False"
        )
    codes = agreed[: len(STOP_REASONS)]
    if not any(codes):
        return AgreedCheck(None, None, bool(agreed[-2]))
    return AgreedCheck(STOP_REASONS[codes.index(max(codes))], _agreed_message(controller, decision), bool(agreed[-2]))


def _agreed_message(controller: StopController, decision: Decision | None) -> str:
    local = decision.message if decision is not None and decision.should_stop else None
    last = controller.history[-1] if controller.history else None
    if last is not None and last["reason"] == StopReason.EARLY_STOPPING.value:
        return last["message"]
    # another stop source won this decision point: agree on early stopping's own message
    return gather_message(local, "early_stopping")[0]
