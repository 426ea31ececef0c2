"""Count limits with their unit: one type for ``max_epochs`` and ``max_steps`` wherever they are resolved
(the flags' effective values, one run's limits), and one spelling of "no limit", :data:`UNLIMITED`.

A :class:`Limit` is an ``int`` (the flag's value, so it prints, compares and saves as Lightning writes it)
that knows its unit and answers the questions the loop asks: is it unlimited, is a count at it, and the
count as a number that an unlimited limit never reaches (``bound``, ``math.inf``).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["UNLIMITED", "Limit", "EPOCHS", "STEPS"]

UNLIMITED = -1  # Lightning's spelling of "no limit" for max_epochs and max_steps
EPOCHS, STEPS = "epochs", "steps"


class Limit(int):
    """A limit on a count of ``unit`` (:data:`EPOCHS` or :data:`STEPS`); :data:`UNLIMITED` (-1) is none."""

    unit: str

    def __new__(cls, value: int, unit: str) -> Limit:
        if value < UNLIMITED:
            raise ValueError(f"a limit of {unit} is >= 0 or {UNLIMITED} (no limit), not {value}")
        limit = super().__new__(cls, value)
        limit.unit = unit
        return limit

    @property
    def unlimited(self) -> bool:
        return int(self) == UNLIMITED

    @property
    def bound(self) -> float:
        """The count at which the limit is reached (``math.inf`` when unlimited)."""
        return math.inf if self.unlimited else int(self)

    def reached(self, count: int) -> bool:
        return not self.unlimited and count >= int(self)

    def __repr__(self) -> str:
        return f"Limit({int(self)}, {self.unit!r})"

    def __str__(self) -> str:  # as the flag is written: max_epochs=3
        return str(int(self))

    def __format__(self, spec: str) -> str:
        return format(int(self), spec)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Limit, (int(self), self.unit))
