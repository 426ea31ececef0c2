"""Objects that make Ignite's ``Checkpoint`` save complete states under every strategy.

``Checkpoint`` calls ``state_dict()`` on every rank and writes rank 0's result. That is right for
DDP, but under FSDP each rank holds only a shard, ZeRO/OSS optimizers hold a partition, and DeepSpeed
keeps its own checkpoint files. Put the objects below in ``to_save`` instead of the raw model and
optimizer; ``Checkpoint.load_objects`` then restores them on every rank.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import torch
from torch import nn

from ..config.checks import check_int

__all__ = [
    "ModelState",
    "OptimizerState",
    "DeepSpeedCheckpoint",
    "checkpoint_objects",
    "unwrap_model",
    "is_deepspeed_engine",
]


# Wrappers whose ``.module`` is the user's model, recognised by class name so that fairscale and deepspeed are
# never imported to find out: DDP, DataParallel, fairscale's ShardedDataParallel and FullyShardedDataParallel,
# torch's FSDP (version 1), a DeepSpeed engine.
_WRAPPERS = (
    "DistributedDataParallel",
    "DataParallel",
    "ShardedDataParallel",
    "FullyShardedDataParallel",
    "DeepSpeedEngine",
)


def unwrap_model(model: Any) -> Any:
    """The user's module inside every wrapper around it: DDP, DataParallel, fairscale's ShardedDataParallel and
    FullyShardedDataParallel, torch's FSDP (version 1), a DeepSpeed engine, ``torch.compile``'s
    ``OptimizedModule``, nested in any order.

    Any other module whose ``.module`` holds all of its parameters and buffers (a wrapper of one's own) is
    unwrapped too; a model that keeps state outside ``.module`` is the model itself. FSDP2 (``fully_shard``)
    wraps nothing: the model is returned as it is. The one unwrapping rule of ignite-speed (checkpoints, early
    stopping's best weights).
    """
    while True:
        inner = _wrapped(model)
        if inner is None:
            return model
        model = inner


def _wrapped(model: Any) -> nn.Module | None:
    """The module ``model`` wraps, or None."""
    names = {c.__name__ for c in type(model).__mro__}
    if "OptimizedModule" in names:  # torch.compile
        inner = getattr(model, "_orig_mod", None)
        return inner if isinstance(inner, nn.Module) else None
    inner = getattr(model, "module", None)
    if not isinstance(inner, nn.Module) or inner is model:
        return None
    if names & set(_WRAPPERS):
        return inner
    return inner if isinstance(model, nn.Module) and _holds_all_state(inner, model) else None


def _holds_all_state(inner: nn.Module, outer: nn.Module) -> bool:
    """Whether every parameter and buffer of ``outer`` is ``inner``'s (unwrapping then loses nothing)."""
    inner_ids = {id(t) for t in inner.parameters()} | {id(t) for t in inner.buffers()}
    return all(id(t) in inner_ids for t in outer.parameters()) and all(id(t) in inner_ids for t in outer.buffers())


def _is_fsdp2(model: Any) -> bool:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # torch < 2.6
        try:
            from torch.distributed._composable.fsdp import FSDPModule  # type: ignore
        except ImportError:
            return False
    return isinstance(model, nn.Module) and any(isinstance(m, FSDPModule) for m in model.modules())


def is_deepspeed_engine(model: Any) -> bool:
    """Whether ``model`` is a ``deepspeed.DeepSpeedEngine`` (or a subclass); deepspeed is not imported."""
    return any(c.__name__ == "DeepSpeedEngine" for c in type(model).__mro__)


def _rank() -> int:
    import ignite.distributed as idist

    return int(idist.get_rank())


def _full_options(**extra: Any) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **extra)


class ModelState:
    """A model's complete, unwrapped ``state_dict`` for ``Checkpoint(to_save=...)``.

    Under FSDP2 the full state is gathered (a collective: ``Checkpoint`` runs it on every rank) and
    offloaded to CPU on rank 0; ``load_state_dict`` puts a full state back into the sharded model.
    Otherwise it is the unwrapped module's own ``state_dict``, so the file also loads into a plain
    model.
    """

    def __init__(self, model: nn.Module) -> None:
        if is_deepspeed_engine(model):
            raise TypeError(
                "a DeepSpeed engine keeps its own checkpoint files; use DeepSpeedCheckpoint(engine, "
                "directory) in to_save"
            )
        if not isinstance(model, nn.Module):
            raise TypeError(f"model has type {type(model).__name__}; accepted: a torch.nn.Module")
        self.model = model

    def state_dict(self) -> dict[str, Any]:
        if _is_fsdp2(self.model):
            from torch.distributed.checkpoint.state_dict import get_model_state_dict

            return dict(get_model_state_dict(self.model, options=_full_options(cpu_offload=True)))
        return dict(unwrap_model(self.model).state_dict())

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if _is_fsdp2(self.model):
            from torch.distributed.checkpoint.state_dict import set_model_state_dict

            set_model_state_dict(self.model, state_dict, options=_full_options())
        else:
            unwrap_model(self.model).load_state_dict(state_dict)


class OptimizerState:
    """An optimizer's complete ``state_dict`` for ``Checkpoint(to_save=...)``.

    FSDP2: the full optimizer state keyed by parameter names (pass the sharded ``model``).
    ``ZeroRedundancyOptimizer``: consolidated onto rank 0. fairscale ``OSS`` (as made by
    ``prepare``): consolidated onto rank 0. Other optimizers: their own ``state_dict``. Other
    ranks save nothing (``{}``); on loading, every rank reads the full state and keeps its part.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, model: nn.Module | None = None) -> None:
        if not hasattr(optimizer, "state_dict") or not hasattr(optimizer, "load_state_dict"):
            raise TypeError(f"optimizer has type {type(optimizer).__name__}; accepted: a torch.optim.Optimizer")
        if model is not None and not isinstance(model, nn.Module):
            raise TypeError(f"model has type {type(model).__name__}; accepted: a torch.nn.Module or None")
        self.optimizer = optimizer
        self.model = model

    def _fsdp(self) -> bool:
        return self.model is not None and _is_fsdp2(self.model)

    def state_dict(self) -> dict[str, Any]:
        if self._fsdp():
            from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

            return dict(
                get_optimizer_state_dict(
                    self.model,  # type: ignore[arg-type]  # (not None: _fsdp() says so)
                    self.optimizer,
                    options=_full_options(cpu_offload=True),
                )
            )
        from torch.distributed.optim import ZeroRedundancyOptimizer

        if isinstance(self.optimizer, ZeroRedundancyOptimizer):
            self.optimizer.consolidate_state_dict(to=0)
            return self.optimizer.state_dict() if _rank() == 0 else {}
        return dict(self.optimizer.state_dict())

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self._fsdp():
            from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

            set_optimizer_state_dict(
                self.model,  # type: ignore[arg-type]  # (not None: _fsdp() says so)
                self.optimizer,
                state_dict,
                options=_full_options(),
            )
        else:
            self.optimizer.load_state_dict(state_dict)


class DeepSpeedCheckpoint:
    """Bridges DeepSpeed's checkpointing to anything that saves ``state_dict()`` objects.

    ``state_dict()`` runs ``engine.save_checkpoint(directory, tag)`` on every rank (each rank writes
    its ZeRO partition) and returns the small ``{"directory", "tag"}`` record that Ignite's
    ``Checkpoint`` stores with the rest of the training state. ``load_state_dict(record)`` runs
    ``engine.load_checkpoint`` for that tag, restoring module, optimizer, scheduler and DeepSpeed's
    step counters. ``directory`` must be visible to every rank (shared storage for multi-node).
    With ``keep_last=N`` rank 0 deletes all but the newest N DeepSpeed tags it wrote.
    """

    def __init__(self, engine: Any, directory: str | os.PathLike[str], keep_last: int | None = None) -> None:
        if not is_deepspeed_engine(engine):
            raise TypeError(
                f"engine has type {type(engine).__name__}; accepted: the DeepSpeedEngine returned by "
                f"ignite_speed.prepare with a deepspeed strategy"
            )
        keep_last = check_int(
            keep_last, "keep_last", minimum=1, allow_none=True, accepted="None (keep all) or an int >= 1"
        )
        self.engine = engine
        self.directory = os.fspath(directory)
        self.keep_last = keep_last
        self._written: list[str] = []

    def state_dict(self) -> dict[str, Any]:
        tag = f"step{int(self.engine.global_steps)}"
        self.engine.save_checkpoint(self.directory, tag=tag)
        if tag in self._written:
            self._written.remove(tag)
        self._written.append(tag)
        if self.keep_last is not None and _rank() == 0:
            while len(self._written) > self.keep_last:
                shutil.rmtree(os.path.join(self.directory, self._written.pop(0)), ignore_errors=True)
        return {"directory": self.directory, "tag": tag}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not isinstance(state_dict, dict) or "tag" not in state_dict:
            raise ValueError(f"not a DeepSpeedCheckpoint record: {state_dict!r}")
        directory = str(state_dict.get("directory") or self.directory)
        if not os.path.isdir(os.path.join(directory, str(state_dict["tag"]))):
            raise FileNotFoundError(f"DeepSpeed checkpoint {state_dict['tag']!r} not found in {directory!r}")
        path, _ = self.engine.load_checkpoint(directory, tag=str(state_dict["tag"]))
        if path is None:
            raise RuntimeError(f"DeepSpeed could not load checkpoint {state_dict['tag']!r} from {directory!r}")


def checkpoint_objects(
    model: Any, optimizer: Any = None, *, directory: str | os.PathLike[str] | None = None, keep_last: int | None = None
) -> dict[str, Any]:
    """``to_save`` entries for ``model`` and ``optimizer`` as returned by ``prepare``, for any strategy:
    ``{"model": ModelState, "optimizer": OptimizerState}``, or ``{"deepspeed": DeepSpeedCheckpoint}``
    for a DeepSpeed engine (which then needs ``directory``)."""
    if is_deepspeed_engine(model):
        if directory is None:
            raise ValueError(
                "checkpoint_objects(engine, ...): a DeepSpeed engine needs directory= (where "
                "DeepSpeed writes its files; shared by all ranks)"
            )
        return {"deepspeed": DeepSpeedCheckpoint(model, directory, keep_last=keep_last)}
    objects: dict[str, Any] = {"model": ModelState(model)}
    if optimizer is not None:
        objects["optimizer"] = OptimizerState(optimizer, model)
    return objects
