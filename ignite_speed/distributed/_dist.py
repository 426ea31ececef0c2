"""The few collectives the loop controls need, over ``ignite.distributed``.

Kept tiny and dependency-free so the stop controller, the time budget and early stopping share one
implementation. Every function is a no-op shortcut when the world size is 1.
"""

from __future__ import annotations

import datetime
import weakref
from typing import Any

# The stop controller's collectives run on a process group of their own (see stop_group()).
# Both held weakly: torch owns the groups. A strong reference here kept them (and their gloo threads) alive
# after destroy_process_group(), until interpreter exit.
_STOP_GROUP: tuple[weakref.ref[Any], weakref.ref[Any]] | None = None  # (default group it was made for, group)
_NATIVE_BACKENDS = ("gloo", "nccl", "mpi")


_XLA_BRIDGED = False


def _idist() -> Any:
    """``ignite.distributed``, usable also when torch-xla >= 2.8 is installed.

    Ignite imports torch_xla whenever it is installed, and then every ``idist`` query goes through
    ``xla_model.xrt_world_size``, which torch-xla 2.8 removed: put the names back once (see
    :func:`ignite_speed.distributed._xla_runtime.install_xla_shims`)."""
    global _XLA_BRIDGED
    import ignite.distributed as idist

    if not _XLA_BRIDGED:
        import sys

        _XLA_BRIDGED = True
        if "torch_xla.core.xla_model" in sys.modules:
            from ._xla_runtime import install_xla_shims

            install_xla_shims()
    return idist


def get_world_size() -> int:
    return int(_idist().get_world_size())


def get_rank() -> int:
    return int(_idist().get_rank())


def broadcast_str(value: str, src: int = 0) -> str:
    """``value`` of rank ``src`` on every rank (a path, a name: one collective)."""
    return str(_idist().broadcast(value, src=src))


def stop_group() -> Any:
    """The process group of the stop controller's collectives, or ``None`` (not a torch.distributed
    gloo/nccl/mpi job: the default group of ``ignite.distributed`` is used).

    A group of its own, so that the one sync a failing rank still joins (:meth:`StopController.signal_failure`)
    can only ever meet the healthy ranks' stop sync: sent on the default group while they wait in, say, a
    DDP all-reduce, it would be a mismatched collective (gloo aborts the process, NCCL may hang or mix
    data). Made on first use, which every rank reaches at the same sync; all ranks must call it.
    """
    global _STOP_GROUP
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_backend() not in _NATIVE_BACKENDS:
        return None
    world = dist.group.WORLD
    group = _STOP_GROUP[1]() if _STOP_GROUP is not None and _STOP_GROUP[0]() is world else None
    if group is None:
        group = dist.new_group()
        _STOP_GROUP = (weakref.ref(world), weakref.ref(group))
    return group


def is_collective_error(exc: BaseException) -> bool:
    """Whether ``exc`` came from a failed collective (then the process group is not usable any more).
    Gloo's timeouts and lost peers are plain ``RuntimeError``s that name gloo's sources."""
    import torch.distributed as dist

    return isinstance(exc, getattr(dist, "DistError", ())) or "gloo" in str(exc).lower()


def all_reduce_flags(flags: list[int], timeout: datetime.timedelta | None = None) -> list[int]:
    """Element-wise MAX of small int flags over all ranks (one collective).

    With ``timeout`` (torch.distributed backends only), give up after that long with ``RuntimeError``
    instead of waiting for the process group's timeout.
    """
    if get_world_size() <= 1:
        return list(flags)
    import ignite.distributed as idist
    import torch

    t = torch.tensor(flags, dtype=torch.int64, device=idist.device())
    group = stop_group()
    if group is None:
        reduced: Any = idist.all_reduce(t, op="MAX")
        return [int(v) for v in reduced.tolist()]
    import torch.distributed as dist

    work = dist.all_reduce(t, op=dist.ReduceOp.MAX, group=group, async_op=timeout is not None)
    if work is not None and not work.wait(timeout):
        raise RuntimeError(f"the stop sync did not complete within {timeout}")
    return [int(v) for v in t.tolist()]


class _Done:
    """A finished reduction (the backend had no asynchronous one)."""

    def __init__(self, flags: list[int]) -> None:
        self.flags = flags

    def wait(self) -> list[int]:
        return self.flags


class _Pending:
    """An asynchronous reduction on the stop group: read its result with :meth:`wait`."""

    def __init__(self, work: Any, tensor: Any) -> None:
        self.work, self.tensor = work, tensor

    def wait(self) -> list[int]:
        self.work.wait()
        return [int(v) for v in self.tensor.tolist()]


def all_reduce_flags_async(flags: list[int]) -> Any:
    """Start :func:`all_reduce_flags` without waiting; ``.wait()`` on the result returns the reduced flags.
    Backends outside torch.distributed (``ignite.distributed``'s others) reduce at once."""
    if get_world_size() <= 1:
        return _Done(list(flags))
    group = stop_group()
    if group is None:
        return _Done(all_reduce_flags(flags))
    import ignite.distributed as idist
    import torch
    import torch.distributed as dist

    t = torch.tensor(flags, dtype=torch.int64, device=idist.device())
    return _Pending(dist.all_reduce(t, op=dist.ReduceOp.MAX, group=group, async_op=True), t)


def gather_message(message: str | None, source: str | None) -> tuple[str, str]:
    """The (message, source) of the lowest rank that has one."""
    if get_world_size() <= 1:
        return message or "", source or ""
    import ignite.distributed as idist

    payload = f"{source or ''}\x00{message or ''}" if message is not None else ""
    group = stop_group()
    if group is None:
        gathered: Any = idist.all_gather(payload)
    else:
        import torch.distributed as dist

        gathered = [None] * get_world_size()
        dist.all_gather_object(gathered, payload, group=group)
    for item in gathered:
        if item:
            src, _, msg = str(item).partition("\x00")
            return msg, src
    return "", ""
