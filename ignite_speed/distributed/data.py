"""``prepare_dataloader`` and ``attach_set_epoch``: one shard of the data per rank, reshuffled every epoch."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, IterableDataset, RandomSampler, SequentialSampler
from torch.utils.data.distributed import DistributedSampler

from ._plan import as_config

__all__ = ["prepare_dataloader", "attach_set_epoch", "find_sampler"]

# DataLoader arguments carried over when a loader is rebuilt around a distributed sampler.
_LOADER_ARGS = (
    "batch_size",
    "num_workers",
    "collate_fn",
    "pin_memory",
    "drop_last",
    "timeout",
    "worker_init_fn",
    "multiprocessing_context",
    "generator",
    "prefetch_factor",
    "persistent_workers",
    "pin_memory_device",
)


def find_sampler(loader: Any) -> Any:
    """The sampler whose ``set_epoch`` drives ``loader``'s order (``None`` if it has none)."""
    sampler = getattr(loader, "sampler", None)
    if sampler is not None and hasattr(sampler, "set_epoch"):
        return sampler
    batch_sampler = getattr(loader, "batch_sampler", None)
    inner = getattr(batch_sampler, "sampler", None)
    if inner is not None and hasattr(inner, "set_epoch"):
        return inner
    if batch_sampler is not None and hasattr(batch_sampler, "set_epoch"):
        return batch_sampler
    return sampler


def prepare_dataloader(
    data: Dataset | DataLoader, cfg: Any = None, *, shuffle: bool | None = None, seed: int = 0, **dataloader_kwargs: Any
) -> DataLoader:
    """A ``DataLoader`` that reads this rank's shard of ``data``.

    ``data`` is a ``Dataset`` (``dataloader_kwargs`` go to ``DataLoader``) or an existing
    ``DataLoader`` (rebuilt with the same settings around a distributed sampler; then no
    ``dataloader_kwargs`` may be given; with one process it is returned unchanged). ``batch_size`` is per process, as in Lightning (not divided
    by the world size as ``idist.auto_dataloader`` does). ``shuffle`` defaults to the loader's own
    (``True`` for a ``RandomSampler``) or ``False`` for a dataset. A custom sampler is wrapped in
    ignite's ``DistributedProxySampler``. Shuffling is seeded by ``seed`` and the epoch (also with
    one process), so every rank agrees on the permutation and a resumed run replays the same order.
    An ``IterableDataset`` has to shard itself and gets a plain loader.

    Ignite never calls ``sampler.set_epoch``: pass the loader to :func:`attach_set_epoch` so every
    epoch gets a new order.
    """
    import ignite.distributed as idist

    as_config(cfg)  # validates cfg; the world size comes from the running process group
    world, rank = idist.get_world_size(), idist.get_rank()
    if isinstance(data, DataLoader):
        if dataloader_kwargs:
            raise TypeError(
                f"prepare_dataloader(loader, ...): DataLoader arguments {sorted(dataloader_kwargs)} "
                f"cannot be applied to an existing DataLoader; pass the dataset instead"
            )
        loader = data
        dataset = loader.dataset
        if world == 1 or isinstance(dataset, IterableDataset) or isinstance(loader.sampler, DistributedSampler):
            return loader
        kwargs, shuffle, custom = _rebuild_settings(loader, shuffle)
    else:
        if not isinstance(data, Dataset) and not hasattr(data, "__getitem__"):
            raise TypeError(f"data has type {type(data).__name__}; accepted: a torch Dataset or DataLoader")
        dataset, kwargs = data, dict(dataloader_kwargs)
        if "sampler" in kwargs and (shuffle or kwargs.get("shuffle")):
            raise ValueError("shuffle=True together with sampler=...: give one of them")
        custom = kwargs.pop("sampler", None)
        shuffle = bool(shuffle if shuffle is not None else kwargs.pop("shuffle", False))
        kwargs.pop("shuffle", None)
        if "batch_sampler" in kwargs and world > 1:
            raise ValueError("batch_sampler=... cannot be sharded automatically; pass batch_size and a sampler")
        if torch.cuda.is_available() and "pin_memory" not in kwargs:
            kwargs["pin_memory"] = True
        if (
            isinstance(dataset, IterableDataset)
            or isinstance(custom, DistributedSampler)
            or (world == 1 and (custom is not None or not shuffle))
        ):
            if custom is not None:
                kwargs["sampler"] = custom
            return DataLoader(dataset, **kwargs)
    if custom is not None:
        from ignite.distributed.auto import DistributedProxySampler

        dist_sampler: Any = DistributedProxySampler(custom, num_replicas=world, rank=rank)  # type: ignore[arg-type]
    else:
        dist_sampler = DistributedSampler(
            dataset,
            num_replicas=world,
            rank=rank,
            shuffle=bool(shuffle),
            seed=seed,
            drop_last=bool(kwargs.get("drop_last", False)),
        )
    return DataLoader(dataset, sampler=dist_sampler, **kwargs)


def _rebuild_settings(loader: DataLoader, shuffle: bool | None) -> tuple[dict[str, Any], bool, Any]:
    """What rebuilding ``loader`` around a distributed sampler keeps: its ``DataLoader`` arguments, whether it
    shuffles (``shuffle``, else as its own sampler does), and its sampler when that is a custom one to wrap
    (else ``None``)."""
    if type(loader.batch_sampler) not in (BatchSampler, type(None)):
        raise ValueError(
            f"the DataLoader uses a custom batch_sampler ({type(loader.batch_sampler).__name__}); "
            f"shard it yourself per rank, or pass the dataset with a sampler instead"
        )
    kwargs = {k: getattr(loader, k) for k in _LOADER_ARGS if hasattr(loader, k)}
    if loader.batch_size is None:
        raise ValueError("the DataLoader has batch_size=None (no automatic batching); give it a batch_size")
    if kwargs.get("num_workers", 0) == 0:
        # (DataLoader refuses these two when set without worker processes)
        kwargs.pop("prefetch_factor", None)
        kwargs.pop("persistent_workers", None)
    sampler = loader.sampler
    if shuffle is None:
        shuffle = isinstance(sampler, RandomSampler)
    custom = None if isinstance(sampler, (RandomSampler, SequentialSampler)) else sampler
    return kwargs, shuffle, custom


def attach_set_epoch(engine: Any, loader: Any) -> Any:
    """Call ``sampler.set_epoch(epoch - 1)`` at every ``EPOCH_STARTED`` of ``engine`` (epochs are
    1-based in Ignite, 0-based for samplers), so each epoch is shuffled differently and identically
    on every rank. A no-op handler is not added when the loader's sampler has no ``set_epoch``.
    Returns the removable handle, or ``None``.
    """
    from ignite.engine import Events

    sampler = find_sampler(loader)
    if sampler is None or not hasattr(sampler, "set_epoch"):
        return None

    def _set_epoch(eng: Any) -> None:
        sampler.set_epoch(eng.state.epoch - 1)

    return engine.add_event_handler(Events.EPOCH_STARTED, _set_epoch)
