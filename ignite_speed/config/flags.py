"""Per-flag validators for the loop-control flags: loop limits, ``max_time`` and its mode and reserve,
data limits, ``fast_dev_run``, the validation schedule and the stop sources.

Each takes the raw value(s) a user gave and returns the parsed value, or raises ``TypeError``/``ValueError``
naming the flag, the value and what is accepted. :class:`~ignite_speed.config.SpeedConfig` is assembled
from them, and the standalone handlers (``LoopLimits``, ``TimeBudget``, ``ValidationSchedule``) call the
family validators (``validate_loop_limits``, ``validate_max_time_flags``, ``validate_validation_schedule``),
so that a bad value gets the same message either way. Each family checks its flags in the order
``SpeedConfig`` does, so that the same flag is reported first.
"""

from __future__ import annotations

import datetime
import signal
from dataclasses import dataclass
from typing import Any

from .checks import check_int, did_you_mean, is_number, type_name
from .durations import BatchLimit, format_value, parse_batch_limit, parse_duration
from .early_stopping import early_stopping_flag_options

__all__ = [
    "MAX_TIME_MODES",
    "BATCH_LIMIT_FLAGS",
    "LoopLimitFlags",
    "MaxTimeFlags",
    "ValidationScheduleFlags",
    "validate_max_epochs",
    "validate_max_steps",
    "validate_min_epochs",
    "validate_min_steps",
    "validate_loop_limits",
    "validate_max_time",
    "validate_max_time_mode",
    "check_max_time_mode_needs_max_time",
    "validate_max_time_reserve",
    "check_reserve_below_max_time",
    "validate_max_time_flags",
    "validate_profile",
    "validate_overfit_batches",
    "validate_fast_dev_run",
    "validate_check_val_every_n_epoch",
    "check_fraction_interval_has_epochs",
    "validate_val_check_interval",
    "validate_num_sanity_val_steps",
    "validate_validation_schedule",
    "validate_val_time_fraction",
    "check_val_time_fraction_has_validation",
    "validate_early_stopping_flag",
    "DEFAULT_PREEMPTION_SIGNALS",
    "validate_preemption_signals",
    "validate_autoresume",
    "validate_allow_resume_changes",
    "validate_ckpt_path",
]

MAX_TIME_MODES = ("step", "epoch", "fit")
BATCH_LIMIT_FLAGS = ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches")


# ---------------------------------------------------------------------------------------------- loop limits
def validate_max_epochs(value: Any) -> int | None:
    accepted = "None, -1 (no limit) or an int >= 0"
    max_epochs = check_int(value, "max_epochs", allow_none=True, accepted=accepted)
    if max_epochs is not None and max_epochs < -1:
        raise ValueError(f"max_epochs={max_epochs!r} is out of range; accepted: {accepted}")
    return max_epochs


def _check_int_from_minus_one(value: Any, flag: str, accepted: str) -> int:
    """An int flag whose -1 has a meaning of its own (no limit, all batches)."""
    number = check_int(value, flag, accepted=accepted)
    assert number is not None  # None is refused without allow_none
    if number < -1:
        raise ValueError(f"{flag}={number!r} is out of range; accepted: {accepted}")
    return number


def validate_max_steps(value: Any) -> int:
    return _check_int_from_minus_one(value, "max_steps", "-1 (no limit) or an int >= 0")


def validate_min_epochs(value: Any) -> int | None:
    return check_int(value, "min_epochs", minimum=0, allow_none=True)


def validate_min_steps(value: Any) -> int | None:
    return check_int(value, "min_steps", minimum=0, allow_none=True)


@dataclass(frozen=True)
class LoopLimitFlags:
    """The four loop-limit flags, validated and as given (``None`` where unset)."""

    max_epochs: int | None
    min_epochs: int | None
    max_steps: int
    min_steps: int | None


def validate_loop_limits(
    max_epochs: Any = None, min_epochs: Any = None, max_steps: Any = -1, min_steps: Any = None
) -> LoopLimitFlags:
    """``max_epochs``, ``max_steps``, ``min_epochs``, ``min_steps``, checked in that order."""
    checked_max_epochs = validate_max_epochs(max_epochs)
    checked_max_steps = validate_max_steps(max_steps)
    return LoopLimitFlags(
        max_epochs=checked_max_epochs,
        min_epochs=validate_min_epochs(min_epochs),
        max_steps=checked_max_steps,
        min_steps=validate_min_steps(min_steps),
    )


# ---------------------------------------------------------------------------------------------- max_time
def validate_max_time(value: Any) -> datetime.timedelta | None:
    return parse_duration(value, "max_time")


