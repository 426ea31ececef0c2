"""The parts of :class:`~ignite_speed.handlers.EarlyStopping` that hold data of their own: which value a
check reads (:class:`MonitorReader`) and the weights of the best check (:class:`BestWeights`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from .early_stopping_rule import to_float

__all__ = ["MonitorReader", "BestWeights", "is_trainer_metric"]


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
