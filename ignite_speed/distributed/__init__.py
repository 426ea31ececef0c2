"""Distributed training from a :class:`~ignite_speed.config.SpeedConfig`: launch processes, wrap
model and optimizer per strategy, shard data per rank, checkpoint complete states.

Names load on first use (the rank helpers in ``_dist`` are imported by the loop without the launcher and
strategies); optional engines (DeepSpeed, fairscale, torch_xla) are imported only when a config asks for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names

_EXPORTS = {
    "warn_if_not_launched": "_guard",
    "LaunchPlan": "_plan",
    "detect_launcher": "_plan",
    "plan_launch": "_plan",
    "resolve_strategy": "_plan",
    "DeepSpeedCheckpoint": "checkpoint",
    "ModelState": "checkpoint",
    "OptimizerState": "checkpoint",
    "checkpoint_objects": "checkpoint",
    "unwrap_model": "checkpoint",
    "attach_set_epoch": "data",
    "find_sampler": "data",
    "prepare_dataloader": "data",
    "free_port": "launcher",
    "launch": "launcher",
    "current_strategy": "strategies",
    "deepspeed_config_for": "strategies",
    "prepare": "strategies",
    "rebuild_optimizer": "strategies",
}

__all__ = [
    "launch",
    "prepare",
    "prepare_dataloader",
    "attach_set_epoch",
    "ModelState",
    "OptimizerState",
    "DeepSpeedCheckpoint",
    "checkpoint_objects",
    "unwrap_model",
    "LaunchPlan",
    "plan_launch",
    "detect_launcher",
    "resolve_strategy",
    "current_strategy",
    "deepspeed_config_for",
    "rebuild_optimizer",
    "find_sampler",
    "free_port",
    "warn_if_not_launched",
]

if TYPE_CHECKING:  # pragma: no cover  (static checkers see the lazy names)
    from ._guard import warn_if_not_launched  # noqa: F401
    from ._plan import LaunchPlan, detect_launcher, plan_launch, resolve_strategy  # noqa: F401
    from .checkpoint import DeepSpeedCheckpoint, ModelState, OptimizerState, checkpoint_objects, unwrap_model  # noqa: F401
    from .data import attach_set_epoch, find_sampler, prepare_dataloader  # noqa: F401
    from .launcher import free_port, launch  # noqa: F401
    from .strategies import current_strategy, deepspeed_config_for, prepare, rebuild_optimizer  # noqa: F401


__getattr__, __dir__ = lazy_names(__name__, _EXPORTS, __all__, globals())