def validate_max_time_mode(mode: Any) -> str:
    modes = (
        "'step' (check after every batch), 'epoch' (at epoch ends) or 'fit' (stop at the last epoch "
        "boundary after which another epoch would not fit)"
    )
    if not isinstance(mode, str):
        raise TypeError(f"max_time_mode={format_value(mode)} has type {type_name(mode)}; accepted: {modes}")
    if mode not in MAX_TIME_MODES:
        raise ValueError(
            f"max_time_mode={mode!r} is not known{did_you_mean(mode, list(MAX_TIME_MODES))}; accepted: {modes}"
        )
    return mode


def check_max_time_mode_needs_max_time(mode: str, max_time: datetime.timedelta | None) -> None:
    """A mode other than the default ``"step"`` says how to stop on ``max_time``: it needs one."""
    if mode != "step" and max_time is None:
        raise ValueError(
            f"max_time_mode={mode!r} needs max_time: set max_time (a duration), or leave max_time_mode unset"
        )


def check_reserve_below_max_time(
    reserve: datetime.timedelta | None, max_time: datetime.timedelta | None, given: Any
) -> None:
    """A reserve is held back from ``max_time``: it needs one, and must leave some of it (``given``: the
    reserve as the user wrote it, named when ``max_time`` is missing)."""
    if reserve is not None and reserve > datetime.timedelta(0):
        if max_time is None:
            raise ValueError(
                f"max_time_reserve={format_value(given)} needs max_time: it is held "
                f"back from max_time; set max_time, or leave max_time_reserve unset"
            )
        if reserve >= max_time:
            raise ValueError(
                f"max_time_reserve={reserve} is not less than max_time={max_time}; accepted: a "
                f"duration shorter than max_time (training plans against max_time - "
                f"max_time_reserve)"
            )


def validate_max_time_reserve(value: Any, max_time: datetime.timedelta | None) -> datetime.timedelta | None:
    reserve = parse_duration(value, "max_time_reserve")
    check_reserve_below_max_time(reserve, max_time, value)
    return reserve


@dataclass(frozen=True)
class MaxTimeFlags:
    """``max_time``, ``max_time_mode`` and ``max_time_reserve``, validated (durations parsed)."""

    max_time: datetime.timedelta | None
    mode: str
    reserve: datetime.timedelta | None


def validate_max_time_flags(max_time: Any = None, mode: Any = "step", reserve: Any = None) -> MaxTimeFlags:
    parsed_max_time = validate_max_time(max_time)
    checked_mode = validate_max_time_mode(mode)
    check_max_time_mode_needs_max_time(checked_mode, parsed_max_time)
    return MaxTimeFlags(parsed_max_time, checked_mode, validate_max_time_reserve(reserve, parsed_max_time))


# ---------------------------------------------------------------------------------------------- data limits
def validate_overfit_batches(value: Any) -> BatchLimit:
    return parse_batch_limit(value, "overfit_batches", default=BatchLimit("fraction", 0.0))


def validate_fast_dev_run(value: Any) -> int:
    """The number of batches of a ``fast_dev_run`` (0: off; ``True`` is 1)."""
    accepted = "False/0 (off), True (1 batch) or an int >= 1 (number of batches)"
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise TypeError(f"fast_dev_run={format_value(value)} has type {type_name(value)}; accepted: {accepted}")
    if value < 0:
        raise ValueError(f"fast_dev_run={value!r} is negative; accepted: {accepted}")
    return value


# ---------------------------------------------------------------------------------------------- validation schedule
def validate_check_val_every_n_epoch(value: Any) -> int | None:
    accepted = "an int >= 1, or None to count val_check_interval across epochs"
    return check_int(value, "check_val_every_n_epoch", minimum=1, allow_none=True, accepted=accepted)


def check_fraction_interval_has_epochs(val_check_interval: Any, check_val_every_n_epoch: int | None) -> None:
    """A fractional ``val_check_interval`` is a part of an epoch: it needs epochs to count in."""
    is_fraction = isinstance(val_check_interval, float) or (
        isinstance(val_check_interval, BatchLimit) and val_check_interval.kind == "fraction"
    )
    if is_fraction and check_val_every_n_epoch is None:
        raise ValueError(
            f"val_check_interval={val_check_interval!r} is a fraction of an epoch, which needs epochs: with "
            f"check_val_every_n_epoch=None give val_check_interval as an int number of batches "
            f"(or a duration), or set check_val_every_n_epoch to an int >= 1"
        )


