"""Training and validation data: lengths, limited and sequential copies of loaders, and
:func:`with_batched_fetch` (a ``TensorDataset`` read one slice per batch)."""

from .batched_fetch import batched_fetch_refusal, with_batched_fetch
from .loaders import data_length, for_ignite, sequential_copy

__all__ = ["with_batched_fetch", "batched_fetch_refusal", "data_length", "for_ignite", "sequential_copy"]
