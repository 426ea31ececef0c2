"""``val_time_fraction``: validation takes at most this share of the training clock (ignite-speed's own flag).

The share is ``validation seconds / training-clock seconds``. The training clock is the one ``max_time``
counts: training and validation together, the sanity check not. The schedule's candidate points
(``val_check_interval``, ``check_val_every_n_epoch``) stay; a candidate validates only when the budget
allows it.

The budget is decided after each validation run, never per batch. :func:`batches_until_allowed` turns the
measured times into a number of training batches: the next validation may run at the first candidate at
or after that many more batches. Measured at that candidate, a validation as long as the predicted one
ends with the share at most ``fraction``. A count of batches is the same on every rank, so a distributed
run needs one small collective per validation run (rank 0's measurements decide), and none at the
candidates. The first validation run of a run always runs: nothing has been measured yet.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["ValidationBudget", "batches_until_allowed", "PREDICTION_WINDOW"]

# a validation run is predicted to take as long as the longest of the last this many
PREDICTION_WINDOW = 3


def batches_until_allowed(fraction: float, elapsed: float, val_seconds: float, batches: int,
                          predicted: float) -> int:
    """Training batches to run before the next validation fits the budget (0: the next candidate may validate).

    Args:
        fraction: the budget, in (0, 1).
        elapsed: the training clock now (seconds, validation included).
        val_seconds: the validation time on that clock so far.
        batches: the training batches behind ``elapsed``.
        predicted: the predicted duration of the next validation run.

    The next run may start once the clock reaches ``t`` with ``(val_seconds + predicted) / (t + predicted) <=
    fraction``; the training time to get there is divided by the mean training time per batch so far.
    """
    needed = (val_seconds + predicted) / fraction - predicted - elapsed
    if needed <= 0:
        return 0
    per_batch = (elapsed - val_seconds) / batches if batches > 0 else 0.0
    if per_batch <= 0:
        return 1  # nothing to measure a batch by: look again at the next candidate
    return max(1, math.ceil(needed / per_batch - 1e-9))


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

    def allows(self, total_batches: int) -> bool:
        """Whether a candidate after training batch ``total_batches`` validates (counts a skipped one)."""
        if total_batches >= self.next_at:
            return True
        self.skipped += 1
        return False

    def record(self, seconds: float, elapsed: float, total_batches: int) -> int:
        """A validation run of ``seconds`` ended at ``elapsed`` on the training clock, after ``total_batches``
        batches: returns this rank's ``next_at`` (the caller makes the ranks agree on rank 0's)."""
        self.val_seconds += seconds
        self.runs += 1
        self.recent = (self.recent + [seconds])[-PREDICTION_WINDOW:]
        wait = batches_until_allowed(self.fraction, elapsed, self.val_seconds, total_batches, max(self.recent))
        self.next_at = total_batches + wait
        return self.next_at

    def share(self, elapsed: float) -> float:
        """Validation's share of ``elapsed`` seconds of training clock."""
        return self.val_seconds / elapsed if elapsed > 0 else 0.0

    def state_dict(self) -> dict[str, Any]:
        return {"next_at": self.next_at, "val_seconds": self.val_seconds, "runs": self.runs,
                "skipped": self.skipped, "recent": list(self.recent)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.next_at = int(state.get("next_at", 0))
        self.val_seconds = float(state.get("val_seconds", 0.0))
        self.runs, self.skipped = int(state.get("runs", 0)), int(state.get("skipped", 0))
        self.recent = [float(s) for s in state.get("recent") or []]