def validate_val_check_interval(value: Any, check_val_every_n_epoch: int | None) -> BatchLimit | datetime.timedelta:
    """A duration (validate on a clock) or a :class:`BatchLimit` (``check_val_every_n_epoch`` validated first)."""
    if isinstance(value, (str, dict, datetime.timedelta)):
        duration = parse_duration(value, "val_check_interval")
        assert duration is not None  # None is not among the types above
        return duration
    check_fraction_interval_has_epochs(value, check_val_every_n_epoch)
    interval = parse_batch_limit(value, "val_check_interval")
    if interval.kind == "count" and interval.value == 0:
        # Lightning 2.6 accepts it and fails with ZeroDivisionError at the first training batch
        raise ValueError(
            f"val_check_interval={format_value(value)} would validate every 0 batches; accepted: an int "
            f">= 1 (validate every n training batches), a float in [0.0, 1.0] (a fraction of the epoch; "
            f"0.0 validates after every batch, as in Lightning), None (once per epoch), or a duration"
        )
    return interval


def validate_num_sanity_val_steps(value: Any) -> int:
    return _check_int_from_minus_one(value, "num_sanity_val_steps", "-1 (all batches), 0 (off) or an int >= 1")


@dataclass(frozen=True)
class ValidationScheduleFlags:
    """The validation schedule's flags, validated (intervals and limits parsed)."""

    val_check_interval: BatchLimit | datetime.timedelta
    check_val_every_n_epoch: int | None
    num_sanity_val_steps: int
    limit_val_batches: BatchLimit
    val_time_fraction: float | None = None


def validate_validation_schedule(
    val_check_interval: Any = None,
    check_val_every_n_epoch: Any = 1,
    num_sanity_val_steps: Any = 2,
    limit_val_batches: Any = None,
    val_time_fraction: Any = None,
) -> ValidationScheduleFlags:
    """``limit_val_batches``, ``check_val_every_n_epoch``, ``val_check_interval``, ``num_sanity_val_steps``,
    ``val_time_fraction``, checked in that order."""
    limit = parse_batch_limit(limit_val_batches, "limit_val_batches")
    every_n_epochs = validate_check_val_every_n_epoch(check_val_every_n_epoch)
    interval = validate_val_check_interval(val_check_interval, every_n_epochs)
    sanity_steps = validate_num_sanity_val_steps(num_sanity_val_steps)
    fraction = validate_val_time_fraction(val_time_fraction)
    check_val_time_fraction_has_validation(fraction, limit)
    return ValidationScheduleFlags(interval, every_n_epochs, sanity_steps, limit, fraction)


def validate_val_time_fraction(value: Any) -> float | None:
    """``val_time_fraction``: ``None`` (no budget) or a number in (0, 1), the most of the training clock that
    validation may take (see docs/validation.rst)."""
    accepted = (
        "None (no budget) or a number strictly between 0 and 1 (the most of the training wall time that "
        "validation may take, such as 0.1)"
    )
    if value is None:
        return None
    if not is_number(value):
        raise TypeError(f"val_time_fraction={format_value(value)} has type {type_name(value)}; accepted: {accepted}")
    if not 0.0 < float(value) < 1.0:  # (NaN fails too)
        raise ValueError(f"val_time_fraction={value!r} is out of range; accepted: {accepted}")
    return float(value)


def check_val_time_fraction_has_validation(fraction: float | None, limit_val_batches: BatchLimit) -> None:
    """A validation time budget needs validation: ``limit_val_batches=0`` turns it off."""
    if fraction is not None and limit_val_batches.is_zero:
        raise ValueError(
            f"val_time_fraction={fraction!r} budgets validation, but limit_val_batches="
            f"{format_value(limit_val_batches.value)} turns validation off; accepted: leave "
            f"val_time_fraction unset (None), or let validation run (limit_val_batches > 0)"
        )


# ---------------------------------------------------------------------------------------------- stop sources
def validate_early_stopping_flag(value: Any) -> dict[str, Any] | None:
    """``None`` (off) or the EarlyStopping keyword arguments, normalized."""
    options = early_stopping_flag_options(value)
    return None if options is None else options.kwargs(value)


# SIGTERM: what SLURM (at the time limit, on scancel or preemption), Kubernetes and torchrun send first; SIGUSR1:
# what ``#SBATCH --signal=USR1@90`` asks SLURM to send ahead of the time limit (where the platform has it)
DEFAULT_PREEMPTION_SIGNALS = tuple(name for name in ("SIGTERM", "SIGUSR1") if hasattr(signal, name))
_UNCATCHABLE = frozenset(name for name in ("SIGKILL", "SIGSTOP") if hasattr(signal, name))
_PREEMPTION_ACCEPTED = (
    "signal names ('SIGTERM' or 'TERM') or numbers, one or a list of them, or () or None (no signal handling)"
)


