"""``warn_if_not_launched``: a config that asks for a distributed job, used in a process nobody launched."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

from ..config.devices import DEEPSPEED_STRATEGIES, FSDP_STRATEGIES, available_accelerators, resolve_accelerator
from ._plan import as_config, detect_launcher

__all__ = ["warn_if_not_launched"]

# strategies that do something even on one process, but only inside a process group (prepare() refuses them
# without one); ddp and zero on one process are the plain model and optimizer anyway
_NEEDS_A_GROUP_EVEN_ALONE = DEEPSPEED_STRATEGIES + FSDP_STRATEGIES + ("ddp_sharded",)
_warned = False


def _requested_processes(cfg: Any) -> str | None:
    """Why ``cfg`` asks for more than this one process (for the message), or None."""
    reasons = []
    devices = cfg.devices
    if devices != "auto":
        many = (isinstance(devices, int) and devices > 1) or (isinstance(devices, list) and len(devices) > 1)
        if devices == -1:  # all devices: more than one where several GPUs (or TPU cores) exist
            available = available_accelerators()
            accelerator = resolve_accelerator(cfg.accelerator, available)  # "auto" as the launch plan resolves it
            many = accelerator == "tpu" or (accelerator == "gpu" and available.cuda > 1)
        if many:
            reasons.append(f"devices={devices!r}")
    elif cfg.strategy not in ("auto", "single_device") and cfg.accelerator in ("auto", "gpu"):
        available = available_accelerators()
        # an explicit strategy over all visible GPUs
        if resolve_accelerator(cfg.accelerator, available) == "gpu" and available.cuda > 1:
            reasons.append(f"devices='auto' ({available.cuda} GPUs)")
    if cfg.num_nodes > 1:
        reasons.append(f"num_nodes={cfg.num_nodes}")
    strategy = cfg.strategy
    one_core = devices == 1 or (isinstance(devices, list) and len(devices) == 1)
    if strategy in _NEEDS_A_GROUP_EVEN_ALONE or (strategy == "xla" and not one_core and not reasons):
        reasons.append(f"strategy={strategy!r}")
    return ", ".join(reasons) or None


def _launched(env: Mapping[str, str]) -> bool:
    import torch.distributed as dist

    from ._dist import _idist

    if dist.is_available() and dist.is_initialized():
        return True
    if detect_launcher(env) is not None:
        return True
    idist = _idist()
    return idist.model_name() != "serial" or idist.get_world_size() > 1


def warn_if_not_launched(cfg: Any, caller: str, env: Mapping[str, str] | None = None) -> bool:
    """Warn (``UserWarning``, once per process) when ``cfg`` asks for a distributed job -- ``devices`` or
    ``num_nodes`` above 1, or a strategy that needs a process group (FSDP, DeepSpeed, ``ddp_sharded``) --
    but this process is not part of one: no process group, no ``torchrun``/``srun`` environment, world size
    1. Training would then run on this one process without a word. ``devices="auto"`` with
    ``strategy="auto"`` and ``devices=1`` never warn. ``caller`` names the function in the message.
    Returns whether it warned."""
    global _warned
    if _warned:
        return False
    try:
        cfg = as_config(cfg)
    except (TypeError, ValueError):
        return False  # the caller reports a bad config itself
    reason = _requested_processes(cfg)
    if reason is None or _launched(os.environ if env is None else env):
        return False
    _warned = True
    warnings.warn(
        f"{caller}: the config asks for a distributed job ({reason}), but this process is not part of one (no "
        f"process group, no torchrun/srun environment, world size 1): training runs on this one process. Start "
        f"the job with ignite_speed.launch(cfg, fn) (it spawns the processes, or joins those torchrun started) "
        f"or with torchrun, and call {caller} inside fn",
        UserWarning,
        stacklevel=3,
    )
    return True
