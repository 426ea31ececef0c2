"""Early stopping's rule as pure functions: one check's decision (:func:`decide`), the criteria it applies,
and Lightning's default for when checks run. No engine, no collective: the handler
(:class:`~ignite_speed.handlers.early_stopping.EarlyStopping`) reads the monitor and reports the decision."""

from __future__ import annotations

import datetime
import enum
import math
import numbers
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from ..config.durations import BatchLimit, format_value

__all__ = ["EarlyStoppingReason", "STOP_REASONS", "Criteria", "Decision", "decide",
           "resolve_check_on_train_epoch_end", "to_float", "is_number"]


class EarlyStoppingReason(enum.Enum):
    """Why early stopping asked to stop (Lightning's names and numbers; ``BASELINE_NOT_MET`` is ours)."""

    NOT_STOPPED = 0
    STOPPING_THRESHOLD = 1
    DIVERGENCE_THRESHOLD = 2
    PATIENCE_EXHAUSTED = 3
    NON_FINITE_METRIC = 4
    BASELINE_NOT_MET = 5


# The reasons a check can stop for, in the order the checks are tried. When ranks stop for different
# reasons at the same check, every rank records the reason (and message) of the lowest stopping rank.
STOP_REASONS = (
    EarlyStoppingReason.NON_FINITE_METRIC,
    EarlyStoppingReason.STOPPING_THRESHOLD,
    EarlyStoppingReason.DIVERGENCE_THRESHOLD,
    EarlyStoppingReason.BASELINE_NOT_MET,
    EarlyStoppingReason.PATIENCE_EXHAUSTED,
)


def is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)




@dataclass(frozen=True)
class Criteria:
    """The rules of one :class:`EarlyStopping` (validated values)."""

    monitor: str
    mode: str = "min"
    min_delta: float = 0.0
    min_delta_mode: str = "abs"
    patience: int = 3
    patience_unit: str = "checks"
    check_finite: bool = True
    stopping_threshold: float | None = None
    divergence_threshold: float | None = None
    baseline: float | None = None

    def better(self, value: float, reference: float) -> bool:
        """``value`` improves on ``reference`` by more than ``min_delta`` (strict; NaN never improves)."""
        margin = self.min_delta
        if self.min_delta_mode == "rel":
            margin = self.min_delta * abs(reference) if math.isfinite(reference) else 0.0
        if self.mode == "min":
            return value < reference - margin
        return value > reference + margin

    def beyond(self, value: float, threshold: float, *, worse: bool) -> bool:
        """``value`` is strictly better (or, with ``worse``, strictly worse) than ``threshold``."""
        below = value < threshold
        above = value > threshold
        if self.mode == "min":
            return above if worse else below
        return below if worse else above