def _signal_name(item: Any, value: Any) -> str:
    """The canonical name (``"SIGTERM"``) of one signal of ``preemption_signals``."""
    given = f"preemption_signals={format_value(value)}"
    if isinstance(item, bool) or not isinstance(item, (str, int)):
        raise TypeError(f"{given}: {format_value(item)} has type {type_name(item)}; accepted: {_PREEMPTION_ACCEPTED}")
    known = {s.name: s for s in signal.Signals}
    if isinstance(item, int):
        try:
            name = signal.Signals(item).name
        except ValueError:
            raise ValueError(
                f"{given}: {item} is not a signal number on this platform; accepted: {_PREEMPTION_ACCEPTED}"
            ) from None
    else:
        upper = item.strip().upper()
        name = upper if upper.startswith("SIG") else f"SIG{upper}"
        if name not in known:
            names = sorted(known) + sorted(n[3:] for n in known)
            raise ValueError(
                f"{given}: {item!r} is not a signal name{did_you_mean(upper, names)}; accepted: {_PREEMPTION_ACCEPTED}"
            )
    if name in _UNCATCHABLE:
        raise ValueError(
            f"{given}: {name} cannot be caught (the process ends at once, with no chance to save); "
            f"accepted: {_PREEMPTION_ACCEPTED}"
        )
    return name


def validate_preemption_signals(value: Any) -> tuple[str, ...]:
    """The signals that stop a run with ``PREEMPTED`` (:class:`~ignite_speed.handlers.PreemptionGuard`), as
    canonical names in the order given, each once (``()``: none, the guard is off)."""
    if value is None:
        return ()
    items = [value] if isinstance(value, (str, int)) else value
    if not isinstance(items, (list, tuple)):
        raise TypeError(
            f"preemption_signals={format_value(value)} has type {type_name(value)}; accepted: {_PREEMPTION_ACCEPTED}"
        )
    names: list[str] = []
    for item in items:
        name = _signal_name(item, value)
        if name not in names:
            names.append(name)
    return tuple(names)


def _check_bool(flag: str, value: Any, accepted: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{flag}={format_value(value)} has type {type_name(value)}; accepted: {accepted}")
    return value


def validate_autoresume(value: Any) -> bool:
    """``autoresume``: True or False (:class:`~ignite_speed.handlers.AutoResume`)."""
    return _check_bool(
        "autoresume",
        value,
        "True (continue from the newest checkpoint of the trainer's Checkpoint when a run starts) or False",
    )


def validate_profile(value: Any) -> bool:
    """``profile``: True or False (split training time into data, step and handlers, batch by batch)."""
    return _check_bool(
        "profile",
        value,
        "True (split the training time of speedups.report().profile into waiting "
        "for data, the step and the handlers, at a small cost per batch) or False "
        "(the default: training, validation, sanity check and checkpoint saves "
        "only, at no cost per batch)",
    )


def validate_allow_resume_changes(value: Any) -> bool:
    """``allow_resume_changes``: True or False (:class:`ignite_speed.loop.resume.RunLayout`)."""
    return _check_bool(
        "allow_resume_changes",
        value,
        "False (refuse to resume a checkpoint written under another "
        "number of processes, batches per epoch, batch size or "
        "accumulate_grad_batches) or True (resume it at the next "
        "epoch boundary, with the counters kept)",
    )


_CKPT_PATH_FIX = (
    "ignite-speed reads only ckpt_path='last' (mapped to autoresume=True: continue from the newest "
    "checkpoint of the trainer's Checkpoint) or None; to resume from one file, load it before "
    "trainer.run with Checkpoint.load_objects(to_load={'trainer': trainer, 'speedups': speedups, ...}, "
    "checkpoint=torch.load(path, weights_only=True))"
)


def validate_ckpt_path(value: Any) -> bool:
    """Lightning's ``trainer.fit(..., ckpt_path=...)``: ``"last"`` is ``autoresume=True`` (returned: whether to
    resume), ``None`` nothing; a file or ``"best"``/``"hpc"``/``"registry"`` is refused with the fix."""
    if value is None:
        return False
    if not isinstance(value, str):
        raise TypeError(f"ckpt_path={format_value(value)} has type {type_name(value)}; {_CKPT_PATH_FIX}")
    if value == "last":
        return True
    if value in ("best", "hpc", "registry") or value.startswith("registry:"):
        raise ValueError(
            f"ckpt_path={value!r}: Lightning's {value.split(':')[0]!r} checkpoint has no counterpart "
            f"here; {_CKPT_PATH_FIX}"
        )
    raise ValueError(f"ckpt_path={value!r} is not mapped (a file to resume from); {_CKPT_PATH_FIX}")
