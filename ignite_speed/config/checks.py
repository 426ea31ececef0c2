"""Small checks shared by the flag validators: ints, bools, type names and did-you-mean suggestions.

Every message names the flag, the value and what is accepted (``{flag}={value} ...; accepted: ...``).
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Iterable
from typing import Any

__all__ = [
    "format_value",
    "type_name",
    "closest",
    "did_you_mean",
    "is_int",
    "is_number",
    "check_int",
    "check_bool",
    "check_number",
]


def format_value(value: Any) -> str:
    """``repr`` that stays short for long values (used in error messages)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def type_name(value: Any) -> str:
    return type(value).__name__


def closest(key: str, known: Iterable[str]) -> str | None:
    """The one of ``known`` closest to ``key`` (difflib, ratio >= 0.6), or None: every did-you-mean of the
    package (flags, early-stopping keys, signal names, the demo's options) comes from here."""
    close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(key: str, known: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``known``, or ``""`` when none is close."""
    match = closest(key, known)
    return f"; did you mean {match!r}?" if match is not None else ""


def is_int(value: Any) -> bool:
    """An integer that is not a bool (Python's or numpy's: anything ``numbers.Integral``)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A real number that is not a bool (int, float, numpy scalars: anything ``numbers.Real``)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(
    value: Any, flag: str, *, minimum: int | None = None, allow_none: bool = False, accepted: str | None = None
) -> int | None:
    """``value`` as an ``int`` when it is an integer (:func:`is_int`) >= ``minimum`` (or None, when
    ``allow_none``)."""
    accepted = accepted or (f"an int >= {minimum}" if minimum is not None else "an int")
    if value is None:
        if allow_none:
            return None
        raise TypeError(f"{flag}=None is not allowed; accepted: {accepted}")
    if not is_int(value):
        raise TypeError(f"{flag}={format_value(value)} has type {type_name(value)}; accepted: {accepted}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{flag}={value!r} is out of range; accepted: {accepted}")
    return int(value)


def check_number(value: Any, flag: str, *, minimum: float | None = None, accepted: str | None = None) -> float:
    """``value`` when it is a finite real number (:func:`is_number`) >= ``minimum``."""
    accepted = accepted or ("a finite number" + (f" >= {minimum}" if minimum is not None else ""))
    if not is_number(value):
        raise TypeError(f"{flag}={format_value(value)} has type {type_name(value)}; accepted: {accepted}")
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        raise ValueError(f"{flag}={value!r} is out of range; accepted: {accepted}")
    return value


def check_bool(value: Any, flag: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{flag}={format_value(value)} has type {type_name(value)}; accepted: True or False")
    return value
