"""Early stopping's settings: one typed options object, validated once when it is built.

:class:`EarlyStoppingOptions` is what both the ``early_stopping`` flag of
:class:`~ignite_speed.config.SpeedConfig` and :class:`~ignite_speed.handlers.EarlyStopping` keep. A mapping of
keyword arguments (the flag's dict) becomes options with :func:`early_stopping_options`, which adds the
checks a mapping needs (unknown keys, with a did-you-mean suggestion; ``monitor`` given).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import KW_ONLY, InitVar, dataclass
from typing import Any, TypedDict

from .checks import check_bool, did_you_mean, type_name
from .durations import format_value

__all__ = [
    "EarlyStoppingOptions",
    "early_stopping_options",
    "early_stopping_flag_options",
    "validate_early_stopping_kwargs",
    "PATIENCE_UNITS",
    "MIN_DELTA_MODES",
    "MODES",
]

PATIENCE_UNITS = ("checks", "epochs", "steps")
MIN_DELTA_MODES = ("abs", "rel")
MODES = ("min", "max")
_BOOLS = ("verbose", "strict", "check_finite", "log_rank_zero_only", "restore_best_weights")
_CHOICES = {"mode": MODES, "patience_unit": PATIENCE_UNITS, "min_delta_mode": MIN_DELTA_MODES}
_OPTIONAL_NUMBERS = ("stopping_threshold", "divergence_threshold", "baseline")


@dataclass(frozen=True)
class EarlyStoppingOptions:
    """The settings of one :class:`~ignite_speed.handlers.EarlyStopping` (Lightning 2.6's arguments, plus
    ``baseline``, ``restore_best_weights``, ``start_from_epoch``, ``patience_unit`` and ``min_delta_mode``).

    Built once and checked then: a bad value raises ``TypeError``/``ValueError`` naming the setting, the
    value and what is accepted; strings are lower-cased and numbers become ``int``/``float``. Frozen: a
    changed setting is a new object (``dataclasses.replace``, checked again).

    Args:
        monitor: metric name, read from the validation run's metrics (else ``trainer.state.metrics``).
        min_delta: smallest change that counts as an improvement (>= 0; the direction follows ``mode``).
        patience: how many checks (``patience_unit``) without improvement before stopping.
        verbose: log each check's outcome (and warn about a missing metric when ``strict=False``).
        mode: ``"min"`` (lower is better) or ``"max"``.
        strict: a missing monitor raises ``RuntimeError`` (``False``: the check is skipped).
        check_finite: stop when the monitor is NaN or infinite.
        stopping_threshold: stop as soon as the monitor is strictly better than this.
        divergence_threshold: stop as soon as the monitor is strictly worse than this.
        check_on_train_epoch_end: check at the end of the training epoch (``True``), after each validation
            run (``False``), or ``None``: Lightning's rule
            (:func:`~ignite_speed.handlers.early_stopping_rule.checks_at_epoch_end`).
        log_rank_zero_only: only rank 0 logs.
        baseline: stop when the monitor has not beaten this value within ``patience``.
        restore_best_weights: keep a CPU copy of the weights of the best check and load it back when
            training ends for any reason (the handler then needs the model).
        start_from_epoch: warm-up: in epochs ``< start_from_epoch`` (0-based) the best value is tracked
            but no stop is ever requested.
        patience_unit: ``"checks"`` (Lightning), ``"epochs"`` or ``"steps"`` (optimizer steps).
        min_delta_mode: ``"abs"`` or ``"rel"`` (``min_delta`` is a fraction of ``|best|``).
        _flag: how errors name a setting: ``"EarlyStopping"`` (``EarlyStopping: patience=-1 ...``) or a
            config flag (``"early_stopping"``: ``early_stopping['patience']=-1 ...``); not stored.
    """

    monitor: str
    _: KW_ONLY
    min_delta: float = 0.0
    patience: int = 3
    verbose: bool = False
    mode: str = "min"
    strict: bool = True
    check_finite: bool = True
    stopping_threshold: float | None = None
    divergence_threshold: float | None = None
    check_on_train_epoch_end: bool | None = None
    log_rank_zero_only: bool = False
    baseline: float | None = None
    restore_best_weights: bool = False
    start_from_epoch: int = 0
    patience_unit: str = "checks"
    min_delta_mode: str = "abs"
    _flag: InitVar[str] = "EarlyStopping"

    def __post_init__(self, _flag: str) -> None:
        for f in dataclasses.fields(self):
            name = f"{_flag}[{f.name!r}]" if _flag != "EarlyStopping" else f"EarlyStopping: {f.name}"
            object.__setattr__(self, f.name, _checked(f.name, getattr(self, f.name), name))

    def kwargs(self, keys: Iterable[str] | None = None) -> dict[str, Any]:
        """The settings as keyword arguments: all of them, or those named in ``keys``."""
        names = [f.name for f in dataclasses.fields(self)] if keys is None else list(keys)
        return {name: getattr(self, name) for name in names}


class EarlyStoppingSettings(TypedDict, total=False):
    """The keyword arguments of :class:`EarlyStoppingOptions`, for ``EarlyStopping(evaluator, **settings)``."""

    monitor: str
    min_delta: float
    patience: int
    verbose: bool
    mode: str
    strict: bool
    check_finite: bool
    stopping_threshold: float | None
    divergence_threshold: float | None
    check_on_train_epoch_end: bool | None
    log_rank_zero_only: bool
    baseline: float | None
    restore_best_weights: bool
    start_from_epoch: int
    patience_unit: str
    min_delta_mode: str


SETTING_NAMES = [f.name for f in dataclasses.fields(EarlyStoppingOptions)]


def early_stopping_options(settings: Mapping[str, Any], flag: str = "early_stopping") -> EarlyStoppingOptions:
    """The options of a mapping of keyword arguments (the ``early_stopping`` flag's dict, or the keyword
    arguments of ``EarlyStopping``, ``flag="EarlyStopping"``).

    An unknown key gets a did-you-mean suggestion; ``monitor`` is required; the values are checked by
    :class:`EarlyStoppingOptions`. Errors name the key as ``{flag}['key']``.
    """
    if not isinstance(settings, Mapping):
        raise TypeError(
            f"{flag}={format_value(settings)} has type {type_name(settings)}; accepted: a dict of "
            f"EarlyStopping keyword arguments"
        )
    for key in settings:
        if key not in SETTING_NAMES:
            name = f"{flag}[{key!r}]" if flag != "EarlyStopping" else f"EarlyStopping: {key}"
            raise ValueError(
                f"{name} is not an EarlyStopping argument{did_you_mean(str(key), SETTING_NAMES)} "
                f"(accepted keys: {', '.join(SETTING_NAMES)})"
            )
    if "monitor" not in settings:
        raise ValueError(f"{flag}['monitor'] is required: the name of the metric to watch, e.g. 'val_loss'")
    return EarlyStoppingOptions(**settings, _flag=flag)


def early_stopping_flag_options(value: Any) -> EarlyStoppingOptions | None:
    """The ``early_stopping`` flag: ``None`` (off) or a dict of EarlyStopping keyword arguments."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TypeError(
            f"early_stopping={format_value(value)} has type {type_name(value)}; accepted: None or a "
            f"dict of EarlyStopping keyword arguments (monitor, patience, mode, ...)"
        )
    return early_stopping_options(dict(value))


