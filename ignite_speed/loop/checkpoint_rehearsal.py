"""``fast_dev_run`` and the app's own ``Checkpoint`` handlers: rehearse them, leave the user's folders alone.

Lightning turns checkpointing off in ``fast_dev_run``. Here each ``Checkpoint`` attached to the trainer
saves into a temporary folder during the debug run (at least once: at its end if its events did not
come), and what it wrote is loaded back into its objects, which then get their state back. A checkpoint
that cannot be written or read fails the debug run within seconds, not after hours of training, and the
user's checkpoint folder never holds a debug checkpoint that a real run would later refuse.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from typing import Any

from ignite.engine import Engine

from .._compat import checkpoint_handlers, checkpoint_saved, set_checkpoint_saved

__all__ = ["CheckpointRehearsal"]


class CheckpointRehearsal:
    """Swaps the save folder of every ``Checkpoint`` of a trainer for a temporary one, for one debug run."""

    def __init__(self, trainer: Engine) -> None:
        from ignite.handlers import DiskSaver

        self.trainer = trainer
        self.folder = tempfile.mkdtemp(prefix="ignite_speed_fast_dev_run_")
        self._swapped: list[tuple[Any, Any, list[Any], str]] = []
        for i, ckpt in enumerate(checkpoint_handlers(trainer)):
            folder = f"{self.folder}/{i}"
            self._swapped.append((ckpt, ckpt.save_handler, list(checkpoint_saved(ckpt)), folder))
            ckpt.save_handler = DiskSaver(folder, require_empty=False, create_dir=True)
            set_checkpoint_saved(ckpt, [])

    @property
    def checkpoints(self) -> int:
        return len(self._swapped)

    def finish(self, *, rehearse: bool = True) -> None:
        """Save (if nothing was), load back and restore the objects (``rehearse``); put the user's savers
        back and remove the temporary folder in any case."""
        import torch
        from ignite.handlers import Checkpoint

        try:
            for ckpt, _, _, folder in self._swapped if rehearse else []:
                if not checkpoint_saved(ckpt):
                    ckpt(self.trainer)
                path = f"{folder}/{checkpoint_saved(ckpt)[-1].filename}"
                states = {name: copy.deepcopy(obj.state_dict()) for name, obj in ckpt.to_save.items()}
                try:
                    Checkpoint.load_objects(to_load=ckpt.to_save, checkpoint=torch.load(path, weights_only=False))
                except Exception as exc:
                    for name, obj in ckpt.to_save.items():  # best effort: the error below is what matters
                        try:
                            obj.load_state_dict(states[name])
                        except Exception:  # noqa: S110 - the object cannot load states at all
                            pass
                    raise RuntimeError(f"fast_dev_run: the checkpoint that {type(ckpt).__name__}(to_save="
                                       f"{sorted(ckpt.to_save)}) writes could not be loaded back ({type(exc).__name__}: "
                                       f"{exc}); a real run could not resume from it") from exc
                for name, obj in ckpt.to_save.items():
                    obj.load_state_dict(states[name])
        finally:
            for ckpt, saver, saved, _ in self._swapped:
                ckpt.save_handler = saver
                set_checkpoint_saved(ckpt, saved)
            shutil.rmtree(self.folder, ignore_errors=True)
