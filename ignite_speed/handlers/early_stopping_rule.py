"""Early stopping's rule as pure functions: one check's decision (:func:`decide`, Lightning's
``_evaluate_stopping_criteria``: ``(should_stop, reason)`` first) and where the checks of a run happen
(:func:`checks_at_epoch_end`). No engine, no collective: the handler
(:class:`~ignite_speed.handlers.early_stopping.EarlyStopping`) reads the monitor and reports the decision."""

from __future__ import annotations

import datetime
import enum
import math
import numbers
from typing import Any, NamedTuple

import torch

from ..config.durations import BatchLimit, format_value
from ..config.early_stopping import EarlyStoppingOptions

__all__ = [
    "EarlyStoppingReason",
    "STOP_REASONS",
    "Decision",
    "decide",
    "ValidationCadence",
    "checks_at_epoch_end",
    "to_float",
]


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


class Decision(NamedTuple):
    """What one check decided (locally, before the ranks agree)."""

    should_stop: bool
    reason: EarlyStoppingReason
    message: str
    best_score: float
    wait_count: int
    since: int  # position (in patience units) of the last check that reset the patience
    improved: bool  # best_score changed


def _better(o: EarlyStoppingOptions, value: float, reference: float) -> bool:
    """``value`` improves on ``reference`` by more than ``min_delta`` (strict; NaN never improves)."""
    margin = o.min_delta
    if o.min_delta_mode == "rel":
        margin = o.min_delta * abs(reference) if math.isfinite(reference) else 0.0
    return value < reference - margin if o.mode == "min" else value > reference + margin


def _beyond(o: EarlyStoppingOptions, value: float, threshold: float, *, worse: bool) -> bool:
    """``value`` is strictly better (or, with ``worse``, strictly worse) than ``threshold``."""
    lower_is_better = (o.mode == "min") != worse
    return value < threshold if lower_is_better else value > threshold


def _fmt(value: float) -> str:
    return f"{value:.6g}"


# Each message starts with Lightning 2.6's phrase for the same outcome (EarlyStopping.
# _evaluate_stopping_criteria / _improvement_message); what follows the phrase is ignite-speed's detail.


def _stop(reason: EarlyStoppingReason, message: str, best: float, wait: int, since: int, improved: bool) -> Decision:
    """A decision to stop for ``reason``."""
    return Decision(True, reason, message, best, wait, since, improved)


def _keep_going(message: str, best: float, wait: int, since: int, improved: bool) -> Decision:
    """A decision not to stop."""
    return Decision(False, EarlyStoppingReason.NOT_STOPPED, message, best, wait, since, improved)


def _records(o: EarlyStoppingOptions) -> str:
    """What patience counts, for the messages: Lightning's "records" (checks), or epochs / steps."""
    return "records" if o.patience_unit == "checks" else o.patience_unit


def _stop_before_improvement(
    o: EarlyStoppingOptions, current: float, best: float, wait: int, since: int
) -> Decision | None:
    """The stops that do not look at improvement, first match wins: a non-finite value (``check_finite``),
    the stopping threshold, the divergence threshold; ``None`` when none applies."""
    name = o.monitor
    better_op, worse_op = ("<", ">") if o.mode == "min" else (">", "<")
    if o.check_finite and not math.isfinite(current):
        message = (
            f"Monitored metric {name} = {_fmt(current)} is not finite. Previous best value was {_fmt(best)}; stopping"
        )
        return _stop(EarlyStoppingReason.NON_FINITE_METRIC, message, best, wait, since, False)
    if o.stopping_threshold is not None and _beyond(o, current, o.stopping_threshold, worse=False):
        message = (
            f"Stopping threshold reached: {name} = {_fmt(current)} {better_op} "
            f"stopping_threshold={_fmt(o.stopping_threshold)}; stopping"
        )
        return _stop(EarlyStoppingReason.STOPPING_THRESHOLD, message, best, wait, since, False)
    if o.divergence_threshold is not None and _beyond(o, current, o.divergence_threshold, worse=True):
        message = (
            f"Divergence threshold reached: {name} = {_fmt(current)} {worse_op} "
            f"divergence_threshold={_fmt(o.divergence_threshold)}; stopping"
        )
        return _stop(EarlyStoppingReason.DIVERGENCE_THRESHOLD, message, best, wait, since, False)
    return None


def _improvement_message(o: EarlyStoppingOptions, previous: float, current: float) -> str:
    """The message of an improvement that resets the patience (the first finite value: no margin to tell)."""
    if not math.isfinite(previous):
        return f"Metric {o.monitor} improved. New best score: {_fmt(current)}"
    relative = " x |best|" if o.min_delta_mode == "rel" else ""
    return (
        f"Metric {o.monitor} improved by {_fmt(abs(previous - current))} > min_delta = "
        f"{_fmt(o.min_delta)}{relative}. New best score: {_fmt(current)}"
    )


def _patience_decision(
    o: EarlyStoppingOptions, current: float, best: float, wait: int, since: int, improved: bool
) -> Decision:
    """No improvement that resets the patience (``wait`` already counts this check): go on while
    ``wait < patience``, else stop, for the baseline when the best value never beat it."""
    name, records = o.monitor, _records(o)
    if wait < o.patience:
        message = (
            f"Metric {name} = {_fmt(current)} did not improve: {wait} of patience {o.patience} "
            f"{records} without improvement. Best score: {_fmt(best)}"
        )
        return _keep_going(message, best, wait, since, improved)
    if o.baseline is not None and not _better(o, best, o.baseline):
        message = (
            f"Monitored metric {name} did not beat baseline={_fmt(o.baseline)} in the last {wait} "
            f"{records}. Best score: {_fmt(best)}; stopping"
        )
        return _stop(EarlyStoppingReason.BASELINE_NOT_MET, message, best, wait, since, improved)
    message = (
        f"Monitored metric {name} did not improve in the last {wait} {records}. Best score: "
        f"{_fmt(best)} (patience {o.patience}); stopping"
    )
    return _stop(EarlyStoppingReason.PATIENCE_EXHAUSTED, message, best, wait, since, improved)


