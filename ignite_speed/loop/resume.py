"""Exact resume: everything a run needs to continue where a checkpoint stood, in one place.

A run resumed from a mid-epoch checkpoint must see the same remaining batches, in the same order, and draw
the same random numbers as the run that was never interrupted. Ignite alone replays an interrupted epoch
from batch 0 of a fresh iterator (see docs/reliability.rst). The pieces, in the order a resume uses them:

* generator snapshots (:func:`capture_rng` / :func:`restore_rng`): the global generators (torch CPU and
  CUDA, ``random``, NumPy) and the ``torch.Generator`` objects of a DataLoader and its samplers, as plain
  data that ``torch.load(weights_only=True)`` reads back;
* the data position (:class:`DataPosition`): when the epoch's iterator was created and how many batches it
  gave; :func:`recreate_iterator` rebuilds it and skips the batches already consumed, and
  :func:`replay_open_window` replays the batches of an open accumulation window through the step (their
  gradients are in no checkpoint); :func:`set_epoch_position` tells Ignite where inside the epoch the run
  continues (Ignite derives it from ``iteration % epoch_length``, wrong once an epoch has ended early);
* the run's layout (:class:`RunLayout`): what the data order and the step counting depend on, compared
  when a run resumes (:func:`layout_refusal`, :func:`layout_warning`);
* the loop's checkpoint (:func:`loop_checkpoint`, :func:`read_loop_checkpoint`): one versioned convention;
* ``fast_dev_run``'s rehearsal of the app's ``Checkpoint`` handlers (:class:`CheckpointRehearsal`).

In distributed runs every rank restores the states saved by the rank that wrote the checkpoint.
"""

from __future__ import annotations

import copy
import random
import shutil
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from ignite.engine import Engine

from .._compat import (
    checkpoint_handlers,
    checkpoint_saved,
    data_iterator,
    process_function,
    set_batches_done_in_epoch,
    set_checkpoint_saved,
)
from ..config.durations import BatchLimit
from ..data.loaders import data_length
from .clock import TrainingClock
from .hooks import LoopHooks
from .state import LoopState, Stage
from .stop import StopController, StopReason

__all__ = [
    "capture_rng",
    "restore_rng",
    "loader_generators",
    "recreate_iterator",
    "draw_iterator_end",
    "set_epoch_position",
    "torch_rng_state",
    "set_torch_rng_state",
    "replay_batches",
    "DataPosition",
    "replay_open_window",
    "RunLayout",
    "layout_refusal",
    "layout_warning",
    "STATE_VERSION",
    "loop_checkpoint",
    "copy_checkpoint",
    "read_loop_checkpoint",
    "migrate_flat_state",
    "CheckpointRehearsal",
]


def loader_generators(loader: Any) -> list[torch.Generator]:
    """The distinct ``torch.Generator`` objects a DataLoader (or its samplers) draws from."""
    found: list[torch.Generator] = []
    candidates = [
        getattr(loader, "generator", None),
        getattr(getattr(loader, "sampler", None), "generator", None),
        getattr(getattr(getattr(loader, "batch_sampler", None), "sampler", None), "generator", None),
    ]
    for gen in candidates:
        if isinstance(gen, torch.Generator) and all(gen is not g for g in found):
            found.append(gen)
    return found


