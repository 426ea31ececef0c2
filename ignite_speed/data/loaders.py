"""Data limiting: how many batches each loader gives, and sequential copies for ``overfit_batches``.

The trainer-side mechanics (a fresh iterator every epoch) live in :mod:`ignite_speed.loop`; this
module answers questions about loaders.
"""

from __future__ import annotations

from typing import Any

from .._callers import warn_at_users_line
from ..config.durations import BatchLimit

__all__ = ["data_length", "for_ignite", "limited_length", "sequential_copy", "shuffles"]


def data_length(data: Any) -> int | None:
    """``len(data)``, or ``None`` for iterables without a (usable) length.

    A ``__len__`` that raises ``TypeError`` (a DataLoader over an ``IterableDataset`` without a length)
    or ``NotImplementedError`` (an abstract ``__len__``, e.g. some samplers and wrapped datasets) means
    "no length", as in Lightning's ``has_len``.
    """
    if data is None:
        return None
    try:
        return len(data)
    except (TypeError, NotImplementedError):
        return None


class UnsizedView:
    """``data`` without its ``__len__`` (every other attribute is ``data``'s): what Ignite gets for a loader
    whose ``__len__`` raises ``NotImplementedError``, since Ignite treats only a ``TypeError`` as "no length"."""

    def __init__(self, data: Any) -> None:
        self.data = data

    def __iter__(self) -> Any:
        return iter(self.data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.data, name)


def for_ignite(data: Any) -> Any:
    """``data`` as ``Engine.run`` can take it: a loader whose length is unusable is passed as unsized."""
    if data is None or isinstance(data, UnsizedView):
        return data
    try:
        len(data)
    except TypeError:
        return data  # Ignite itself treats it as unsized
    except NotImplementedError:
        return UnsizedView(data)
    return data


def limited_length(data: Any, limit: BatchLimit, flag: str, *, length: int | None = None) -> int | None:
    """Batches to take from ``data`` under ``limit`` (``None``: all of an iterable of unknown length)."""
    if length is None:
        length = data_length(data)
    return limit.resolve(length, flag)


def shuffles(loader: Any) -> bool:
    """Whether a DataLoader draws its batches in a random order."""
    from torch.utils.data import DataLoader, SequentialSampler

    if not isinstance(loader, DataLoader) or loader.batch_sampler is None:
        return False
    sampler = getattr(loader.batch_sampler, "sampler", None)
    return sampler is not None and not isinstance(sampler, SequentialSampler)


def sequential_copy(loader: Any, stage: str) -> Any:
    """A copy of ``loader`` that visits the data in order (``overfit_batches`` wants the same batches
    every epoch). Loaders that already are sequential, and non-DataLoader iterables, come back as is."""
    from torch.utils.data import DataLoader, IterableDataset

    if not shuffles(loader) or isinstance(loader.dataset, IterableDataset):
        return loader
    if type(loader.batch_sampler).__name__ != "BatchSampler":
        warn_at_users_line(
            f"overfit_batches: the {stage} loader has a custom batch sampler, which is kept; its "
            f"batches may differ between epochs"
        )
        return loader
    warn_at_users_line(
        f"overfit_batches: turning off shuffling of the {stage} loader so that every epoch sees the same batches"
    )
    kwargs: dict[str, Any] = dict(
        batch_size=loader.batch_size,
        shuffle=False,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        drop_last=loader.drop_last,
        timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
        generator=loader.generator,
        persistent_workers=loader.persistent_workers,
    )
    if loader.num_workers > 0:
        kwargs["prefetch_factor"] = loader.prefetch_factor
        kwargs["multiprocessing_context"] = loader.multiprocessing_context
    return DataLoader(loader.dataset, **kwargs)
