"""``launch``: run a function on every process of a job described by a :class:`SpeedConfig`."""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

from ._plan import LaunchPlan, as_config, plan_launch

__all__ = ["launch", "free_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (for single-node rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _visible_devices(ids: tuple[int, ...] | None) -> Iterator[None]:
    """Restrict the spawned children to the CUDA devices ``ids`` (indices into what is visible now)."""
    if ids is None:
        yield
        return
    old = os.environ.get("CUDA_VISIBLE_DEVICES")
    current = [p for p in (old or "").split(",") if p.strip()]
    chosen = [current[i] if i < len(current) else str(i) for i in ids] if current else [str(i) for i in ids]
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(chosen)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = old


def launch(
    cfg: Any, fn: Callable[..., Any], *args: Any, timeout: datetime.timedelta | None = None, **kwargs: Any
) -> LaunchPlan:
    """Run ``fn(local_rank, *args, **kwargs)`` on every process of the job that ``cfg`` describes.

    * No process group is needed (one device, ``strategy`` "auto"/"single_device"): ``fn`` runs here.
    * The job was started by ``torchrun`` or ``srun`` (or a process group already exists): the
      process group is initialized from the environment and ``fn`` runs here; nothing is spawned.
    * Otherwise ``devices`` processes are spawned on this node with ``idist.Parallel`` (backend
      ``gloo`` on CPU, ``nccl`` on GPU). With ``num_nodes > 1`` run the same script on every node
      with its own ``node_rank`` (flag or ``NODE_RANK``) and a common ``master_addr``/``master_port``.
    * TPU (``accelerator="tpu"``): torch_xla's launcher, with ignite's ``xla-tpu`` backend bridged
      for torch-xla >= 2.8 (see :mod:`ignite_speed.distributed.xla`).

    ``fn`` must be defined at module level (it is pickled for spawned processes). ``timeout`` bounds
    every collective (it is passed to ``torch.distributed.init_process_group``), so a rank that
    stops answering fails the job instead of hanging it. Returns the :class:`LaunchPlan` used.
    """
    import ignite.distributed as idist

    if not callable(fn):
        raise TypeError(f"launch(cfg, fn, ...): fn={fn!r} is not callable")
    if timeout is not None and not isinstance(timeout, datetime.timedelta):
        raise TypeError(f"timeout={timeout!r} has type {type(timeout).__name__}; accepted: a datetime.timedelta")
    plan = plan_launch(as_config(cfg))
    init_kwargs: dict[str, Any] = {} if timeout is None else {"timeout": timeout}

    if plan.accelerator == "tpu":
        from .xla import launch_xla

        launch_xla(plan, fn, args, kwargs)
        return plan
    if plan.backend is None:
        if plan.accelerator == "gpu" and plan.device_ids:
            import torch

            torch.cuda.set_device(plan.device_ids[0])
        fn(0, *args, **kwargs)
        return plan

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        idist.sync()
        fn(idist.get_local_rank(), *args, **kwargs)
        return plan
    if plan.launcher is not None:
        idist.initialize(plan.backend, **init_kwargs)
        try:
            _finish_together(idist.get_local_rank(), fn, *args, **kwargs)
        finally:
            idist.finalize()
        return plan

    port = plan.master_port or free_port()
    addr = plan.master_addr or "127.0.0.1"
    assert plan.nproc_per_node is not None
    with _visible_devices(plan.device_ids):
        with idist.Parallel(
            backend=plan.backend,
            nproc_per_node=plan.nproc_per_node,
            nnodes=plan.nnodes,
            node_rank=plan.node_rank,
            master_addr=addr,
            master_port=port,
            **init_kwargs,
        ) as parallel:
            parallel.run(_finish_together, fn, *args, **kwargs)
    return plan


def _finish_together(local_rank: int, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
    """Run ``fn`` on this rank, then wait until every rank has returned from it.

    A rank's process can fail while it exits (torch 2.13 with gloo rarely aborts a rank at interpreter
    exit), and the launcher then terminates the others: the barrier keeps that from cutting short
    another rank's last work, such as writing the final checkpoint. Skipped when ``fn`` raised (the
    other ranks may never arrive) or tore the process group down itself. When another rank raises after
    its last collective, the launcher ends this process, or the barrier fails on the lost peer (gloo at
    once; NCCL at the process group's timeout)."""
    import gc

    import ignite.distributed as idist
    import torch.distributed as dist

    fn(local_rank, *args, **kwargs)
    # The job's engines and models sit in reference cycles, and a DDP model holds its process group: free
    # them now, so that the launcher's destroy_process_group() releases the groups while the interpreter is
    # whole, rather than leaving them to interpreter exit (where the gloo aborts were seen).
    gc.collect()
    if dist.is_available() and dist.is_initialized():
        idist.barrier()
