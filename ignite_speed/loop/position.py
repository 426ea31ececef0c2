"""The current epoch's data iterator, for exact resume: created when, and how far it has been read.

:class:`DataPosition` remembers the generator states when the epoch's iterator was created and how many
batches it gave, so that a resumed run draws the same remaining batches in the same order.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from ignite.engine import Engine

from ..data.loaders import data_length
from .layout import RunLayout
from .resume import capture_rng, draw_iterator_end, recreate_iterator, replay_batches, restore_rng

__all__ = ["DataPosition", "replay_open_window"]


class DataPosition:
    """The current epoch's data iterator: created when, and how far it has been read."""

    def __init__(self) -> None:
        self.creation_rng: dict[str, Any] | None = None  # generator states when the iterator was created
        self.fetched = 0  # batches drawn from it
        self.need_iterator = True  # the next EPOCH_STARTED creates the iterator (first epoch of a run())
        self.resume_iterator = False  # the next EPOCH_STARTED rebuilds the interrupted run's iterator
        self.resume_mid_epoch = False  # ... inside an epoch whose counters come from the checkpoint
        self.replay = 0  # ... of which these last fetched batches are replayed (an open accumulation window)
        self.restarted = False  # the next EPOCH_STARTED starts a fresh epoch of a resume under another layout
        self.layout: RunLayout | None = None  # what the data order depends on (the run's, or the loaded one's)

    def reset(self) -> None:
        self.creation_rng, self.fetched = None, 0

    def start_run(self) -> None:
        """A ``trainer.run()`` starts: its first epoch makes a fresh iterator (unless it resumes)."""
        self.need_iterator = True

    def end_run(self) -> None:
        """The run ends: Ignite drops its iterator, a continuation starts afresh."""
        self.creation_rng = None

    def resume(self, mid_epoch: bool, replay: int) -> None:
        """The next epoch start rebuilds the saved run's iterator (``mid_epoch``: inside its epoch, with
        ``replay`` batches of an open accumulation window to replay)."""
        self.resume_iterator = True
        self.resume_mid_epoch = mid_epoch
        self.replay = replay

    def restart(self) -> None:
        """A resume under another layout (``allow_resume_changes``): nothing of the saved run's iterator is
        rebuilt; the next epoch start makes a fresh iterator."""
        self.reset()
        self.resume_iterator = self.resume_mid_epoch = False
        self.replay = 0
        self.need_iterator = self.restarted = True

    def resume_done(self) -> None:
        """A resumed run's pending decision ended the saved epoch: nothing of it is left to rebuild."""
        self.resume_mid_epoch = False
        self.replay = 0

    def take_replay(self) -> int:
        """The batches to replay at this epoch start (once)."""
        replay, self.replay = self.replay, 0
        return replay

    def count(self) -> None:
        self.fetched += 1

    def new_iterator(self, engine: Engine) -> None:
        """Give ``engine`` a fresh iterator of its data (remembering the generator states it starts from)."""
        data = engine.state.dataloader
        self.creation_rng = capture_rng(data)
        engine.set_data(data)  # type: ignore[arg-type]
        self.fetched = 0

    def on_iterator_renewed(self, engine: Engine, *_: Any, **__: Any) -> None:
        # Ignite makes a new iterator right after DATALOADER_STOP_ITERATION and TERMINATE_SINGLE_EPOCH
        self.creation_rng = capture_rng(engine.state.dataloader)
        self.fetched = 0

    def on_epoch_data(self, engine: Engine) -> bool:
        """The epoch's iterator: after a resume the interrupted run's, fast-forwarded past the batches it
        had consumed; at a run's first epoch a fresh one. Returns whether this is the first epoch of a resume
        under another layout (:meth:`restart`)."""
        restarted, self.restarted = self.restarted, False
        if self.resume_iterator:
            self.resume_iterator = False
            self.resume_mid_epoch = False
            self.need_iterator = False
            data = engine.state.dataloader
            length = data_length(data)
            exhausted = length is not None and self.fetched >= length
            if self.creation_rng is not None and not exhausted:
                recreate_iterator(engine, self.creation_rng, self.fetched - self.replay)
                return restarted
            self.replay = 0
            if self.creation_rng is not None and exhausted:
                # the saved epoch read its iterator to the end: draw what that iterator draws as it ends, then
                # make the next epoch's iterator, as the uninterrupted run did at its next batch
                draw_iterator_end(data, self.creation_rng)
                self.new_iterator(engine)
                return restarted
        if self.need_iterator:
            self.need_iterator = False
            self.new_iterator(engine)
        return restarted

    def state_dict(self) -> dict[str, Any]:
        return {"iterator_rng": self.creation_rng, "iterator_fetched": int(self.fetched),
                "layout": None if self.layout is None else self.layout.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.creation_rng = state.get("iterator_rng")
        self.fetched = int(state.get("iterator_fetched", 0))
        self.layout = RunLayout.from_state(state.get("layout"))  # (None in a version-3 checkpoint)


def replay_open_window(engine: Engine, position: DataPosition, batches: int, window: Any, window_rng: Any,
                       accumulate: int, model: Any = None) -> None:
    """Replay the ``batches`` of an open accumulation window through the trainer's step (``window``: the
    step's accumulation window, or None when the step cannot; ``window_rng``: the generator states where
    the window began; ``model``: the step's model, whose buffers are put back afterwards)."""
    if window is None:
        warnings.warn(f"the checkpoint was written inside an accumulation window ({batches} of "
                      f"accumulate_grad_batches={accumulate} batches done); their gradients are in no "
                      f"checkpoint and this trainer's process function cannot replay them (create_trainer's "
                      f"can), so the resumed run is not exact; checkpoint on StepEvents.OPTIMIZER_STEP to avoid "
                      f"it", UserWarning, stacklevel=2)
        replay_batches(engine, batches, None, run=False)
        return
    # Restore, not replace: the replay is the only way to rebuild the window's gradients (they are in no
    # checkpoint), and it touches nothing but them and the buffers a train-mode forward updates (BatchNorm's
    # running statistics and num_batches_tracked, already counted in the checkpoint). No optimizer step
    # runs inside a window, so parameters, optimizer and scaler stay; the generators are put back by
    # replay_batches. BatchNorm normalises with the batch's own statistics in train mode, so the replayed
    # gradients do not depend on the buffers' values.
    buffers = [(b, b.detach().clone()) for b in model.buffers()] if model is not None else []
    try:
        if position.fetched == batches and position.creation_rng is not None:
            # the window began with the epoch's iterator: making that iterator draws from the generators too
            # (the loader's base seed, a shuffling sampler's seed), so replay from its creation on
            data = engine.state.dataloader
            now = capture_rng(data)
            restore_rng(position.creation_rng, data)
            try:
                engine.set_data(data)  # type: ignore[arg-type]
                replay_batches(engine, batches, {"later": (window_rng or {}).get("later") or {}})
            finally:
                restore_rng(now, data)
        else:
            replay_batches(engine, batches, window_rng)
    finally:
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
