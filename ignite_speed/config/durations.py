"""Typed durations and batch limits, parsed once.

Everything a flag can say about "how long" or "how many batches" becomes one of two small
types here, so the rest of the package never re-interprets raw user values:

* :class:`datetime.timedelta` for wall-clock durations (``max_time``, time-based
  ``val_check_interval``);
* :class:`BatchLimit` for ``limit_*_batches``, ``overfit_batches`` and batch-based
  ``val_check_interval``: either a *fraction* of a loader or a *count* of batches.
"""

from __future__ import annotations

import datetime
import math
import re
from dataclasses import dataclass, field
from typing import Any

from .checks import format_value, is_int, is_number

__all__ = ["BatchLimit", "parse_batch_limit", "parse_duration", "format_value"]

_DHMS = re.compile(r"(\d+):(\d\d):(\d\d):(\d\d)")
_TIMEDELTA_KEYS = ("weeks", "days", "hours", "minutes", "seconds", "milliseconds", "microseconds")


@dataclass(frozen=True)
class BatchLimit:
    """How many batches of a loader to use.

    ``kind`` is ``"fraction"`` (``value`` in ``[0.0, 1.0]``, truncated against the loader's length)
    or ``"count"`` (``value`` a non-negative int, capped at the loader's length). ``source`` names the
    flag the limit came from when another flag's place is taken (``overfit_batches`` and ``fast_dev_run``
    set the train and val limits), so that an error names the flag the user wrote; it takes no part in
    comparisons.
    """

    kind: str
    value: float | int
    source: str | None = field(default=None, compare=False)

    @classmethod
    def all(cls) -> BatchLimit:
        return cls("fraction", 1.0)

    @property
    def is_all(self) -> bool:
        return self.kind == "fraction" and self.value == 1.0

    @property
    def is_zero(self) -> bool:
        return self.value == 0

    def resolve(self, length: int | None, flag: str) -> int | None:
        """Number of batches to take from a loader of ``length`` batches (``None``: unknown length).

        Returns ``None`` for "the whole loader, length unknown". Raises ``ValueError`` naming ``flag``
        when a fraction cannot be applied (unknown length) or truncates to zero batches.
        """
        name = flag
        shown = f"{flag}={self.value!r}"
        if self.source is not None and self.source != flag:
            name = self.source
            shown = f"{self.source}={self.value!r} (the {flag} it sets)"
        if length == 0:
            return 0
        if self.kind == "count":
            return int(self.value) if length is None else min(length, int(self.value))
        if length is None:
            if self.value == 1.0:
                return None
            if self.value == 0.0:
                return 0
            raise ValueError(
                f"{shown} is a fraction, but the loader has no length (an IterableDataset or a "
                f"generator); accepted here: an int number of batches, 0, or 1.0 for all of it"
            )
        n = int(length * self.value)
        if n == 0 and self.value > 0:
            raise ValueError(
                f"{shown} of a loader with {length} batches is {length * self.value:.3g} < 1 batch; "
                f"use at least {name}={1.0 / length:.4g} or an int number of batches"
            )
        return n

    def __repr__(self) -> str:
        return f"BatchLimit({self.kind}={self.value!r})"


def parse_batch_limit(value: Any, flag: str, *, default: BatchLimit | None = None) -> BatchLimit:
    """Parse a Lightning-style batch limit (``limit_*_batches``, ``overfit_batches``, ``val_check_interval``).

    * ``None`` gives ``default`` (all batches unless given);
    * a float in ``[0.0, 1.0]`` is a fraction; an int in ``[0, 1]`` is a count (``1`` means one batch);
    * an int, or a float with an integral value, above 1 is a count of batches;
    * anything else (negative, ``1.5``, NaN, bool, str) is refused.
    """
    if value is None:
        return default if default is not None else BatchLimit.all()
    if isinstance(value, BatchLimit):
        return value
    if isinstance(value, bool) or not is_number(value):
        raise TypeError(
            f"{flag}={format_value(value)} has type {type(value).__name__}; accepted: a float in [0.0, 1.0] "
            f"(fraction of the loader) or an int >= 0 (number of batches)"
        )
    if is_int(value):
        if value < 0:
            raise ValueError(f"{flag}={value!r} is negative; accepted: a float in [0.0, 1.0] or an int >= 0")
        return BatchLimit("count", int(value))
    value = float(value)  # (numpy and other real scalars too)
    if not math.isfinite(value):
        raise ValueError(f"{flag}={value!r} is not finite; accepted: a float in [0.0, 1.0] or an int >= 0")
    if 0.0 <= value <= 1.0:
        return BatchLimit("fraction", float(value))
    if value > 1.0 and value.is_integer():
        return BatchLimit("count", int(value))
    raise ValueError(
        f"{flag}={value!r} is neither a fraction in [0.0, 1.0] nor a whole number of batches; "
        f"accepted: a float in [0.0, 1.0] or an int >= 0"
    )


def parse_duration(value: Any, flag: str) -> datetime.timedelta | None:
    """Parse a wall-clock duration: ``"DD:HH:MM:SS"`` (any number of day digits), a dict of
    :class:`~datetime.timedelta` keyword arguments, a ``timedelta``, or plain seconds (int/float).
    ``None`` means "no duration"."""
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        td = value
    elif isinstance(value, str):
        match = _DHMS.fullmatch(value.strip())
        if match is None:
            raise ValueError(
                f'{flag}={value!r} is not in the form "DD:HH:MM:SS" (e.g. "00:12:00:00" for 12 hours, with two '
                f"digits each for hours, minutes and seconds); also accepted: a dict such as "
                f'{{"hours": 12}}, a datetime.timedelta, or a number of seconds'
            )
        days, hours, minutes, seconds = (int(g) for g in match.groups())
        td = datetime.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    elif isinstance(value, dict):
        unknown = sorted(set(map(str, value)) - set(_TIMEDELTA_KEYS))
        if unknown:
            raise ValueError(
                f"{flag}={format_value(value)} has unknown key(s) {unknown}; accepted keys: {list(_TIMEDELTA_KEYS)}"
            )
        for key, part in value.items():
            if isinstance(part, bool) or not is_number(part) or not math.isfinite(part):
                raise TypeError(f"{flag}[{key!r}]={format_value(part)} must be a finite number")
        td = datetime.timedelta(**{key: float(part) for key, part in value.items()})
    elif is_number(value):
        if not math.isfinite(value):
            raise ValueError(f"{flag}={value!r} is not a finite number of seconds")
        td = datetime.timedelta(seconds=float(value))
    else:
        raise TypeError(
            f'{flag}={format_value(value)} has type {type(value).__name__}; accepted: "DD:HH:MM:SS", a dict of '
            f"timedelta keyword arguments, a datetime.timedelta, or a number of seconds"
        )
    if td < datetime.timedelta(0):
        raise ValueError(f"{flag}={format_value(value)} is a negative duration; accepted: a duration >= 0")
    return td
