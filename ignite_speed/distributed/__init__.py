"""Distributed training from a :class:`~ignite_speed.config.SpeedConfig`: launch processes, wrap
model and optimizer per strategy, shard data per rank, checkpoint complete states.

Optional engines (DeepSpeed, fairscale, torch_xla) are imported only when a config asks for them.
"""

from ._guard import warn_if_not_launched
from ._plan import LaunchPlan, detect_launcher, plan_launch, resolve_strategy
from .checkpoint import DeepSpeedCheckpoint, ModelState, OptimizerState, checkpoint_objects, unwrap_model
from .data import attach_set_epoch, find_sampler, prepare_dataloader
from .launcher import free_port, launch
from .strategies import current_strategy, deepspeed_config_for, prepare, rebuild_optimizer

__all__ = [
    "launch", "prepare", "prepare_dataloader", "attach_set_epoch",
    "ModelState", "OptimizerState", "DeepSpeedCheckpoint", "checkpoint_objects", "unwrap_model",
    "LaunchPlan", "plan_launch", "detect_launcher", "resolve_strategy", "current_strategy",
    "deepspeed_config_for", "rebuild_optimizer", "find_sampler", "free_port", "warn_if_not_launched",
]
