"""The ``pruning`` flag: which hyperparameter-search trial the run reports to (see
:class:`~ignite_speed.handlers.Pruning` and :mod:`ignite_speed.search`). The search engines are optional and not
imported here: a trial is recognised by what it can do."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .checks import type_name
from .durations import format_value

__all__ = ["PRUNING_UNITS", "RAY_TUNE", "validate_pruning_unit", "validate_pruning_flag"]

PRUNING_UNITS = ("steps", "epochs", "seconds")
RAY_TUNE = "ray_tune"  # pruning={"trial": "ray_tune", ...}: the Ray Tune trial this process runs in
_KEYS = ("trial", "monitor", "unit", "to_save")
_ACCEPTED = (
    'None, or {"trial": <an optuna.trial.Trial> or "ray_tune", "monitor": <metric name>, "unit": '
    '"steps" | "epochs" | "seconds" (default "steps"), "to_save": <dict of objects with state_dict, '
    "ray_tune only>}"
)


def validate_pruning_unit(unit: Any, flag: str = "Pruning") -> str:
    """``unit``: the progress unit of the step reported to the search."""
    if unit not in PRUNING_UNITS:
        raise ValueError(
            f"{flag}(unit={format_value(unit)}): accepted: one of {list(PRUNING_UNITS)} (optimizer "
            f"steps, fractional epochs, training seconds)"
        )
    return str(unit)


def validate_pruning_flag(value: Any) -> dict[str, Any] | None:
    """``pruning``: ``None`` (off) or a mapping; returns it with ``unit`` filled in."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TypeError(f"pruning={format_value(value)} has type {type_name(value)}; accepted: {_ACCEPTED}")
    unknown = sorted(set(value) - set(_KEYS))
    if unknown:
        raise ValueError(f"pruning has unknown keys {unknown}; accepted: {_ACCEPTED}")
    trial, monitor = value.get("trial"), value.get("monitor")
    is_optuna = hasattr(trial, "report") and hasattr(trial, "should_prune")
    if trial != RAY_TUNE and not is_optuna:
        raise ValueError(f"pruning={{'trial': {format_value(trial)}}}: accepted: an optuna.trial.Trial or {RAY_TUNE!r}")
    if not isinstance(monitor, str) or not monitor:
        raise ValueError(
            f"pruning={{'monitor': {format_value(monitor)}}}: accepted: a metric name of the validation run (str)"
        )
    to_save = value.get("to_save")
    if to_save is not None and (trial != RAY_TUNE or not isinstance(to_save, Mapping)):
        raise ValueError(
            f"pruning={{'to_save': {format_value(to_save)}}}: accepted: a dict of objects to "
            f"checkpoint, with trial={RAY_TUNE!r} only"
        )
    unit = validate_pruning_unit(value.get("unit", "steps"), "pruning")
    return {**value, "unit": unit}
