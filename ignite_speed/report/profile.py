"""Where the time of a run goes: :class:`RunProfile` (``Speedups.report().profile``).

The wall time of ``trainer.run`` split into parts that do not overlap and add up to it:

================================ =========================================================================
part                             what
================================ =========================================================================
``setup``                        the run's set-up before Ignite's ``run`` (the plan, the data, loading a
                                 checkpoint to resume)
``sanity_check``                 the validation sanity check before training
``validation``                   the validation runs during training (the evaluator's data, step and
                                 handlers)
``checkpoint``                   the calls of the trainer's ``Checkpoint`` handlers (state gathered and saved)
``imports``                      modules imported for the first time during the call (a one-off cost, kept
                                 out of the part that happened to import them first)
``after_run``                    the listeners after Ignite's ``run`` returned (a ``fast_dev_run``'s projection)
``training``                     the rest, without ``profile=True``
``data``                         with ``profile=True``: waiting for the next batch (the data iterator's
                                 ``next``, and Ignite's ``GET_BATCH_*``/``ITERATION_STARTED`` events)
``step``                         with ``profile=True``: the process function
``app_handlers``                 with ``profile=True``: the app's own ``ITERATION_COMPLETED`` handlers
``ignite_speed_handlers``        with ``profile=True``: ignite-speed's per-batch handlers
``other``                        with ``profile=True``: the rest (Ignite's own work, epoch starts and ends)
================================ =========================================================================

The measurements are the loop's :class:`~ignite_speed.loop.run_timer.RunTimer`; each rank measures its
own run (``Speedups.report()`` on rank 0 gives rank 0's).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ..loop.training_loop import TrainingLoop

__all__ = ["RunProfile", "run_profile", "PART_LABELS"]

COARSE = ("setup", "sanity_check", "validation", "checkpoint", "imports", "after_run")  # (the timer's rare parts)

PART_LABELS: dict[str, str] = {
    "data": "waiting for data",
    "step": "training step",
    "app_handlers": "app's handlers",
    "ignite_speed_handlers": "ignite-speed's handlers",
    "training": "training (not split)",
    "validation": "validation",
    "setup": "run set-up",
    "sanity_check": "sanity check",
    "checkpoint": "checkpoint saves",
    "imports": "first-use imports",
    "after_run": "after the run (projection)",
    "other": "other",
}


@dataclass(frozen=True)
class RunProfile:
    """The wall time of a run and its parts, in seconds (see the module's docstring for the parts).

    Attributes:
        wall: seconds spent in ``trainer.run`` (every call since the run started, in this process).
        parts: seconds per part, in a fixed order; they add up to ``wall``.
        fine: whether training is split into data, step and handlers (``profile=True``).
        batches: training batches run; ``val_runs``, ``checkpoint_calls``: validation runs and calls of the
            trainer's ``Checkpoint`` handlers.
        iterator_seconds, iterators: time and number of the training data iterator's creations (once an
            epoch; with ``profile=True`` that time is part of ``data``).
        first_batch: with ``profile=True``, the first batch's wait for data and step (seconds).
        app_handlers: with ``profile=True``, seconds per app handler of ``ITERATION_COMPLETED``, by name.
    """

    wall: float
    parts: Mapping[str, float] = field(default_factory=dict)
    fine: bool = False
    batches: int = 0
    val_runs: int = 0
    checkpoint_calls: int = 0
    iterator_seconds: float = 0.0
    iterators: int = 0
    first_batch: tuple[float, float] | None = None
    app_handlers: Mapping[str, float] = field(default_factory=dict)

    def share(self, part: str) -> float:
        """``part``'s share of the wall time (0.0 to 1.0; 0.0 for a part not measured)."""
        return self.parts.get(part, 0.0) / self.wall if self.wall > 0 else 0.0

    @property
    def shares(self) -> dict[str, float]:
        return {name: self.share(name) for name in self.parts}

    @property
    def training(self) -> float:
        """Seconds of training: everything but the set-up, validation, the sanity check, checkpoint saves,
        first-use imports and the work after the run."""
        return self.wall - sum(self.parts.get(p, 0.0) for p in COARSE)

    @property
    def batch_seconds(self) -> float | None:
        """Seconds of training per batch (``None`` before a batch ran)."""
        return self.training / self.batches if self.batches else None

    @property
    def val_run_seconds(self) -> float | None:
        return self.parts.get("validation", 0.0) / self.val_runs if self.val_runs else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "wall": self.wall,
            "parts": dict(self.parts),
            "fine": self.fine,
            "batches": self.batches,
            "val_runs": self.val_runs,
            "checkpoint_calls": self.checkpoint_calls,
            "iterator_seconds": self.iterator_seconds,
            "iterators": self.iterators,
            "first_batch": None if self.first_batch is None else list(self.first_batch),
            "app_handlers": dict(self.app_handlers),
        }

    def table(self) -> str:
        """The parts as lines of text: seconds and share, largest first."""
        lines = [f"{'where the time went':<26}{'seconds':>9}{'share':>8}"]
        for name, seconds in sorted(self.parts.items(), key=lambda item: -item[1]):
            if seconds >= 5e-4 or name in ("training", "step"):
                lines.append(f"{PART_LABELS.get(name, name):<26}{seconds:>9.2f}{100 * self.share(name):>7.1f}%")
        lines.append(f"{'wall time of trainer.run':<26}{self.wall:>9.2f}{100.0:>7.1f}%")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def run_profile(loop: TrainingLoop) -> RunProfile:
    """The :class:`RunProfile` of the trainer's loop (``TrainingLoop.of(trainer)``) as measured so far."""
    timer = loop.timer
    wall = timer.wall
    measured = timer.parts
    coarse = {name: measured.get(name, 0.0) for name in COARSE}
    if timer.fine_measured:
        split = {name: measured[name] for name in ("data", "step", "app_handlers", "ignite_speed_handlers")}
        rest = wall - sum(coarse.values()) - sum(split.values())
        parts = {**split, **coarse, "other": max(0.0, rest)}
    else:
        parts = {"training": max(0.0, wall - sum(coarse.values())), **coarse}
    return RunProfile(
        wall=wall,
        parts=parts,
        fine=timer.fine_measured,
        batches=timer.batches,
        val_runs=timer.counts.get("validation", 0),
        checkpoint_calls=timer.counts.get("checkpoint", 0),
        iterator_seconds=timer.iterator_seconds,
        iterators=timer.iterators,
        first_batch=timer.first_batch if timer.fine_measured else None,
        app_handlers=dict(timer.app_handler_seconds) if timer.fine_measured else {},
    )
