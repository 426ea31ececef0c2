"""Per-flag validators for precision and the optimizer step: ``precision`` (Lightning 1.x spellings mapped),
``amp_backend``/``amp_level``, ``accumulate_grad_batches`` and gradient clipping."""

from __future__ import annotations

import warnings
from typing import Any

from .checks import check_int, check_number, type_name
from .durations import format_value

__all__ = [
    "PRECISION_VALUES",
    "parse_precision",
    "validate_amp_flags",
    "validate_accumulate_grad_batches",
    "validate_gradient_clip_val",
    "validate_gradient_clip_algorithm",
]

PRECISION_VALUES = ("64-true", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true")
_PRECISION_ALIASES: dict[Any, str] = {64: "64-true", "64": "64-true", 32: "32-true", "32": "32-true"}
_PRECISION_LEGACY: dict[Any, str] = {16: "16-mixed", "16": "16-mixed", "bf16": "bf16-mixed"}
_AMP_LEVELS = ("O0", "O1", "O2", "O3")


def parse_precision(value: Any) -> str:
    """Canonical Lightning 2.x precision string for ``value`` (legacy aliases mapped, with a warning).

    The warning's ``stacklevel`` points at the caller of ``SpeedConfig(...)``: call this directly from the
    method that ``SpeedConfig.__init__`` calls.
    """
    flag = "precision"
    if value is None:
        return "32-true"
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        if isinstance(value, float) and value.is_integer() and int(value) in (16, 32, 64):
            raise TypeError(
                f"precision={value!r} is a float; write it as the int {int(value)} or as the string "
                f'"{int(value)}-..." form; accepted: {list(PRECISION_VALUES)} or the legacy 16, 32, 64, "bf16"'
            )
        raise TypeError(
            f"precision={format_value(value)} has type {type_name(value)}; "
            f'accepted: {list(PRECISION_VALUES)} or the legacy 16, 32, 64, "16", "32", "64", "bf16"'
        )
    if value in PRECISION_VALUES:
        return str(value)
    if value in _PRECISION_ALIASES:
        return _PRECISION_ALIASES[value]
    if value in _PRECISION_LEGACY:
        canonical = _PRECISION_LEGACY[value]
        warnings.warn(
            f"precision={value!r} is a legacy spelling; using precision={canonical!r}", UserWarning, stacklevel=4
        )
        return canonical
    raise ValueError(
        f"{flag}={value!r} is not a known precision; accepted: {list(PRECISION_VALUES)} "
        f'or the legacy 16, 32, 64, "16", "32", "64", "bf16"'
    )


def validate_amp_flags(amp_backend: Any, amp_level: Any, precision: str) -> None:
    """``amp_backend`` and ``amp_level`` (Lightning 1.x), against the parsed ``precision``: apex is
    16-bit mixed precision only, and ``amp_level`` is apex's."""
    if amp_backend not in ("native", "apex"):
        raise ValueError(f"amp_backend={format_value(amp_backend)} is not known; accepted: 'native' or 'apex'")
    if amp_level is not None:
        if amp_backend != "apex":
            raise ValueError(f"amp_level={amp_level!r} only applies with amp_backend='apex'")
        if amp_level not in _AMP_LEVELS:
            raise ValueError(f"amp_level={format_value(amp_level)} is not known; accepted: 'O0', 'O1', 'O2', 'O3'")
    if amp_backend == "apex" and precision not in ("16-mixed",):
        raise ValueError(f"amp_backend='apex' needs precision=16 (\"16-mixed\"), got precision={precision!r}")


def validate_accumulate_grad_batches(value: Any) -> int:
    accumulate = check_int(value, "accumulate_grad_batches", minimum=1)
    assert accumulate is not None  # None is refused without allow_none
    return accumulate


def validate_gradient_clip_val(value: Any) -> float | None:
    if value is None:
        return None
    return float(check_number(value, "gradient_clip_val", minimum=0, accepted="None or a finite number >= 0"))


def validate_gradient_clip_algorithm(value: Any) -> str:
    """``"norm"`` (also for ``None``) or ``"value"``."""
    algorithm = "norm" if value is None else value
    if algorithm not in ("norm", "value"):
        raise ValueError(f"gradient_clip_algorithm={format_value(algorithm)} is not known; accepted: 'norm' or 'value'")
    return algorithm