def decide(
    current: float,
    *,
    best: float,
    wait: int,
    since: int,
    position: int,
    options: EarlyStoppingOptions,
    warmup: bool = False,
) -> Decision:
    """The decision of one early-stopping check, as a pure function.

    Args:
        current: the monitored value.
        best: best value so far (``+inf`` / ``-inf`` before the first one).
        wait: checks (or epochs, steps: see ``options.patience_unit``) without improvement so far.
        since: position of the check that last reset the patience (0 at the start).
        position: where this check happens, in patience units (the check number, ``epoch + 1`` or
            ``global_step``); only used when ``patience_unit`` is not ``"checks"``.
        options: the rules.
        warmup: inside ``start_from_epoch``: the best value is tracked, nothing else happens.

    The branches, first match wins: warm-up; non-finite value (``check_finite``); stopping threshold;
    divergence threshold; improvement (by more than ``min_delta``, which also has to beat ``baseline``
    to reset the patience); otherwise the patience grows and stops at ``wait >= patience``.
    """
    o = options
    if warmup:
        improved = math.isfinite(current) and _better(o, current, best)
        new_best = current if improved else best
        message = f"Metric {o.monitor} = {_fmt(current)} during warm-up (start_from_epoch). Best score so far: {_fmt(new_best)}"
        return _keep_going(message, new_best, 0, position, improved)
    stop = _stop_before_improvement(o, current, best, wait, since)
    if stop is not None:
        return stop
    improved = _better(o, current, best)
    if improved:
        previous, best = best, current
        if o.baseline is None or _better(o, current, o.baseline):
            return _keep_going(_improvement_message(o, previous, current), best, 0, position, True)
    wait = wait + 1 if o.patience_unit == "checks" else position - since
    return _patience_decision(o, current, best, wait, since, improved)


class ValidationCadence(NamedTuple):
    """What the placement rule reads of the validation schedule that governs a run."""

    val_check_interval: Any = None  # BatchLimit, a number, a datetime.timedelta, or None (1.0)
    check_val_every_n_epoch: int | None = 1
    budgeted: bool = False  # under val_time_fraction: some points of the schedule do not validate


def checks_at_epoch_end(
    check_on_train_epoch_end: bool | None, schedule: ValidationCadence | None, *, has_evaluator: bool = True
) -> bool:
    """Where the checks of a run happen: at the end of each training epoch (``True``) or after each
    validation run (``False``). The one placement rule, resolved at the start of each run.

    An explicit ``check_on_train_epoch_end`` is kept. ``None`` follows Lightning's rule under a validation
    ``schedule``: at epoch end exactly when validation runs once at the end of every epoch
    (``val_check_interval`` 1.0 or the int 1, ``check_val_every_n_epoch`` 1); at validation end under a
    time-based interval (Lightning 2.6 raises ``AttributeError`` there) or a ``val_time_fraction`` budget
    (patience then counts the validation runs that happen). Without a schedule the app runs the evaluator
    itself: ``None`` checks at its validation ends, or at epoch ends when there is no evaluator (a metric
    of the trainer).
    """
    if schedule is None:
        on_epoch_end = not has_evaluator if check_on_train_epoch_end is None else check_on_train_epoch_end
        if not has_evaluator and not on_epoch_end:
            raise ValueError(
                "EarlyStopping(evaluator=None, check_on_train_epoch_end=False): without an evaluator "
                "or a ValidationSchedule there is no validation end to check at; pass the evaluator "
                "or use check_on_train_epoch_end=True with a trainer metric"
            )
        return on_epoch_end
    if check_on_train_epoch_end is not None:
        return check_on_train_epoch_end
    interval = schedule.val_check_interval
    if schedule.budgeted or schedule.check_val_every_n_epoch != 1 or isinstance(interval, datetime.timedelta):
        return False
    if interval is None:
        return True
    if isinstance(interval, BatchLimit):
        return interval.value == 1
    return isinstance(interval, numbers.Real) and not isinstance(interval, bool) and interval == 1


def to_float(value: Any, monitor: str) -> float:
    """A scalar monitored value as a Python float (a 1-element tensor or array is squeezed)."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"EarlyStopping(monitor={monitor!r}) needs a scalar, but the metric is a tensor of "
                f"shape {tuple(value.shape)}; reduce it to one number (e.g. with .mean())"
            )
        return float(value.detach().reshape(()).item())
    if isinstance(value, bool):
        raise TypeError(f"EarlyStopping(monitor={monitor!r}) needs a number, got the bool {value!r}")
    if isinstance(value, numbers.Real):
        return float(value)
    size = getattr(value, "size", None)
    if isinstance(size, int) and hasattr(value, "item"):  # numpy scalars and arrays
        if size != 1:
            raise ValueError(
                f"EarlyStopping(monitor={monitor!r}) needs a scalar, but the metric has {size} "
                f"elements; reduce it to one number"
            )
        return float(value.item())
    raise TypeError(
        f"EarlyStopping(monitor={monitor!r}) needs a number or a 1-element tensor, got "
        f"{type(value).__name__}: {format_value(value)}"
    )
