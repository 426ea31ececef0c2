"""What a run's data order and counting depend on (:class:`RunLayout`), recorded in the loop's checkpoint and
compared when a run resumes.

A resumed run continues exactly only when it draws the same batches per epoch, in the same order, and counts
optimizer steps the same way as the run that wrote the checkpoint. That depends on the number of processes
(a ``DistributedSampler`` deals the data out by it), each process's loader (its batch size and length), the
batches per epoch that ``limit_train_batches`` leaves, and ``accumulate_grad_batches``. A resume under other
values is refused (:func:`layout_refusal`), unless ``allow_resume_changes`` accepts it: then the run continues
at the next epoch boundary, with the counters kept (docs/preemption.rst, "A relaunch with another setup").
Changing ``max_epochs``, ``max_steps``, ``max_time``, the validation schedule or early stopping is not a
change of the layout: those are always allowed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..config.durations import BatchLimit

__all__ = ["RunLayout", "layout_refusal", "layout_warning"]

# each field's name in messages (the flag that sets it, where there is one)
_NAMES = {
    "world_size": "world_size (number of processes)",
    "batch_size": "batch_size (per process)",
    "data_length": "batches of the training data (per process)",
    "train_batches": "batches per epoch (per process)",
    "accumulate_grad_batches": "accumulate_grad_batches",
}


@dataclass(frozen=True)
class RunLayout:
    """The facts a run's data order and step counting depend on (``None``: not known, e.g. an unsized loader).

    Attributes:
        world_size: the number of processes.
        batch_size: the training loader's ``batch_size`` (per process).
        data_length: the training loader's length in batches (per process), before ``limit_train_batches``.
        train_batches: the batches per epoch the trainer runs (per process), after ``limit_train_batches``.
        accumulate_grad_batches: batches per optimizer step.
        limit_train_batches: the limit as given (shown in messages; ``train_batches`` is what is compared).
    """

    world_size: int = 1
    batch_size: int | None = None
    data_length: int | None = None
    train_batches: int | None = None
    accumulate_grad_batches: int = 1
    limit_train_batches: int | float | None = None

    @classmethod
    def of(cls, *, world_size: int, data: Any, data_length: int | None, train_batches: int | None,
           accumulate: int, limit: BatchLimit) -> RunLayout:
        batch_size = getattr(data, "batch_size", None)
        shown: int | float | None = None if limit.is_all else limit.value
        return cls(world_size=int(world_size), batch_size=batch_size if type(batch_size) is int else None,
                   data_length=data_length, train_batches=train_batches, accumulate_grad_batches=int(accumulate),
                   limit_train_batches=shown)

    def changes(self, now: RunLayout) -> list[tuple[str, Any, Any]]:
        """``(name, saved, now)`` of each compared fact that differs (``self`` is the saved layout)."""
        found = []
        for key in _NAMES:
            saved, new = getattr(self, key), getattr(now, key)
            if saved != new and not (key in ("batch_size", "data_length") and (saved is None or new is None)):
                found.append((key, saved, new))
        if found and self.limit_train_batches != now.limit_train_batches:
            found.append(("limit_train_batches", self.limit_train_batches, now.limit_train_batches))
        return found

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> RunLayout | None:
        """The layout saved in a checkpoint (``None``: a version-3 checkpoint, which has none)."""
        if not state:
            return None
        return cls(**{key: state[key] for key in cls.__dataclass_fields__ if key in state})


def _listed(changes: list[tuple[str, Any, Any]]) -> str:
    return ", ".join(f"{_NAMES.get(key, key)} {saved!r} -> {now!r}" for key, saved, now in changes)


def layout_refusal(changes: list[tuple[str, Any, Any]], source: str | None) -> str:
    """The message that refuses a resume under another layout (``source``: the checkpoint's file, when known)."""
    where = "the checkpoint" if source is None else source
    autoresume = "" if source is None else (f"; to start from scratch instead, move {source} out of its folder "
                                            f"or set autoresume=False")
    return (f"cannot resume from {where}: it was written under another setup, and the data order or the counting "
            f"of optimizer steps would change (saved -> now): {_listed(changes)}. Resume with the saved setup, or "
            f"set allow_resume_changes=True (TrainingLoop.of(trainer).setup.allow_resume_changes = True with the "
            f"handlers alone) to continue at the next epoch boundary with the counters kept: an interrupted epoch ends "
            f"at the checkpoint's batch{autoresume}")


def layout_warning(changes: list[tuple[str, Any, Any]], epoch: int, batch: int, train_batches: int | None,
                   window: int) -> str:
    """What a resume under another layout does (``epoch``: the 0-based epoch the checkpoint stood in,
    ``batch``: its batches done, 0 at an epoch boundary; ``window``: batches of an open accumulation window)."""
    text = f"resuming under another setup (allow_resume_changes=True; saved -> now: {_listed(changes)}): "
    if batch:
        left = "" if train_batches is None else f" of {train_batches}"
        text += (f"the interrupted epoch {epoch + 1} (1-based) ends after its batch {batch}{left}, its remaining "
                 f"batches are skipped")
        if window:
            text += (f", and the {window} batch{'es' * (window > 1)} of its open accumulation window give no "
                     f"optimizer step (their gradients are in no checkpoint)")
        text += f"; training continues with epoch {epoch + 2}"
    else:
        text += f"training continues with epoch {epoch + 1}"
    return text + " under the new setup, with the epoch, step and batch counters kept"
