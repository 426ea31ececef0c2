"""The ``early_stopping`` flag's keyword arguments: checked and normalized once (per-key validators)."""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Mapping
from typing import Any

from .durations import format_value

__all__ = ["validate_early_stopping_kwargs", "EARLY_STOPPING_DEFAULTS", "PATIENCE_UNITS", "MIN_DELTA_MODES", "MODES"]

PATIENCE_UNITS = ("checks", "epochs", "steps")
MIN_DELTA_MODES = ("abs", "rel")
MODES = ("min", "max")


EARLY_STOPPING_DEFAULTS: dict[str, Any] = {
    "monitor": None,
    "min_delta": 0.0,
    "patience": 3,
    "verbose": False,
    "mode": "min",
    "strict": True,
    "check_finite": True,
    "stopping_threshold": None,
    "divergence_threshold": None,
    "check_on_train_epoch_end": None,
    "log_rank_zero_only": False,
    "baseline": None,
    "restore_best_weights": False,
    "start_from_epoch": 0,
    "patience_unit": "checks",
    "min_delta_mode": "abs",
}
_BOOL_KEYS = ("verbose", "strict", "check_finite", "log_rank_zero_only", "restore_best_weights")
_OPTIONAL_NUMBER_KEYS = ("stopping_threshold", "divergence_threshold", "baseline")


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def validate_early_stopping_kwargs(kwargs: Mapping[str, Any], flag: str = "early_stopping") -> dict[str, Any]:
    """Check the keyword arguments of :class:`EarlyStopping` and return them normalized.

    Only the given keys are returned (numbers as ``float``/``int``, strings lower-cased); ``monitor``
    is required. Errors are ``TypeError``/``ValueError`` naming the key as ``{flag}['key']``, the
    value, and what is accepted; unknown keys get a did-you-mean suggestion.
    """
    if not isinstance(kwargs, Mapping):
        raise TypeError(f"{flag}={format_value(kwargs)} has type {type(kwargs).__name__}; accepted: a dict of "
                        f"EarlyStopping keyword arguments")
    known = list(EARLY_STOPPING_DEFAULTS)
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        name = f"{flag}[{key!r}]" if flag != "EarlyStopping" else f"EarlyStopping: {key}"
        if key not in EARLY_STOPPING_DEFAULTS:
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{name} is not an EarlyStopping argument{hint} (accepted keys: {', '.join(known)})")
        out[key] = _validate_one(key, value, name)
    if "monitor" not in out:
        raise ValueError(f"{flag}['monitor'] is required: the name of the metric to watch, e.g. 'val_loss'")
    return out


def _validate_one(key: str, value: Any, name: str) -> Any:
    shown = f"{name}={format_value(value)}"
    if key == "monitor":
        if not isinstance(value, str) or not value:
            raise TypeError(f"{shown} is not a metric name; accepted: a non-empty str such as 'val_loss'")
        return value
    if key in _BOOL_KEYS:
        if not isinstance(value, bool):
            raise TypeError(f"{shown} has type {type(value).__name__}; accepted: True or False")
        return value
    if key == "check_on_train_epoch_end":
        if value is not None and not isinstance(value, bool):
            raise TypeError(f"{shown} has type {type(value).__name__}; accepted: None (decide from the "
                            f"validation schedule), True or False")
        return value
    if key in ("mode", "patience_unit", "min_delta_mode"):
        accepted = {"mode": MODES, "patience_unit": PATIENCE_UNITS, "min_delta_mode": MIN_DELTA_MODES}[key]
        if not isinstance(value, str) or value.lower() not in accepted:
            raise ValueError(f"{shown} is not known; accepted: {', '.join(repr(a) for a in accepted)}")
        return value.lower()
    if key in ("patience", "start_from_epoch"):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{shown} has type {type(value).__name__}; accepted: an int >= 0")
        if value < 0:
            extra = (" (Lightning treats a negative patience like 0; write 0)" if key == "patience" else "")
            raise ValueError(f"{shown} is negative; accepted: an int >= 0{extra}")
        return int(value)
    if key == "min_delta":
        if not _is_number(value):
            raise TypeError(f"{shown} has type {type(value).__name__}; accepted: a finite number >= 0")
        if not math.isfinite(value):
            raise ValueError(f"{shown} is not finite; accepted: a finite number >= 0")
        if value < 0:
            raise ValueError(f"{shown} is negative; accepted: a finite number >= 0 (the sign follows mode; a "
                             f"negative min_delta would count a worse value as an improvement, so training "
                             f"would never stop)")
        return float(value)
    if key in _OPTIONAL_NUMBER_KEYS:
        if value is None:
            return None
        if not _is_number(value):
            raise TypeError(f"{shown} has type {type(value).__name__}; accepted: None or a finite number")
        if not math.isfinite(value):
            raise ValueError(f"{shown} is not finite; accepted: None or a finite number")
        return float(value)
    raise AssertionError(key)  # pragma: no cover - every key of EARLY_STOPPING_DEFAULTS is handled above
