"""Small checks shared by the flag validators: ints, bools, type names and did-you-mean suggestions.

Every message names the flag, the value and what is accepted (``{flag}={value} ...; accepted: ...``).
"""

from __future__ import annotations

import difflib
from typing import Any

from .durations import format_value

__all__ = ["type_name", "did_you_mean", "check_int", "check_bool"]


def type_name(value: Any) -> str:
    return type(value).__name__


def did_you_mean(key: str, known: list[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``known``, or ``""`` when none is close."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_int(value: Any, flag: str, *, minimum: int | None = None, allow_none: bool = False,
              accepted: str | None = None) -> int | None:
    """``value`` when it is an int (not a bool) >= ``minimum`` (or None, when ``allow_none``)."""
    accepted = accepted or (f"an int >= {minimum}" if minimum is not None else "an int")
    if value is None:
        if allow_none:
            return None
        raise TypeError(f"{flag}=None is not allowed; accepted: {accepted}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{flag}={format_value(value)} has type {type_name(value)}; accepted: {accepted}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{flag}={value!r} is out of range; accepted: {accepted}")
    return value


def check_bool(value: Any, flag: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{flag}={format_value(value)} has type {type_name(value)}; accepted: True or False")
    return value
