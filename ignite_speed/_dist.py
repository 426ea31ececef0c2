"""The few collectives the loop controls need, over ``ignite.distributed``.

Kept tiny and dependency-free so the stop controller, the time budget and early stopping share one
implementation. Every function is a no-op shortcut when the world size is 1.
"""

from __future__ import annotations

from typing import Any


def get_world_size() -> int:
    import ignite.distributed as idist

    return int(idist.get_world_size())


def get_rank() -> int:
    import ignite.distributed as idist

    return int(idist.get_rank())


def all_reduce_flags(flags: list[int]) -> list[int]:
    """Element-wise MAX of small int flags over all ranks (one collective)."""
    if get_world_size() <= 1:
        return list(flags)
    import ignite.distributed as idist
    import torch

    t = torch.tensor(flags, dtype=torch.int64, device=idist.device())
    reduced: Any = idist.all_reduce(t, op="MAX")
    return [int(v) for v in reduced.tolist()]


def broadcast_value(value: float, src: int = 0) -> float:
    """Rank ``src``'s float on every rank."""
    if get_world_size() <= 1:
        return value
    import ignite.distributed as idist
    import torch

    t = torch.tensor([float(value)], dtype=torch.float64, device=idist.device())
    out: Any = idist.broadcast(t, src=src)
    return float(out.item())


def gather_message(message: str | None, source: str | None) -> tuple[str, str]:
    """The (message, source) of the lowest rank that has one."""
    if get_world_size() <= 1:
        return message or "", source or ""
    import ignite.distributed as idist

    gathered: Any = idist.all_gather(f"{source or ''}\x00{message or ''}" if message is not None else "")
    for item in gathered:
        if item:
            src, _, msg = str(item).partition("\x00")
            return msg, src
    return "", ""
