"""The record of a training run as plain data: :func:`run_report` (``Speedups.report()``).

What a run did (stop reason and message, epochs, steps, batches, validation runs), where its time went
(training, validation, the sanity check; the run profile of :mod:`.profile`), and the monitored metric of every validation run with its step
and time, with the best value and where it was reached. The validation runs are recorded by the
:class:`~ignite_speed.handlers.ValidationSchedule` as they happen (:class:`ValidationRecord`) and the
epoch durations by the :class:`~ignite_speed.handlers.TimeBudget` (:class:`EpochTime`); both are part of
the loop state, so a resumed run reports the whole run.

This module imports nothing heavy: the picture of the report is :mod:`ignite_speed.report.plot` (matplotlib).
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .profile import RunProfile, run_profile

if TYPE_CHECKING:  # pragma: no cover
    from ..loop.training_loop import TrainingLoop

__all__ = [
    "EpochTime",
    "RunReport",
    "ValidationPoint",
    "ValidationRecord",
    "format_duration",
    "format_seconds",
    "numeric_metrics",
    "run_report",
]


def format_seconds(seconds: float) -> str:
    """A duration for messages: ``H:MM:SS`` from 10 s up (whole seconds), else seconds with two decimals."""
    if seconds >= 10:
        return str(datetime.timedelta(seconds=round(seconds)))
    return f"{max(seconds, 0.0):.2f} s"


def format_duration(seconds: float) -> str:
    """A duration of any size for messages: milliseconds below a second, else :func:`format_seconds`."""
    if seconds < 1:
        return f"{1000 * max(seconds, 0.0):.{1 if seconds < 0.01 else 0}f} ms"
    return format_seconds(seconds)


def numeric_metrics(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    """The metrics that are single numbers (floats, ints, one-element tensors), as floats."""
    out: dict[str, float] = {}
    for name, value in (metrics or {}).items():
        if isinstance(value, (str, bytes, bool)):
            continue
        try:
            out[str(name)] = float(value)
        except (TypeError, ValueError, RuntimeError):  # a vector, a dict, an object without __float__
            continue
    return out


@dataclass
class ValidationRecord:
    """One validation run during training, as the schedule records it."""

    epoch: int  # 0-based epoch it ran in
    step: int  # optimizer steps done when it ran (global_step)
    batches: int  # training batches done when it ran
    time: float  # training-clock seconds at its end
    seconds: float  # its duration
    metrics: dict[str, float] = field(default_factory=dict)  # its numeric metrics

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "batches": self.batches,
            "time": self.time,
            "seconds": self.seconds,
            "metrics": dict(self.metrics),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ValidationRecord:
        return cls(
            int(d["epoch"]),
            int(d["step"]),
            int(d["batches"]),
            float(d["time"]),
            float(d["seconds"]),
            {str(k): float(v) for k, v in dict(d.get("metrics") or {}).items()},
        )


@dataclass(frozen=True)
class EpochTime:
    """The measured duration of one epoch (what ``max_time_mode="fit"`` predicts the next one from)."""

    epoch: int  # 0-based
    seconds: float  # from the previous epoch boundary (or the run's start) to this one, validation included
    val_seconds: float  # of which validation
    val_runs: int  # validation runs in the epoch
    complete: bool  # False: ended early (a stop, end_epoch()); not used for predictions

    @property
    def train_seconds(self) -> float:
        return self.seconds - self.val_seconds

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EpochTime:
        return cls(
            int(d["epoch"]), float(d["seconds"]), float(d["val_seconds"]), int(d["val_runs"]), bool(d["complete"])
        )


@dataclass(frozen=True)
class ValidationPoint:
    """The monitored metric of one validation run."""

    run: int  # 1-based number of the validation run
    epoch: int  # 0-based epoch it ran in
    step: int  # optimizer steps done
    batches: int  # training batches done
    time: float  # training-clock seconds at its end (validation and training included, sanity check not)
    seconds: float  # duration of the run
    value: float | None  # the monitored metric (None: the run did not log it)


@dataclass(frozen=True)
class RunReport:
    """The record of one training run (``Speedups.report()``): plain data; :meth:`to_dict` for JSON.

    Times are seconds. ``seconds`` is the training clock (what ``max_time`` counts): ``train_seconds +
    val_seconds``; the sanity check runs before it starts (``sanity_seconds``).
    """

    stop_reason: str
    stop_message: str | None
    epochs: int
    steps: int
    batches: int
    val_runs: int
    seconds: float
    train_seconds: float
    val_seconds: float
    sanity_seconds: float
    monitor: str | None
    mode: str | None  # "min" or "max"
    best: float | None
    best_at: ValidationPoint | None  # the first validation run that reached ``best``
    stopping_threshold: float | None
    divergence_threshold: float | None
    max_time: float | None
    max_time_reserve: float
    max_time_mode: str | None
    validations: tuple[ValidationPoint, ...]
    epoch_times: tuple[EpochTime, ...]
    val_time_fraction: float | None = None  # the validation time budget (None: none)
    val_skipped: int = 0  # the schedule's candidates that the budget skipped
    # where the wall time of trainer.run went (measured on the real clock; not compared)
    profile: RunProfile | None = field(default=None, compare=False)
    # fast_dev_run: the projection of the full run (set by Speedups.report)
    projection: Any = field(default=None, compare=False)

    @property
    def val_share(self) -> float:
        """Validation's share of the training clock: ``val_seconds / seconds`` (what ``val_time_fraction``
        bounds)."""
        return self.val_seconds / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The report as nested dicts and lists (``json.dumps`` takes it)."""
        d = dataclasses.asdict(self)
        d["validations"] = [dict(v) for v in d["validations"]]
        d["epoch_times"] = [dict(e) for e in d["epoch_times"]]
        d["profile"] = None if self.profile is None else self.profile.to_dict()
        d["projection"] = None if self.projection is None else self.projection.to_dict()
        return d


