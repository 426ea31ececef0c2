"""``val_time_fraction``: validation takes at most this share of the training clock (ignite-speed's own flag).

The share is ``validation seconds / training-clock seconds``. The training clock is the one ``max_time``
counts: training and validation together, the sanity check not. The schedule's candidate points
(``val_check_interval``, ``check_val_every_n_epoch``) stay; a candidate validates only when the budget
allows it.

The budget is decided after each validation run, never per batch. :func:`batches_until_allowed` turns the
measured times into a number of training batches: the next validation may run at the first candidate at
or after that many more batches. Measured at that candidate, a validation as long as the predicted one
ends with the share at most ``fraction``. A count of batches is the same on every rank, so a distributed
run needs one small collective per validation run (the ranks take the latest of their counts: the budget
holds on every rank), and none at the candidates. The first validation run of a run always runs: nothing
has been measured yet.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["ValidationBudget", "batches_until_allowed", "PREDICTION_WINDOW"]

# a validation run is predicted to take as long as the longest of the last this many
PREDICTION_WINDOW = 3


def batches_until_allowed(
    fraction: float, elapsed: float, val_seconds: float, predicted: float, per_batch: float
) -> int:
    """Training batches to run before the next validation fits the budget (0: the next candidate may validate).

    Args:
        fraction: the budget, in (0, 1).
        elapsed: the training clock now (seconds, validation included).
        val_seconds: the validation time on that clock so far.
        predicted: the predicted duration of the next validation run.
        per_batch: the predicted training time of a batch (the clock's time outside validation).

    The next run may start once the clock reaches ``t`` with ``(val_seconds + predicted) / (t + predicted) <=
    fraction``, that is after ``t - elapsed`` more seconds of training.
    """
    needed = (val_seconds + predicted) / fraction - predicted - elapsed
    if needed <= 1e-12 * max(1.0, elapsed):  # (what rounding leaves of an exact fit)
        return 0
    if per_batch <= 0:
        return 1  # nothing to measure a batch by: look again at the next candidate
    return max(1, math.ceil(needed / per_batch))


class ValidationBudget:
    """The validation time budget of one :class:`~ignite_speed.handlers.ValidationSchedule`.

    Attributes:
        fraction: the most of the training clock that validation may take.
        next_at: the ``total_batches`` count from which a candidate may validate.
        val_seconds: the validation time of the run so far.
        runs: the validation runs of the run so far.
        skipped: the candidates the budget skipped.
        recent: the durations of the last :data:`PREDICTION_WINDOW` validation runs.
    """

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction
        self.reset()

    def reset(self) -> None:
        self.next_at, self.val_seconds, self.runs, self.skipped = 0, 0.0, 0, 0
        self.recent: list[float] = []
        self.last_end, self.last_batches = 0.0, 0  # where the previous validation run ended
        self.mark: tuple[float, int] | None = None  # the first agreement batch since then (clock, batches)

    def mark_batch(self, elapsed: float, total_batches: int) -> None:
        """An agreement batch (the first of a run, then about once a second): the first since the last
        validation run starts a measurement of the training time per batch without what came before it (the
        first batch of a run pays for warm-up and, distributed, for waiting on the other ranks)."""
        if self.mark is None:
            self.mark = (elapsed, total_batches)

    def allows(self, total_batches: int) -> bool:
        """Whether a candidate after training batch ``total_batches`` validates (counts a skipped one)."""
        if total_batches >= self.next_at:
            return True
        self.skipped += 1
        return False

    def record(self, seconds: float, elapsed: float, total_batches: int) -> int:
        """A validation run of ``seconds`` ended at ``elapsed`` on the training clock, after ``total_batches``
        batches: returns this rank's ``next_at`` (the schedule makes the ranks agree on the latest of theirs)."""
        per_batch = self.per_batch(elapsed - seconds, total_batches)
        self.val_seconds += seconds
        self.runs += 1
        self.recent = (self.recent + [seconds])[-PREDICTION_WINDOW:]
        self.last_end, self.last_batches, self.mark = elapsed, total_batches, None
        wait = batches_until_allowed(self.fraction, elapsed, self.val_seconds, max(self.recent), per_batch)
        self.next_at = total_batches + wait
        return self.next_at

    def per_batch(self, started: float, total_batches: int) -> float:
        """The training time per batch, for a validation run that started at ``started`` on the clock: the
        lowest of the means over the run, since the previous validation run and since the first agreement
        batch after it (a lower estimate waits more batches: the budget holds when batches get faster)."""
        means = []
        if total_batches > 0:
            means.append((started - self.val_seconds) / total_batches)
        if self.runs and total_batches > self.last_batches:
            means.append((started - self.last_end) / (total_batches - self.last_batches))
        if self.mark is not None and total_batches > self.mark[1]:
            means.append((started - self.mark[0]) / (total_batches - self.mark[1]))
        positive = [m for m in means if m > 0]
        return min(positive) if positive else 0.0

    def state_dict(self) -> dict[str, Any]:
        return {
            "next_at": self.next_at,
            "val_seconds": self.val_seconds,
            "runs": self.runs,
            "skipped": self.skipped,
            "recent": list(self.recent),
            "last_end": self.last_end,
            "last_batches": self.last_batches,
            "mark": None if self.mark is None else list(self.mark),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.next_at = int(state.get("next_at", 0))
        self.val_seconds = float(state.get("val_seconds", 0.0))
        self.runs, self.skipped = int(state.get("runs", 0)), int(state.get("skipped", 0))
        self.recent = [float(s) for s in state.get("recent") or []]
        self.last_end, self.last_batches = float(state.get("last_end", 0.0)), int(state.get("last_batches", 0))
        mark = state.get("mark")
        self.mark = None if mark is None else (float(mark[0]), int(mark[1]))