def capture_rng(loader: Any = None) -> dict[str, Any]:
    """The current states of the global generators and of ``loader``'s generators (plain data)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    version, internal, gauss = random.getstate()
    state["python"] = {"version": int(version), "state": [int(v) for v in internal], "gauss": gauss}
    try:
        import numpy as np
    except ImportError:  # numpy is optional
        pass
    else:
        np_state: Any = np.random.get_state()
        _, keys, pos, has_gauss, cached = np_state
        state["numpy"] = {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        }
    state["loader"] = [g.get_state() for g in loader_generators(loader)]
    return state


def restore_rng(state: dict[str, Any], loader: Any = None) -> None:
    """Put back what :func:`capture_rng` returned."""
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    py = state.get("python")
    if py is not None:
        random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    np_state = state.get("numpy")
    if np_state is not None:
        import numpy as np

        np.random.set_state(
            (
                "MT19937",
                np_state["keys"].numpy().astype(np.uint32),
                np_state["pos"],
                np_state["has_gauss"],
                np_state["cached"],
            )
        )
    generators = loader_generators(loader)
    saved = state.get("loader") or []
    if len(saved) == len(generators):
        for gen, gen_state in zip(generators, saved):
            gen.set_state(gen_state)


def torch_rng_state() -> dict[str, Any]:
    """torch's own generator states (CPU, and CUDA once initialized): what a forward pass draws from
    (dropout). Cheap enough to take at every optimizer step under gradient accumulation."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_torch_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def replay_batches(engine: Engine, n: int, rng: dict[str, Any] | None, *, run: bool = True) -> None:
    """Run ``engine``'s process function on the next ``n`` batches of its live iterator, with no event and
    no counter of Ignite's, under the generator states ``rng`` (those of the batches' first run; its
    ``"later"`` maps a batch's index to the states it started from when something drew between the batches,
    a validation run, say); the generator states are put back afterwards. Rebuilds the gradients that a
    checkpoint written inside an accumulation window does not hold. ``run=False`` only draws the batches."""
    iterator = data_iterator(engine)
    now = torch_rng_state()
    if rng is not None and "torch" in rng:
        set_torch_rng_state(rng)
    later = (rng or {}).get("later") or {}
    try:
        for index in range(n):
            if index in later:
                set_torch_rng_state(later[index])
            batch = next(iterator)
            if run:
                engine.state.batch = batch
                process_function(engine)(engine, batch)
    finally:
        set_torch_rng_state(now)


def recreate_iterator(engine: Engine, creation_rng: dict[str, Any] | None, consumed: int) -> None:
    """Give ``engine`` a fresh iterator of its data as it was after ``consumed`` batches.

    The iterator is created under ``creation_rng`` (the generator states when the interrupted run
    created it), ``consumed`` batches are drawn and dropped, and the generator states are then put
    back to what they were before the call.
    """
    data = engine.state.dataloader
    now = capture_rng(data)
    if creation_rng is not None:
        restore_rng(creation_rng, data)
    try:
        engine.set_data(data)  # type: ignore[arg-type]
        iterator = data_iterator(engine)
        for skipped in range(consumed):
            try:
                next(iterator)
            except StopIteration:
                raise ValueError(
                    f"cannot resume: the checkpoint had consumed {consumed} batches of the current data iterator, "
                    f"but the training data gives only {skipped}; resume with the same data"
                ) from None
    finally:
        restore_rng(now, data)


def draw_iterator_end(loader: Any, creation_rng: dict[str, Any]) -> None:
    """Advance ``loader``'s own generators past the end of an iterator created under ``creation_rng`` and read
    to its end, without loading data.

    An uninterrupted run reads the exhausted iterator once more at the next epoch, and its sampler draws from
    its generator as it ends (``RandomSampler`` draws one more permutation for its empty remainder) before
    Ignite makes the next epoch's iterator. A run resumed from a checkpoint taken after the epoch's last batch
    makes that iterator afresh, so it draws these first: the sampler's iterator is made as a ``DataLoader``
    makes it, then the loader's base seed is drawn, then the sampler is read to its end. The global generators
    are left as they are (these iterators drew from them when they were made, before the checkpoint)."""
    from torch.utils.data import DataLoader, IterableDataset

    generators = loader_generators(loader)
    if not generators or not isinstance(loader, DataLoader) or isinstance(loader.dataset, IterableDataset):
        return
    sampler = loader.batch_sampler if loader.batch_sampler is not None else loader.sampler
    now = capture_rng(loader)
    restore_rng(creation_rng, loader)
    try:
        indices = iter(sampler)
        torch.empty((), dtype=torch.int64).random_(generator=loader.generator)
        for _ in indices:
            pass
        ended = [g.get_state() for g in generators]
    finally:
        restore_rng(now, loader)
    for gen, state in zip(generators, ended):
        gen.set_state(state)