def _best(points: list[ValidationPoint], mode: str) -> ValidationPoint | None:
    best: ValidationPoint | None = None
    for point in points:
        if point.value is None or math.isnan(point.value):
            continue
        if best is None or (point.value < best.value if mode == "min" else point.value > best.value):  # type: ignore[operator]
            best = point
    return best


def run_report(
    loop: TrainingLoop, monitor: str | None = None, mode: str | None = None, *, projection: Any = None
) -> RunReport:
    """The :class:`RunReport` of the trainer's loop (``TrainingLoop.of(trainer)``).

    Args:
        monitor: the metric to follow; default: early stopping's ``monitor`` (``None`` without early stopping).
        mode: ``"min"`` or ``"max"``; default: early stopping's for its monitor, else ``"min"``.
        projection: the report's ``projection`` (a fast_dev_run's :class:`~ignite_speed.report.projection.Projection`).

    Raises:
        ValueError: for a ``mode`` other than ``"min"``/``"max"``.

    The best value is early stopping's best score when it follows ``monitor`` (improvements count only by
    ``min_delta``), else the lowest (``"min"``) or highest value of the validation runs.
    """
    fields = loop.handlers.report_fields()  # what each attached handler adds to the record
    es = fields.get("early_stopping")
    follows_es = es is not None and monitor in (None, es["monitor"]) and mode in (None, es["mode"])
    if monitor is None and es is not None:
        monitor = es["monitor"]
    if mode is None:
        mode = es["mode"] if follows_es and es is not None else "min"
    if mode not in ("min", "max"):
        raise ValueError(f"report(mode={mode!r}): accepted: 'min' or 'max'")
    records: list[ValidationRecord] = list(fields.get("validation_runs") or [])
    points = [
        ValidationPoint(
            i + 1,
            r.epoch,
            r.step,
            r.batches,
            r.time,
            r.seconds,
            r.metrics.get(monitor) if monitor is not None else None,
        )
        for i, r in enumerate(records)
    ]
    best: float | None = None
    best_at: ValidationPoint | None = None
    if monitor is not None:
        if follows_es and es is not None and math.isfinite(es["best_score"]):
            best = float(es["best_score"])
            best_at = next((p for p in points if p.value == best), None)
        elif not follows_es:
            best_at = _best(points, mode)
            best = None if best_at is None else best_at.value
    controller, p = loop.controller, loop.progress
    val_seconds = sum(r.seconds for r in records)
    seconds = loop.clock.elapsed()
    return RunReport(
        stop_reason=controller.stop_reason.value,
        stop_message=controller.stop_message,
        epochs=p.epochs_done,
        steps=p.global_step,
        batches=p.total_batches,
        val_runs=p.val_runs,
        seconds=seconds,
        train_seconds=max(0.0, seconds - val_seconds),
        val_seconds=val_seconds,
        sanity_seconds=float(fields.get("sanity_seconds", 0.0) or 0.0),
        monitor=monitor,
        mode=mode if monitor is not None else None,
        best=best,
        best_at=best_at,
        stopping_threshold=es["stopping_threshold"] if follows_es and es is not None else None,
        divergence_threshold=es["divergence_threshold"] if follows_es and es is not None else None,
        max_time=fields.get("max_time"),
        max_time_reserve=fields.get("max_time_reserve", 0.0),
        max_time_mode=fields.get("max_time_mode"),
        validations=tuple(points),
        epoch_times=tuple(fields.get("epoch_times", ())),
        val_time_fraction=fields.get("val_time_fraction"),
        val_skipped=int(fields.get("val_skipped", 0) or 0),
        profile=run_profile(loop),
        projection=projection,
    )