def validate_early_stopping_kwargs(kwargs: Mapping[str, Any], flag: str = "early_stopping") -> dict[str, Any]:
    """The given keyword arguments, checked and normalized (numbers as ``float``/``int``, strings
    lower-cased): :func:`early_stopping_options`, keeping only the keys given."""
    return early_stopping_options(kwargs, flag).kwargs(kwargs)


def _checked(key: str, value: Any, name: str) -> Any:
    """``value`` of setting ``key``, normalized, or an error naming ``name``, the value and what is accepted."""
    shown = f"{name}={format_value(value)}"
    if key == "monitor":
        if not isinstance(value, str) or not value:
            raise TypeError(f"{shown} is not a metric name; accepted: a non-empty str such as 'val_loss'")
        return value
    if key in _BOOLS:
        return check_bool(value, name)
    if key == "check_on_train_epoch_end":
        if value is not None and not isinstance(value, bool):
            raise TypeError(
                f"{shown} has type {type_name(value)}; accepted: None (decide from the "
                f"validation schedule), True or False"
            )
        return value
    if key in _CHOICES:
        if not isinstance(value, str) or value.lower() not in _CHOICES[key]:
            raise ValueError(f"{shown} is not known; accepted: {', '.join(repr(a) for a in _CHOICES[key])}")
        return value.lower()
    if key in ("patience", "start_from_epoch"):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{shown} has type {type_name(value)}; accepted: an int >= 0")
        if value < 0:
            extra = " (Lightning treats a negative patience like 0; write 0)" if key == "patience" else ""
            raise ValueError(f"{shown} is negative; accepted: an int >= 0{extra}")
        return int(value)
    if key == "min_delta":
        number = _finite_number(value, shown, "a finite number >= 0")
        if number < 0:
            raise ValueError(
                f"{shown} is negative; accepted: a finite number >= 0 (the sign follows mode; a "
                f"negative min_delta would count a worse value as an improvement, so training "
                f"would never stop)"
            )
        return number
    if key in _OPTIONAL_NUMBERS:
        return None if value is None else _finite_number(value, shown, "None or a finite number")
    raise AssertionError(key)  # pragma: no cover - every field of EarlyStoppingOptions is handled above


def _finite_number(value: Any, shown: str, accepted: str) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{shown} has type {type_name(value)}; accepted: {accepted}")
    if not math.isfinite(value):
        raise ValueError(f"{shown} is not finite; accepted: {accepted}")
    return float(value)