def set_epoch_position(engine: Engine, epoch: int, batches_done: int) -> None:
    """Make the next ``run()`` continue epoch ``epoch + 1`` (1-based) after ``batches_done`` batches.

    Ignite computes both from ``iteration`` and ``epoch_length``, which is only right when no epoch
    ended early; the in-epoch counter is private on every supported version (see ``_compat``).
    """
    engine.state.epoch = int(epoch)
    set_batches_done_in_epoch(engine, batches_done)


# ------------------------------------------------------------------ the data position
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

    def open_epoch(self, engine: Engine, state: LoopState, window: Any, model: Any, accumulate: int) -> None:
        """At each epoch start, last: the epoch's iterator (:meth:`on_epoch_data`); after a resume inside an
        accumulation window, the window's batches replayed (their gradients are in no checkpoint) through the
        step's ``window`` (``None``: the step cannot replay) and its ``model``."""
        resumed_mid_epoch = self.resume_mid_epoch
        restarted = self.on_epoch_data(engine)  # (True: a resume under another layout's fresh epoch)
        replay = self.take_replay()
        if (resumed_mid_epoch or restarted) and window is not None:
            # the step's own window counter follows the loop's position (Ignite's iteration % epoch_length is
            # wrong once an epoch ended early)
            window.resume(state.progress.batch_in_epoch - replay)
        if replay:
            replay_open_window(engine, self, replay, window, state.window_rng, accumulate, model)
        elif not resumed_mid_epoch and accumulate > 1:
            state.window_rng = torch_rng_state()  # the epoch's first window starts here

    def state_dict(self) -> dict[str, Any]:
        return {
            "iterator_rng": self.creation_rng,
            "iterator_fetched": int(self.fetched),
            "layout": None if self.layout is None else self.layout.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.creation_rng = state.get("iterator_rng")
        self.fetched = int(state.get("iterator_fetched", 0))
        self.layout = RunLayout.from_state(state.get("layout"))  # (None in a version-3 checkpoint)


def replay_open_window(
    engine: Engine,
    position: DataPosition,
    batches: int,
    window: Any,
    window_rng: Any,
    accumulate: int,
    model: Any = None,
) -> None:
    """Replay the ``batches`` of an open accumulation window through the trainer's step (``window``: the
    step's accumulation window, or None when the step cannot; ``window_rng``: the generator states where
    the window began; ``model``: the step's model, whose buffers are put back afterwards)."""
    if window is None:
        warnings.warn(
            f"the checkpoint was written inside an accumulation window ({batches} of "
            f"accumulate_grad_batches={accumulate} batches done); their gradients are in no "
            f"checkpoint and this trainer's process function cannot replay them (create_trainer's "
            f"can), so the resumed run is not exact; checkpoint on StepEvents.OPTIMIZER_STEP to avoid "
            f"it",
            UserWarning,
            stacklevel=2,
        )
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


# ------------------------------------------------------------------ the run's layout
# A resumed run continues exactly only when it draws the same batches per epoch, in the same order, and counts
# optimizer steps the same way as the run that wrote the checkpoint: that depends on the number of processes (a
# DistributedSampler deals the data out by it), each process's loader (its batch size and length), the batches per
# epoch that limit_train_batches leaves, and accumulate_grad_batches. A resume under other values is refused unless
# allow_resume_changes accepts it: the run then continues at the next epoch boundary with the counters kept
# (docs/preemption.rst, "A relaunch with another setup"). max_epochs, max_steps, max_time, the validation schedule
# and early stopping are not part of the layout.
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
    def of(
        cls,
        *,
        world_size: int,
        data: Any,
        data_length: int | None,
        train_batches: int | None,
        accumulate: int,
        limit: BatchLimit,
    ) -> RunLayout:
        batch_size = getattr(data, "batch_size", None)
        shown: int | float | None = None if limit.is_all else limit.value
        return cls(
            world_size=int(world_size),
            batch_size=batch_size if type(batch_size) is int else None,
            data_length=data_length,
            train_batches=train_batches,
            accumulate_grad_batches=int(accumulate),
            limit_train_batches=shown,
        )

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
    autoresume = (
        ""
        if source is None
        else (f"; to start from scratch instead, move {source} out of its folder or set autoresume=False")
    )
    return (
        f"cannot resume from {where}: it was written under another setup, and the data order or the counting "
        f"of optimizer steps would change (saved -> now): {_listed(changes)}. Resume with the saved setup, or "
        f"set allow_resume_changes=True (TrainingLoop.of(trainer).setup.allow_resume_changes = True with the "
        f"handlers alone) to continue at the next epoch boundary with the counters kept: an interrupted epoch ends "
        f"at the checkpoint's batch{autoresume}"
    )


def layout_warning(
    changes: list[tuple[str, Any, Any]], epoch: int, batch: int, train_batches: int | None, window: int
) -> str:
    """What a resume under another layout does (``epoch``: the 0-based epoch the checkpoint stood in,
    ``batch``: its batches done, 0 at an epoch boundary; ``window``: batches of an open accumulation window)."""
    text = f"resuming under another setup (allow_resume_changes=True; saved -> now: {_listed(changes)}): "
    if batch:
        left = "" if train_batches is None else f" of {train_batches}"
        text += (
            f"the interrupted epoch {epoch + 1} (1-based) ends after its batch {batch}{left}, its remaining "
            f"batches are skipped"
        )
        if window:
            text += (
                f", and the {window} batch{'es' * (window > 1)} of its open accumulation window give no "
                f"optimizer step (their gradients are in no checkpoint)"
            )
        text += f"; training continues with epoch {epoch + 2}"
    else:
        text += f"training continues with epoch {epoch + 1}"
    return text + " under the new setup, with the epoch, step and batch counters kept"


# ------------------------------------------------------------------ the loop's checkpoint
# ``TrainingLoop.state_dict()`` is ``{"version": 4, "loop": {...}, "<handler name>": handler.state_dict(), ...}``:
# the loop's own part (its LoopState, the stop controller, the clock, the data position and generator states, the
# run's data layout, stop requests not yet synced) and each registered handler's own state under its name. All
# plain data: ``torch.load(weights_only=True)`` reads it back. States saved by ignite-speed 0.1.0 (versions 1 and
# 2, one flat dict) are migrated when loaded. Version 4 added the run's layout under ``loop.data.layout``; a
# version-3 state has none and loads as it is (its resume is not checked against the layout, only against the
# batches per epoch).
STATE_VERSION = 4
_READ_VERSIONS = (3, 4)  # 3: without the run's layout
_FLAT_VERSIONS = (1, 2)  # ignite-speed 0.1.0: one flat dict


def loop_checkpoint(
    state: LoopState,
    controller: StopController,
    clock: TrainingClock,
    position: DataPosition,
    dataloader: Any,
    handlers: Iterable[LoopHooks],
    *,
    decision_pending: bool = False,
) -> dict[str, Any]:
    """The loop's checkpoint: its own part and each handler's state under the handler's name.
    ``decision_pending``: taken as a decision starts its validation run, to stand for the checkpoints written
    during that run: a run resumed from it makes the decision (its batch's or its epoch end's) again."""
    own: dict[str, Any] = {
        "state": state.state_dict(),
        "controller": controller.state_dict(),
        "clock": clock.state_dict(),
        # where the epoch's data iterator stands, and the generator states now (restored at resume)
        "data": {**position.state_dict(), "rng": capture_rng(dataloader)},
        "local_requests": [r.to_dict() for r in controller.local_requests()],
    }
    if decision_pending and state.stage is Stage.IN_EPOCH:  # (an epoch's end is pending already)
        own["state"]["stage"] = Stage.BATCH_PENDING.value
    checkpoint: dict[str, Any] = {"version": STATE_VERSION, "loop": own}
    for handler in handlers:
        part = handler.state_dict()
        # (kept while the validation runs: the loop's own parts are built fresh, a handler's may share its lists)
        checkpoint[handler.name] = copy_checkpoint(part) if decision_pending else part
    return checkpoint


def copy_checkpoint(value: Any) -> Any:
    """A copy of checkpoint data (dicts, lists, tensors, scalars) that later changes of either side do not
    reach; much cheaper than ``copy.deepcopy`` on the generator states."""
    if isinstance(value, dict):
        return {k: copy_checkpoint(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_checkpoint(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.clone()
    return value  # numbers, strings, None, tuples of them


def read_loop_checkpoint(
    checkpoint: Any,
    controller: StopController,
    clock: TrainingClock,
    position: DataPosition,
    handlers: Iterable[LoopHooks],
) -> tuple[LoopState, dict[str, Any] | None]:
    """Restore a :func:`loop_checkpoint` (migrating a 0.1.0 state) into the loop's parts and its handlers.
    Returns the loop's state and the generator states saved with it, which the resumed run restores at its
    start. A loaded run does not repeat the preemption its saved run was stopping for."""
    if not isinstance(checkpoint, dict):
        raise TypeError(f"speedups state has type {type(checkpoint).__name__}; accepted: a dict from state_dict()")
    version = checkpoint.get("version")
    if version in _FLAT_VERSIONS:
        checkpoint = migrate_flat_state(checkpoint)
    elif version not in _READ_VERSIONS:
        raise ValueError(
            f"speedups state has version {version!r}; this ignite-speed reads versions "
            f"{[*_FLAT_VERSIONS, *_READ_VERSIONS]}"
        )
    own = checkpoint["loop"]
    state = LoopState()
    state.load_state_dict(own["state"])
    controller.load_state_dict(own["controller"])
    clock.load_state_dict(own["clock"])
    data = own.get("data") or {}
    position.load_state_dict(data)
    for request in own.get("local_requests") or []:
        if request.get("reason") != StopReason.PREEMPTED.value:
            controller.request(request["reason"], request["message"], request["source"])
    for handler in handlers:
        part = checkpoint.get(handler.name)
        if part is not None:
            handler.load_state_dict(part)
    return state, data.get("rng")


def migrate_flat_state(state: dict[str, Any]) -> dict[str, Any]:
    """A state of ignite-speed 0.1.0 (one flat dict, versions 1 and 2) in the current layout."""
    concerns = state.get("concerns") or {}
    own = {
        "state": {
            key: state[key]
            for key in ("progress", "stage", "end_after_epoch", "epoch_ended_early", "window_batches", "window_rng")
            if key in state
        },
        "controller": state["controller"],
        "clock": state["clock"],
        "data": {
            "rng": state.get("rng"),
            "iterator_rng": state.get("iterator_rng"),
            "iterator_fetched": state.get("iterator_fetched", 0),
        },
        "local_requests": state.get("local_requests") or [],
    }
    migrated: dict[str, Any] = {
        "version": STATE_VERSION,
        "loop": own,
        "validation": {"last_val_end": state.get("last_val_end", 0.0), **concerns.get("validation", {})},
    }
    if "time_budget" in concerns:
        migrated["time_budget"] = concerns["time_budget"]
    if state.get("early_stopping") is not None:
        migrated["early_stopping"] = {**state["early_stopping"], "monitor_value": state.get("monitor_value")}
    if state.get("precision") is not None:
        migrated["precision"] = state["precision"]
    return migrated


# ------------------------------------------------------------------ fast_dev_run: rehearse the app's Checkpoint handlers
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
                    raise RuntimeError(
                        f"fast_dev_run: the checkpoint that {type(ckpt).__name__}(to_save="
                        f"{sorted(ckpt.to_save)}) writes could not be loaded back ({type(exc).__name__}: "
                        f"{exc}); a real run could not resume from it"
                    ) from exc
                for name, obj in ckpt.to_save.items():
                    obj.load_state_dict(states[name])
        finally:
            for ckpt, saver, saved, _ in self._swapped:
                ckpt.save_handler = saver
                set_checkpoint_saved(ckpt, saved)
            shutil.rmtree(self.folder, ignore_errors=True)
