"""Exact resume: random-generator snapshots and the data position of a training run.

A run resumed from a mid-epoch checkpoint must see the same remaining batches, in the same order,
and draw the same random numbers as the run that was never interrupted. Ignite alone replays an
interrupted epoch from batch 0 of a fresh iterator (see docs/reliability.rst). The pieces here let
:class:`~ignite_speed.speedups.Speedups` do better:

* :func:`capture_rng` / :func:`restore_rng`: the global generators (torch CPU and CUDA, ``random``,
  NumPy) and the ``torch.Generator`` objects of a DataLoader and its samplers, as plain data that
  ``torch.load(weights_only=True)`` reads back;
* :func:`recreate_iterator`: rebuild the iterator of the current epoch under the generator states it
  was created with and skip the batches already consumed (the batches are loaded and dropped);
* :func:`set_epoch_position`: tell Ignite where inside the epoch the run continues (Ignite derives
  it from ``iteration % epoch_length``, which is wrong once an epoch has ended early).

In distributed runs every rank restores the states saved by the rank that wrote the checkpoint.
"""

from __future__ import annotations

import random
from typing import Any

import torch
from ignite.engine import Engine
from torch.utils.data import DataLoader

from .._compat import data_iterator, process_function, set_batches_done_in_epoch

__all__ = ["capture_rng", "restore_rng", "loader_generators", "recreate_iterator", "indices_only", "set_epoch_position",
           "torch_rng_state", "set_torch_rng_state", "replay_batches"]


def loader_generators(loader: Any) -> list[torch.Generator]:
    """The distinct ``torch.Generator`` objects a DataLoader (or its samplers) draws from."""
    found: list[torch.Generator] = []
    candidates = [getattr(loader, "generator", None), getattr(getattr(loader, "sampler", None), "generator", None),
                  getattr(getattr(getattr(loader, "batch_sampler", None), "sampler", None), "generator", None)]
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
        state["numpy"] = {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                          "has_gauss": int(has_gauss), "cached": float(cached)}
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

        np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                             np_state["has_gauss"], np_state["cached"]))
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
    no counter of Ignite's, under the generator states ``rng`` (those of the batches' first run); the
    generator states are put back afterwards. Rebuilds the gradients that a checkpoint written inside an
    accumulation window does not hold. ``run=False`` only draws the batches."""
    iterator = data_iterator(engine)
    now = torch_rng_state()
    if rng is not None:
        set_torch_rng_state(rng)
    try:
        for _ in range(n):
            batch = next(iterator)
            if run:
                engine.state.batch = batch
                process_function(engine)(engine, batch)
    finally:
        set_torch_rng_state(now)


def indices_only(loader: Any) -> bool:
    """Whether an iterator of ``loader`` can be moved forward by its batch sampler alone (no data loaded): a
    single-process ``DataLoader``, whose iterator draws from no generator when it loads a batch."""
    return isinstance(loader, DataLoader) and loader.num_workers == 0 and loader.batch_sampler is not None


def recreate_iterator(engine: Engine, creation_rng: dict[str, Any] | None, consumed: int, *,
                      skip_loading: bool = False) -> None:
    """Give ``engine`` a fresh iterator of its data as it was after ``consumed`` batches.

    The iterator is created under ``creation_rng`` (the generator states when the interrupted run
    created it), ``consumed`` batches are drawn and dropped, and the generator states are then put
    back to what they were before the call. ``skip_loading`` (only for :func:`indices_only` loaders): the
    batches' indices are drawn from the iterator's batch sampler and no batch is loaded.
    """
    data = engine.state.dataloader
    now = capture_rng(data)
    if creation_rng is not None:
        restore_rng(creation_rng, data)
    try:
        engine.set_data(data)  # type: ignore[arg-type]
        iterator = data_iterator(engine)
        if skip_loading:
            iterator = iterator._sampler_iter  # (torch's _SingleProcessDataLoaderIter: its batch sampler's)
        for skipped in range(consumed):
            try:
                next(iterator)
            except StopIteration:
                raise ValueError(
                    f"cannot resume: the checkpoint had consumed {consumed} batches of the current data iterator, "
                    f"but the training data gives only {skipped}; resume with the same data") from None
    finally:
        restore_rng(now, data)


def set_epoch_position(engine: Engine, epoch: int, batches_done: int) -> None:
    """Make the next ``run()`` continue epoch ``epoch + 1`` (1-based) after ``batches_done`` batches.

    Ignite computes both from ``iteration`` and ``epoch_length``, which is only right when no epoch
    ended early; the in-epoch counter is private on every supported version (see ``_compat``).
    """
    engine.state.epoch = int(epoch)
    set_batches_done_in_epoch(engine, batches_done)
