"""The parts of :class:`~ignite_speed.handlers.EarlyStopping`: which value a check reads
(:class:`MonitorReader`), the weights of the best check (:class:`BestWeights`), its argument checks, the
ranks' agreement on one check (:func:`agree_on_check`) and the tally of a saved state."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch
from ignite.engine import Engine, Events

from .._compat import all_event_handlers
from ..config.durations import format_value
from ..distributed._dist import gather_message, get_rank, get_world_size
from ..loop.stop import StopController, StopReason
from .early_stopping_rule import (
    STOP_REASONS,
    Decision,
    EarlyStoppingReason,
    resolve_check_on_train_epoch_end,
    to_float,
)

__all__ = ["MonitorReader", "BestWeights", "EvaluatorRuns", "is_trainer_metric", "check_attach_arguments", "checks_at_epoch_end", "checks_at_epoch_end_unscheduled",
           "refuse_unseen_monitor", "AgreedCheck", "agree_on_check", "parse_saved_state"]


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside DDP / DataParallel wrappers (their state dict keys carry a ``module.`` prefix)."""
    wrappers = (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
    while isinstance(model, wrappers):
        model = model.module
    return model


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


class EvaluatorRuns:
    """The evaluator whose completed runs are judged (when no validation schedule governs)."""

    def __init__(self, on_completed: Callable[[Engine], None]) -> None:
        self.engine: Engine | None = None
        self._on_completed = on_completed

    def watch(self, engine: Engine | None) -> None:
        """Judge ``engine``'s runs from now on (``None``: no evaluator's)."""
        old = self.engine
        if old is not None and old is not engine and old.has_event_handler(self._on_completed, Events.COMPLETED):
            old.remove_event_handler(self._on_completed, Events.COMPLETED)
        if engine is not None and engine is not old:
            engine.add_event_handler(Events.COMPLETED, self._on_completed)
        self.engine = engine


class BestWeights:
    """A CPU copy of the model's weights at the best check, loaded back when training ends."""

    def __init__(self) -> None:
        self.model: torch.nn.Module | None = None
        self.weights: dict[str, torch.Tensor] | None = None

    def keep(self) -> None:
        if self.model is not None:
            self.weights = {k: v.detach().to("cpu", copy=True) for k, v in _unwrap(self.model).state_dict().items()}

    def load(self, weights: Mapping[str, torch.Tensor] | None) -> None:
        self.weights = {k: v.detach().to("cpu", copy=True) for k, v in weights.items()} if weights else None

    def restore(self, description: str, log: Any) -> None:
        if self.model is None:
            return
        if self.weights is None:
            log("restore_best_weights: no best weights were recorded in this run; weights left as they are")
            return
        _unwrap(self.model).load_state_dict(self.weights)
        log(f"restored the weights of the best check ({description})")


# ---------------------------------------------------------------------------------------------- arguments
def check_attach_arguments(evaluator: Any, min_epochs: Any, min_steps: Any, *, needs_model: bool) -> None:
    """Refuse bad arguments of ``EarlyStopping.attach`` (naming the argument, the value, what is accepted)."""
    for flag, value in (("min_epochs", min_epochs), ("min_steps", min_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"EarlyStopping.attach({flag}={format_value(value)}): accepted: an int >= 0")
    if evaluator is not None and not hasattr(evaluator, "add_event_handler"):
        raise TypeError(f"EarlyStopping.attach(evaluator={type(evaluator).__name__}) is not an ignite Engine")
    if needs_model:
        raise ValueError("EarlyStopping(restore_best_weights=True) needs the model: pass model=... "
                         "(attach_speedups(..., model=model) or EarlyStopping.attach(..., model=model))")


def checks_at_epoch_end(check_on_train_epoch_end: bool | None, val_check_interval: Any,
                        check_val_every_n_epoch: int | None, *, budgeted: bool = False) -> bool:
    """Where the checks of a scheduled run happen: the flag, or Lightning's rule when it is ``None`` (at
    validation end under ``val_time_fraction``, ``budgeted``: patience then counts the runs that happen)."""
    if check_on_train_epoch_end is None:
        if budgeted:
            return False
        return resolve_check_on_train_epoch_end(val_check_interval, check_val_every_n_epoch)
    return check_on_train_epoch_end


def checks_at_epoch_end_unscheduled(check_on_train_epoch_end: bool | None, *, has_evaluator: bool) -> bool:
    """Where the checks happen without a validation schedule: at the evaluator's runs, or at epoch ends
    (``None``: at epoch ends only without an evaluator)."""
    on_epoch_end = not has_evaluator if check_on_train_epoch_end is None else check_on_train_epoch_end
    if not has_evaluator and not on_epoch_end:
        raise ValueError("EarlyStopping.attach(evaluator=None) with check_on_train_epoch_end=False: without "
                         "an evaluator or a ValidationSchedule there is no validation end to check at; pass "
                         "the evaluator or use check_on_train_epoch_end=True with a trainer metric")
    return on_epoch_end


def refuse_unseen_monitor(monitor: str, validation_enabled: bool, trainer: Any) -> None:
    """Without validation the monitor must be a metric of the trainer, or no check could ever see it."""
    if not validation_enabled and not is_trainer_metric(trainer, monitor):
        raise ValueError(
            f"early_stopping monitors {monitor!r}, which is not a metric of the trainer, but validation "
            f"is disabled (limit_val_batches=0 or no val_data), so it would never be computed; accepted: "
            f"enable validation, or monitor a metric attached to the trainer (Metric.attach(trainer, name)); "
            f"a metric attached to the trainer after attach_speedups is not there yet: attach it first"
        )


# ---------------------------------------------------------------------------------------------- the ranks agree
class AgreedCheck(NamedTuple):
    """What the ranks agreed on at one check."""

    stop_reason: EarlyStoppingReason | None  # the lowest stopping rank's reason (None: no rank stops)
    message: str | None  # ... and its message
    keep_best_weights: bool  # rank 0 improved: every rank keeps a copy of its weights


def agree_on_check(controller: StopController, decision: Decision | None, *, missing: bool, monitor: str,
                   available: Callable[[], list[str]]) -> AgreedCheck:
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
        raise RuntimeError(f"EarlyStopping could not find the monitor {monitor!r}{where} (strict=True); "
                           f"available metrics: {available()}. Log it in validation "
                           f"(evaluator.state.metrics) or on the trainer, or pass strict=False")
    codes = agreed[:len(STOP_REASONS)]
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


# ---------------------------------------------------------------------------------------------- saved state
def parse_saved_state(state: Mapping[str, Any], monitor: str) -> tuple[int, int, float, int, EarlyStoppingReason,
                                                                         str | None, int, int]:
    """The tally of a saved state (ours or Lightning's ``EarlyStopping`` state): ``wait_count``,
    ``stopped_epoch``, ``best_score``, ``patience``, ``stopping_reason``, its message, ``checks``, ``since``."""
    missing = [k for k in ("wait_count", "stopped_epoch", "best_score", "patience") if k not in state]
    if missing:
        raise ValueError(f"EarlyStopping.load_state_dict: the state lacks {missing}; got keys {sorted(state)}")
    reason = state.get("stopping_reason", 0)
    if isinstance(reason, str):
        stopping_reason = EarlyStoppingReason[reason.upper()]
    else:
        stopping_reason = EarlyStoppingReason(int(getattr(reason, "value", reason)))
    message = state.get("stopping_reason_message")
    return (int(state["wait_count"]), int(state["stopped_epoch"]), to_float(state["best_score"], monitor),
            int(state["patience"]), stopping_reason, None if message is None else str(message),
            int(state.get("checks", 0)), int(state.get("since", 0)))
