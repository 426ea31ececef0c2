"""Continue from the newest complete checkpoint when ``trainer.run`` starts in a fresh process (``autoresume``).

:class:`AutoResume` acts once, at the very start of the first ``trainer.run`` of a trainer whose run has not
started (its ``before_run`` hook, called before the run's setup reads ``trainer.state``): it looks in the folder
of every ``Checkpoint`` of the trainer that saves the loop's state (the ``Speedups`` or
``TrainingLoop.of(trainer)``) for the files that ``Checkpoint`` writes (its ``filename_prefix``, the names of
its ``to_save``, ``.pt``), takes the newest (the highest global step in the name, then the newest file),
and loads it with ``Checkpoint.load_objects`` into that ``Checkpoint``'s ``to_save``. The loop's resume
then continues exactly where the saved run stood. A file that cannot be read (a kill while it was written
elsewhere than through ``DiskSaver``'s rename, a full disk) falls back to the previous one, with a warning;
no file starts the run from scratch. In a distributed run rank 0 chooses the file and tells the other
ranks (docs/preemption.rst, "Automatic resume").
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from typing import Any

import torch

from .._compat import checkpoint_handlers
from .._logging import logger
from ..distributed import _dist
from .base import LoopHandler

__all__ = ["AutoResume", "checkpoint_files"]

_STEP = "AUTORESUMEGLOBALSTEP"


class _RefusedObjects(pickle.UnpicklingError):
    """A complete checkpoint file with objects that ``torch.load(weights_only=True)`` refuses (not skipped)."""


def checkpoint_files(checkpoint: Any) -> list[tuple[int, float, str]]:
    """The files ``checkpoint`` (an Ignite ``Checkpoint`` with a ``DiskSaver``) would have written, as
    ``(global step, modification time, path)``, newest first."""
    from ignite.handlers import Checkpoint

    dirname = getattr(checkpoint.save_handler, "dirname", None)
    if dirname is None or not os.path.isdir(dirname):
        return []
    prefix = checkpoint.filename_prefix
    pattern = checkpoint.filename_pattern or Checkpoint.setup_filename_pattern(
        with_prefix=len(prefix) > 0, with_score=False, with_score_name=False, with_global_step=True
    )
    name = next(iter(checkpoint.to_save)) if len(checkpoint.to_save) == 1 else "checkpoint"
    template = pattern.format(
        filename_prefix=prefix,
        ext=checkpoint.ext,
        name=name,
        score="",
        score_name="",
        global_step=_STEP,
        basename=f"{prefix}{'_' * int(len(prefix) > 0)}{name}",
    )
    regex = re.compile(re.escape(template).replace(_STEP, r"(\d+)"))
    found = []
    for entry in os.scandir(dirname):
        match = regex.fullmatch(entry.name)
        if match and entry.is_file():
            found.append((int(match.group(1)), entry.stat().st_mtime, os.path.join(str(dirname), entry.name)))
    return sorted(found, reverse=True)


class AutoResume(LoopHandler):
    """Load the newest complete checkpoint of the trainer's ``Checkpoint`` when its first run starts.

    Args:
        weights_only: passed to ``torch.load`` (the default reads what ``Speedups``, Ignite's engines,
            models and optimizers save; ``False`` for checkpoints with other objects, from a trusted source).

    Attributes:
        resumed_from: the file the run resumed from, or None (no checkpoint: started from scratch).
        skipped: the newer files that could not be read.
    """

    name = "autoresume"
    order = 1

    def __init__(self, weights_only: bool = True) -> None:
        super().__init__()
        self.weights_only = weights_only
        self.resumed_from: str | None = None
        self.skipped: list[str] = []
        self._done = False

    def __repr__(self) -> str:
        return f"AutoResume(weights_only={self.weights_only!r})"

    def before_run(self) -> None:
        loop = self.loop
        t = loop.trainer
        if self._done:
            return
        self._done = True
        if t.state.max_epochs is not None or t.state.iteration or loop.progress.total_batches:
            return  # the trainer was loaded or trained already in this process: nothing to resume
        checkpoints = self._checkpoints()
        if not checkpoints:
            return
        ranked = sorted(
            ((step, mtime, path, c) for c in checkpoints for step, mtime, path in checkpoint_files(c)),
            key=lambda f: (f[0], f[1]),
            reverse=True,
        )
        loaded = self._load_newest([(path, c) for _, _, path, c in ranked])
        if loaded is None:
            folders = sorted({str(getattr(c.save_handler, "dirname", "?")) for c in checkpoints})
            logger.info("autoresume: no checkpoint in %s; training starts from scratch", ", ".join(folders))
            return
        path, checkpoint, state = loaded
        self._restore(path, checkpoint, state)

    def _checkpoints(self) -> list[Any]:
        """The trainer's Checkpoints that save the loop's state with the trainer's (refused when none does)."""
        loop = self.loop
        ours = (loop, loop.parts.speedups)
        all_of = checkpoint_handlers(loop.trainer, latest_state_only=True)
        found = [
            c
            for c in all_of
            if any(any(v is o for o in ours if o is not None) for v in c.to_save.values())
            and any(v is loop.trainer for v in c.to_save.values())
        ]
        if not all_of:
            logger.warning(
                "autoresume: the trainer has no Checkpoint handler (without a score_function) to resume "
                "from; training starts from scratch"
            )
        elif not found:
            names = ", ".join(repr(sorted(c.to_save)) for c in all_of)
            raise RuntimeError(
                f"autoresume: no Checkpoint of the trainer saves both the trainer and ignite-speed's state (to_save "
                f"keys: {names}); add both to Checkpoint(to_save={{'trainer': trainer, 'speedups': speedups, ...}}) "
                f"(TrainingLoop.of(trainer) when you use the handlers alone), or set autoresume=False"
            )
        return found

    def _load_newest(self, files: list[tuple[str, Any]]) -> tuple[str, Any, Any] | None:
        """Rank 0 reads the newest file it can; the other ranks read the one it chose."""
        if _dist.get_world_size() > 1:
            chosen, result = "", None
            if _dist.get_rank() == 0:
                result = self._first_readable(files)
                chosen = "" if result is None else result[0]
            chosen = _dist.broadcast_str(chosen, src=0)
            if _dist.get_rank() == 0:
                return result
            files = [(p, c) for p, c in files if p == chosen]
            return None if not chosen else (chosen, files[0][1], self._read(chosen))
        return self._first_readable(files)

    def _first_readable(self, files: list[tuple[str, Any]]) -> tuple[str, Any, Any] | None:
        self.skipped = []
        for path, checkpoint in files:
            try:
                state = self._read(path)
            except _RefusedObjects:
                raise
            except Exception as exc:  # whatever torch.load raises for a file it cannot read: skip it
                self.skipped.append(path)
                logger.warning(
                    "autoresume: cannot read %s (%s: %s); trying the previous checkpoint",
                    path,
                    type(exc).__name__,
                    " ".join(str(exc).split())[:300],
                )
                continue
            if self.skipped:
                logger.warning(
                    "autoresume: resuming from %s instead of the newer %s, which cannot be read",
                    path,
                    ", ".join(self.skipped),
                )
            return path, checkpoint, state
        return None

    def _read(self, path: str) -> Any:
        try:
            return torch.load(path, map_location="cpu", weights_only=self.weights_only)
        except pickle.UnpicklingError as exc:
            # torch.load(weights_only=True) words every unpickling failure alike, a truncated file's too: only a
            # complete file (torch.save writes a zip archive) holds objects it refuses; the rest is unreadable
            if not self.weights_only or "weights_only" not in str(exc).lower() or not zipfile.is_zipfile(path):
                raise
            raise _RefusedObjects(
                f"autoresume: {path} holds objects that torch.load(weights_only=True) does not read; if the file "
                f"is your own, attach AutoResume(weights_only=False) instead of autoresume=True ({exc})"
            ) from None

    def _restore(self, path: str, checkpoint: Any, state: Any) -> None:
        from ignite.handlers import Checkpoint

        missing = [k for k in checkpoint.to_save if not isinstance(state, dict) or k not in state]
        if missing:
            raise ValueError(
                f"autoresume: {path} has no {', '.join(map(repr, missing))} of the Checkpoint's to_save "
                f"{sorted(checkpoint.to_save)}: it was written by another setup; move it out of "
                f"{os.path.dirname(path)} to start from scratch, or set autoresume=False"
            )
        for key, obj in checkpoint.to_save.items():  # one at a time, so that a refusal names the object
            try:
                Checkpoint.load_objects(to_load={key: obj}, checkpoint={key: state[key]})
            except Exception as exc:
                reason = " ".join(f"{type(exc).__name__}: {exc}".split())
                reason = reason if len(reason) <= 600 else reason[:597] + "..."
                raise RuntimeError(
                    f"autoresume: {path} does not fit this run: its {key!r} cannot be loaded into the Checkpoint's "
                    f"{key!r} ({type(obj).__name__}): {reason}. The file was written by another setup (another model, "
                    f"optimizer or ignite-speed version?); move it out of {os.path.dirname(path)} to start from "
                    f"scratch, or set autoresume=False"
                ) from None
        self.loop.setup.loaded_from(path)
        self.resumed_from = path
        logger.info(
            "autoresume: resuming from %s (iteration %d, epoch %d)",
            path,
            self.loop.trainer.state.iteration,
            self.loop.trainer.state.epoch,
        )
