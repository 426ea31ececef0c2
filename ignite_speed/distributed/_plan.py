"""Pure resolution of the device flags into a launch plan (no process is started here).

Everything in this module is plain logic over a :class:`~ignite_speed.config.SpeedConfig`, the
environment mapping and the number of visible CUDA devices, so it is unit-tested without hardware.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config.devices import (
    DDP_STRATEGIES,
    SINGLE_PROCESS_STRATEGIES,
    XLA_STRATEGIES,
    Accelerators,
    available_accelerators,
    check_accelerator_available,
    check_devices_fit_accelerator,
    check_strategy_fits_accelerator,
    resolve_accelerator,
)
from ..config.speed_config import SpeedConfig

__all__ = [
    "LaunchPlan",
    "plan_launch",
    "detect_launcher",
    "resolve_accelerator",
    "resolve_strategy",
    "resolve_nproc_per_node",
    "as_config",
]

_BACKENDS = {"cpu": "gloo", "gpu": "nccl", "tpu": "xla-tpu"}
DEFAULT_MULTINODE_PORT = 29500


def as_config(cfg: Any) -> SpeedConfig:
    """``cfg`` as a :class:`SpeedConfig` (``None``, a mapping, a ``SpeedConfig``, a namespace, ...)."""
    return cfg if isinstance(cfg, SpeedConfig) else SpeedConfig.from_any(cfg)


@dataclass(frozen=True)
class LaunchPlan:
    """How :func:`~ignite_speed.distributed.launch` will run a job.

    ``nproc_per_node`` is ``None`` only for TPUs, where it means "every core torch_xla sees".
    ``backend`` is ``None`` for a plain single-process run without a process group.
    ``launcher`` names the external launcher (``"torchrun"``, ``"slurm"``) when the processes
    already exist, in which case nothing is spawned.
    """

    accelerator: str
    strategy: str
    backend: str | None
    nproc_per_node: int | None
    nnodes: int
    node_rank: int
    master_addr: str | None
    master_port: int | None
    launcher: str | None = None
    device_ids: tuple[int, ...] | None = None

    @property
    def world_size(self) -> int | None:
        return None if self.nproc_per_node is None else self.nproc_per_node * self.nnodes


def detect_launcher(env: Mapping[str, str] | None = None) -> str | None:
    """The external launcher that started this process, if any.

    ``"torchrun"`` when ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` are set (torchrun, torch's
    elastic agent, or any launcher following that convention); ``"slurm"`` inside an ``srun`` step
    with more than one task. ``None`` otherwise, i.e. :func:`launch` has to start the processes.
    """
    env = os.environ if env is None else env
    if all(k in env for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE")):
        return "torchrun"
    if "SLURM_JOB_ID" in env and "SLURM_PROCID" in env and _int_env(env, "SLURM_NTASKS", 1) > 1:
        return "slurm"
    return None


def _int_env(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(str(raw).split("(")[0])
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None


def resolve_nproc_per_node(
    accelerator: str, devices: Any, cuda_count: int
) -> tuple[int | None, tuple[int, ...] | None]:
    """(processes per node, explicit CUDA device indices or None) for a parsed ``devices`` value."""
    check_devices_fit_accelerator(devices, accelerator)
    if accelerator == "cpu":
        return (1 if devices == "auto" else int(devices)), None
    if accelerator == "mps":
        if devices not in ("auto", 1, [0]):
            raise ValueError(
                f"devices={devices!r} with accelerator='mps': MPS has exactly one device; accepted: 'auto', 1 or [0]"
            )
        return 1, None
    if accelerator == "tpu":
        if devices in ("auto", -1):
            return None, None
        if isinstance(devices, list):
            if len(devices) != 1:
                raise ValueError(
                    f"devices={devices!r} with accelerator='tpu': torch_xla runs on one core or on all "
                    f"of them; accepted: 'auto', -1, 1, a core count, or one core index [k]"
                )
            return 1, tuple(devices)
        return int(devices), None
    # gpu
    if devices in ("auto", -1):
        return cuda_count, None
    if isinstance(devices, list):
        bad = [i for i in devices if i >= cuda_count]
        if bad:
            raise ValueError(
                f"devices={devices!r} names CUDA device(s) {bad} but only {cuda_count} "
                f"{'is' if cuda_count == 1 else 'are'} visible; accepted: indices 0..{cuda_count - 1}"
            )
        return len(devices), tuple(devices)
    if devices > cuda_count:
        raise ValueError(
            f"devices={devices!r} asks for more GPUs than the {cuda_count} visible; accepted: "
            f"1..{cuda_count}, -1 (all) or a list of indices"
        )
    return int(devices), None


def resolve_strategy(strategy: str, accelerator: str, world_size: int | None) -> str:
    """The strategy ``prepare`` applies: ``"auto"`` resolved and the ddp spellings folded to ``"ddp"``.

    ``world_size`` is ``None`` when unknown (all TPU cores).
    """
    multi = world_size is None or world_size > 1
    if accelerator == "tpu":
        if strategy == "auto":
            return "xla" if multi else "single_xla"
        if strategy not in XLA_STRATEGIES:
            raise ValueError(
                f"strategy={strategy!r} does not run on accelerator='tpu'; accepted there: 'auto', 'xla', 'single_xla'"
            )
        if strategy in SINGLE_PROCESS_STRATEGIES and multi:
            raise ValueError(
                f"strategy={strategy!r} runs one process, but devices give {world_size or 'all'} "
                f"TPU cores; use strategy='xla'"
            )
        return "single_xla" if strategy == "single_tpu" else strategy
    check_strategy_fits_accelerator(strategy, accelerator)  # the rules checked at parsing, on the resolved value
    if accelerator == "mps" and strategy not in ("auto", "single_device"):
        raise ValueError(
            f"strategy={strategy!r} does not run on accelerator='mps' (no distributed backend); "
            f"accepted there: 'auto', 'single_device'"
        )
    if strategy == "auto":
        return "ddp" if multi else "single_device"
    if strategy == "single_device" and multi:
        raise ValueError(
            f"strategy='single_device' runs one process, but devices x num_nodes give {world_size}; "
            f"use strategy='ddp' (or 'auto')"
        )
    if strategy in DDP_STRATEGIES:
        return "ddp"
    return strategy


def _plan_under_launcher(
    cfg: SpeedConfig, env: Mapping[str, str], launcher: str, accelerator: str, device_ids: tuple[int, ...] | None
) -> LaunchPlan:
    """The plan of a process that ``launcher`` (torchrun or SLURM) started: the world size, processes per node
    and node rank are the launcher's, and ``devices`` / ``num_nodes``, when given, must agree with them."""
    nnodes = cfg.num_nodes
    world = _int_env(env, "WORLD_SIZE", 0) or _int_env(env, "SLURM_NTASKS", 1)
    local_world = _int_env(env, "LOCAL_WORLD_SIZE", 0) or _int_env(env, "SLURM_NTASKS_PER_NODE", 0)
    if (
        "devices" in cfg.explicit
        and isinstance(cfg.devices, int)
        and cfg.devices > 0
        and local_world
        and cfg.devices != local_world
    ):
        raise ValueError(
            f"devices={cfg.devices} but {launcher} started {local_world} processes on this node; "
            f"make them agree (or leave devices='auto')"
        )
    nproc = local_world or max(1, world // max(1, nnodes))
    if "num_nodes" in cfg.explicit and nproc * nnodes != world:
        raise ValueError(
            f"num_nodes={nnodes} x {nproc} processes per node != WORLD_SIZE={world} set by {launcher}; make them agree"
        )
    nnodes = max(1, world // nproc)
    strategy = resolve_strategy(cfg.strategy, accelerator, world)
    return LaunchPlan(
        accelerator,
        strategy,
        _BACKENDS.get(accelerator),
        nproc,
        nnodes,
        _int_env(env, "GROUP_RANK", _int_env(env, "NODE_RANK", 0)),
        env.get("MASTER_ADDR"),
        _int_env(env, "MASTER_PORT", 0) or None,
        launcher,
        device_ids,
    )


def plan_launch(
    cfg: Any = None,
    env: Mapping[str, str] | None = None,
    cuda_count: int | None = None,
    *,
    accelerators: Accelerators | None = None,
) -> LaunchPlan:
    """Resolve ``cfg`` (+ the environment) into a :class:`LaunchPlan`. Raises ``ValueError`` /
    ``TypeError`` for impossible combinations, naming the flag and what is accepted.

    The machine is read unless given: ``accelerators`` (what ``accelerator="auto"`` chooses from), or only
    ``cuda_count`` (a machine with that many CUDA devices, no MPS, no TPU)."""
    cfg = as_config(cfg)
    env = os.environ if env is None else env
    if accelerators is None:
        accelerators = available_accelerators() if cuda_count is None else Accelerators(cuda=cuda_count)
    cuda_count = accelerators.cuda
    accelerator = resolve_accelerator(cfg.accelerator, accelerators)
    if accelerator == "mps" and cfg.num_nodes > 1:
        raise ValueError(
            f"num_nodes={cfg.num_nodes} with accelerator='mps': MPS has no distributed backend; accepted: num_nodes=1"
        )
    launcher = detect_launcher(env)
    nproc, device_ids = resolve_nproc_per_node(accelerator, cfg.devices, cuda_count)
    check_accelerator_available(accelerator, accelerators)
    nnodes = cfg.num_nodes
    if launcher is not None:
        return _plan_under_launcher(cfg, env, launcher, accelerator, device_ids)
    world_size = None if nproc is None else nproc * nnodes
    strategy = resolve_strategy(cfg.strategy, accelerator, world_size)
    if world_size == 1 and strategy in SINGLE_PROCESS_STRATEGIES:
        backend = None
    elif accelerator == "mps":
        backend = None
    else:
        backend = _BACKENDS[accelerator]
    node_rank = cfg.node_rank
    master_addr = cfg.master_addr or env.get("MASTER_ADDR") or None
    master_port = cfg.master_port or _int_env(env, "MASTER_PORT", 0) or None
    if nnodes > 1:
        if accelerator == "tpu":
            raise ValueError(
                f"num_nodes={nnodes} with accelerator='tpu': multi-host TPU pods are started by "
                f"torch_xla's own tooling; accepted here: num_nodes=1"
            )
        if node_rank is None:
            node_rank = _int_env(env, "NODE_RANK", _int_env(env, "GROUP_RANK", -1))
            if node_rank < 0:
                raise ValueError(
                    f"num_nodes={nnodes} needs this machine's node_rank (0..{nnodes - 1}): set the "
                    f"node_rank flag or the NODE_RANK environment variable"
                )
            if node_rank >= nnodes:
                raise ValueError(f"NODE_RANK={node_rank} must be < num_nodes={nnodes}")
        if master_addr is None:
            raise ValueError(
                f"num_nodes={nnodes} needs master_addr (the address of the node_rank 0 machine): set "
                f"the master_addr flag or the MASTER_ADDR environment variable"
            )
        master_port = master_port or DEFAULT_MULTINODE_PORT
    return LaunchPlan(
        accelerator, strategy, backend, nproc, nnodes, node_rank or 0, master_addr, master_port, None, device_ids
    )
