"""Casting the floating tensors of a batch, for ``*-true`` precisions and DeepSpeed's fp16/bf16."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

__all__ = ["cast_floating"]


def cast_floating(data: Any, dtype: torch.dtype) -> Any:
    """``data`` (tensors in nested tuples, lists, namedtuples and mappings) with its floating tensors cast to
    ``dtype``; other tensors and values unchanged."""
    if isinstance(data, torch.Tensor):
        return data.to(dtype) if data.is_floating_point() else data
    if isinstance(data, Mapping):
        items = {k: cast_floating(v, dtype) for k, v in data.items()}
        try:
            return type(data)(items)  # type: ignore[call-arg]
        except TypeError:  # a mapping type whose constructor takes something else
            return items
    if isinstance(data, tuple) and hasattr(data, "_fields"):  # namedtuple
        return type(data)(*(cast_floating(v, dtype) for v in data))
    if isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        return type(data)(cast_floating(v, dtype) for v in data)  # type: ignore[call-arg]
    return data