class Decision(NamedTuple):
    """What one check decided (locally, before the ranks agree)."""

    should_stop: bool
    reason: EarlyStoppingReason
    message: str
    best_score: float
    wait_count: int
    since: int  # position (in patience units) of the last check that reset the patience
    improved: bool  # best_score changed


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def decide(current: float, *, best: float, wait: int, since: int, position: int, criteria: Criteria,
           warmup: bool = False) -> Decision:
    """The decision of one early-stopping check, as a pure function.

    Args:
        current: the monitored value.
        best: best value so far (``+inf`` / ``-inf`` before the first one).
        wait: checks (or epochs, steps: see ``criteria.patience_unit``) without improvement so far.
        since: position of the check that last reset the patience (0 at the start).
        position: where this check happens, in patience units (the check number, ``epoch + 1`` or
            ``global_step``); only used when ``patience_unit`` is not ``"checks"``.
        criteria: the rules.
        warmup: inside ``start_from_epoch``: the best value is tracked, nothing else happens.

    The branches, first match wins: warm-up; non-finite value (``check_finite``); stopping threshold;
    divergence threshold; improvement (by more than ``min_delta``, which also has to beat ``baseline``
    to reset the patience); otherwise the patience grows and stops at ``wait >= patience``.
    """
    c = criteria
    name = c.monitor
    # Each message starts with Lightning 2.6's phrase for the same outcome (EarlyStopping.
    # _evaluate_stopping_criteria / _improvement_message); what follows the phrase is ignite-speed's detail.
    better_op, worse_op = ("<", ">") if c.mode == "min" else (">", "<")
    # Lightning counts patience in "records" (checks); patience_unit="epochs"/"steps" counts those instead
    records = "records" if c.patience_unit == "checks" else c.patience_unit
    if warmup:
        improved = math.isfinite(current) and c.better(current, best)
        new_best = current if improved else best
        return Decision(False, EarlyStoppingReason.NOT_STOPPED,
                        f"Metric {name} = {_fmt(current)} during warm-up (start_from_epoch). Best score so far: "
                        f"{_fmt(new_best)}", new_best, 0, position, improved)
    if c.check_finite and not math.isfinite(current):
        return Decision(True, EarlyStoppingReason.NON_FINITE_METRIC,
                        f"Monitored metric {name} = {_fmt(current)} is not finite. Previous best value was "
                        f"{_fmt(best)}; stopping", best, wait, since, False)
    if c.stopping_threshold is not None and c.beyond(current, c.stopping_threshold, worse=False):
        return Decision(True, EarlyStoppingReason.STOPPING_THRESHOLD,
                        f"Stopping threshold reached: {name} = {_fmt(current)} {better_op} "
                        f"stopping_threshold={_fmt(c.stopping_threshold)}; stopping", best, wait, since, False)
    if c.divergence_threshold is not None and c.beyond(current, c.divergence_threshold, worse=True):
        return Decision(True, EarlyStoppingReason.DIVERGENCE_THRESHOLD,
                        f"Divergence threshold reached: {name} = {_fmt(current)} {worse_op} "
                        f"divergence_threshold={_fmt(c.divergence_threshold)}; stopping", best, wait, since, False)
    improved = c.better(current, best)
    if improved:
        previous, best = best, current
        if c.baseline is None or c.better(current, c.baseline):
            if math.isfinite(previous):
                relative = " x |best|" if c.min_delta_mode == "rel" else ""
                message = (f"Metric {name} improved by {_fmt(abs(previous - current))} > min_delta = "
                           f"{_fmt(c.min_delta)}{relative}. New best score: {_fmt(current)}")
            else:
                message = f"Metric {name} improved. New best score: {_fmt(current)}"
            return Decision(False, EarlyStoppingReason.NOT_STOPPED, message, best, 0, position, True)
    wait = wait + 1 if c.patience_unit == "checks" else position - since
    if wait < c.patience:
        return Decision(False, EarlyStoppingReason.NOT_STOPPED,
                        f"Metric {name} = {_fmt(current)} did not improve: {wait} of patience {c.patience} "
                        f"{records} without improvement. Best score: {_fmt(best)}", best, wait, since, improved)
    if c.baseline is not None and not c.better(best, c.baseline):
        return Decision(True, EarlyStoppingReason.BASELINE_NOT_MET,
                        f"Monitored metric {name} did not beat baseline={_fmt(c.baseline)} in the last {wait} "
                        f"{records}. Best score: {_fmt(best)}; stopping", best, wait, since, improved)
    return Decision(True, EarlyStoppingReason.PATIENCE_EXHAUSTED,
                    f"Monitored metric {name} did not improve in the last {wait} {records}. Best score: "
                    f"{_fmt(best)} (patience {c.patience}); stopping", best, wait, since, improved)


def resolve_check_on_train_epoch_end(val_check_interval: Any, check_val_every_n_epoch: int | None) -> bool:
    """Lightning's default for ``check_on_train_epoch_end=None``: check at the end of the training epoch
    when validation runs exactly once per epoch, every epoch (``val_check_interval == 1.0`` and
    ``check_val_every_n_epoch == 1``; an int ``val_check_interval=1`` also equals 1.0, as in Lightning).

    A time-based ``val_check_interval`` (a :class:`datetime.timedelta`) checks at validation end
    (Lightning 2.6 raises ``AttributeError`` there).
    """
    if check_val_every_n_epoch != 1 or isinstance(val_check_interval, datetime.timedelta):
        return False
    if val_check_interval is None:
        return True
    if isinstance(val_check_interval, BatchLimit):
        return val_check_interval.value == 1
    return is_number(val_check_interval) and val_check_interval == 1




def to_float(value: Any, monitor: str) -> float:
    """A scalar monitored value as a Python float (a 1-element tensor or array is squeezed)."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"EarlyStopping(monitor={monitor!r}) needs a scalar, but the metric is a tensor of "
                             f"shape {tuple(value.shape)}; reduce it to one number (e.g. with .mean())")
        return float(value.detach().reshape(()).item())
    if isinstance(value, bool):
        raise TypeError(f"EarlyStopping(monitor={monitor!r}) needs a number, got the bool {value!r}")
    if isinstance(value, numbers.Real):
        return float(value)
    size = getattr(value, "size", None)
    if isinstance(size, int) and hasattr(value, "item"):  # numpy scalars and arrays
        if size != 1:
            raise ValueError(f"EarlyStopping(monitor={monitor!r}) needs a scalar, but the metric has {size} "
                             f"elements; reduce it to one number")
        return float(value.item())
    raise TypeError(f"EarlyStopping(monitor={monitor!r}) needs a number or a 1-element tensor, got "
                    f"{type(value).__name__}: {format_value(value)}")
