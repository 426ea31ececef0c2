"""Batched fetch: a ``DataLoader`` over in-memory tensors reads each batch with one index per tensor.

A ``DataLoader`` reads a ``TensorDataset`` one sample at a time (``dataset[i]`` for every index of the
batch) and then stacks the samples (``default_collate``): on a small model this Python work is a large
part of each step. :func:`with_batched_fetch` gives a loader that yields the same batches, bit for bit and
in the same order, by indexing each tensor once per batch. It keeps the user's sampler (and its random
generator), so the order, the random draws and everything a checkpoint saves of the loader are the same.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["with_batched_fetch", "batched_fetch_refusal"]


class TensorBatches(torch.utils.data.Dataset):
    """A ``TensorDataset`` (optionally seen through a ``Subset``) read a batch at a time: ``__getitems__``
    returns the collated batch, as ``default_collate`` would build it. The tensors (and the subset's indices)
    are looked up on every batch, so a dataset whose ``tensors`` an app replaces between epochs is read as
    the plain loader would read it."""

    def __init__(self, dataset: Any, subset: Any = None) -> None:
        self.dataset = dataset
        self.subset = subset
        self._indices: tuple[Any, torch.Tensor | None] = (None, None)  # (subset.indices, as a tensor)

    def _rows(self, rows: torch.Tensor) -> torch.Tensor:
        if self.subset is None:
            return rows
        if self._indices[0] is not self.subset.indices:
            self._indices = (self.subset.indices, torch.as_tensor(list(self.subset.indices), dtype=torch.long))
        return self._indices[1][rows]  # type: ignore[index]

    def __len__(self) -> int:
        return len(self.subset if self.subset is not None else self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        return (self.subset if self.subset is not None else self.dataset)[index]

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        rows = self._rows(torch.as_tensor(indices, dtype=torch.long))
        # a list, as default_collate returns for samples that are tuples
        return [t[rows] for t in self.dataset.tensors]


def _already_collated(batch: Any) -> Any:
    return batch


def _tensor_source(dataset: Any) -> tuple[Any, Any] | str:
    """The ``TensorDataset`` behind ``dataset`` and the ``Subset`` around it (or ``None``), or why ``dataset``
    is not plain in-memory tensors."""
    from torch.utils.data import Subset, TensorDataset

    subset = None
    if type(dataset) is Subset:
        subset, dataset = dataset, dataset.dataset
    if type(dataset) is not TensorDataset:
        return f"its dataset is a {type(dataset).__name__}, not a TensorDataset (or a Subset of one)"
    tensors = dataset.tensors
    if not tensors or any(type(t) is not torch.Tensor or t.layout != torch.strided for t in tensors):
        return "its TensorDataset holds tensor subclasses or non-strided tensors"
    return dataset, subset


def _batched_source(loader: Any) -> tuple[Any, Any] | str:
    """The ``TensorDataset`` (and ``Subset``) that ``loader`` reads, or why it is not read batch-wise."""
    from torch.utils.data import DataLoader
    from torch.utils.data._utils.collate import default_collate

    if type(loader) is not DataLoader:
        return (
            "it is not a torch DataLoader"
            if not isinstance(loader, DataLoader)
            else f"it is a {type(loader).__name__}, a DataLoader subclass"
        )
    if loader.num_workers != 0:
        return f"it reads with worker processes (num_workers={loader.num_workers})"
    if loader.batch_sampler is None:
        return "it has no batch sampler (batch_size=None)"
    if loader.collate_fn is not default_collate:
        return "it has a collate_fn of its own"
    return _tensor_source(loader.dataset)


def batched_fetch_refusal(loader: Any) -> str | None:
    """Why :func:`with_batched_fetch` keeps ``loader`` as it is (``None``: it reads batches whole)."""
    source = _batched_source(loader)
    return source if isinstance(source, str) else None


def with_batched_fetch(loader: Any) -> Any:
    """``loader``, reading each batch with one index per tensor when it is a single-process ``DataLoader``
    over a ``TensorDataset`` (or a ``Subset`` of one) with the default ``collate_fn``; any other loader or
    iterable comes back unchanged (:func:`batched_fetch_refusal` says why).

    The batches are the same tensors in the same order: the new loader shares ``loader``'s sampler (or
    batch sampler) and random generator, so it draws exactly what ``loader`` would have drawn.

    >>> import torch
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> data = TensorDataset(torch.arange(10.0).unsqueeze(1), torch.arange(10))
    >>> def shuffled_loader():
    ...     return DataLoader(data, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(0))
    >>> [y.tolist() for _, y in shuffled_loader()]
    [[3, 7, 5, 2], [0, 8, 1, 6], [9, 4]]
    >>> fast = with_batched_fetch(shuffled_loader())
    >>> [y.tolist() for _, y in fast]
    [[3, 7, 5, 2], [0, 8, 1, 6], [9, 4]]
    >>> type(fast.dataset).__name__, batched_fetch_refusal(DataLoader(data, batch_size=4, num_workers=2))
    ('TensorBatches', 'it reads with worker processes (num_workers=2)')
    """
    source = _batched_source(loader)
    if isinstance(source, str):
        return loader
    from torch.utils.data import DataLoader

    dataset, subset = source
    pinning: dict[str, Any] = {"pin_memory": loader.pin_memory}
    if loader.pin_memory and getattr(loader, "pin_memory_device", ""):
        pinning["pin_memory_device"] = loader.pin_memory_device
    batching: dict[str, Any]
    if loader.batch_size is not None:
        # DataLoader built the BatchSampler itself: build the same one around the same sampler
        batching = {"batch_size": loader.batch_size, "sampler": loader.sampler, "drop_last": loader.drop_last}
    else:
        batching = {"batch_sampler": loader.batch_sampler}
    return DataLoader(
        TensorBatches(dataset, subset), collate_fn=_already_collated, generator=loader.generator, **batching, **pinning
    )
