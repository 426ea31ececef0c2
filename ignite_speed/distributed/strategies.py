"""``prepare``: wrap a model and its optimizer for the strategy a config asks for."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from ..config.devices import (
    DEEPSPEED_STRATEGIES,
    FSDP_STRATEGIES,
    PROCESS_GROUP_STRATEGIES,
    available_accelerators,
    check_accelerator_available,
    resolve_accelerator,
)
from ._guard import warn_if_not_launched
from ._plan import as_config, resolve_strategy

__all__ = ["prepare", "current_strategy", "deepspeed_config_for", "rebuild_optimizer"]

OptimizerLike = torch.optim.Optimizer | Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


def current_strategy(cfg: Any = None) -> str:
    """The strategy ``prepare`` applies in this process for ``cfg`` (``"auto"`` resolved against the
    current world size)."""
    import ignite.distributed as idist

    cfg = as_config(cfg)
    accelerator = _accelerator(cfg)
    world = None if accelerator == "tpu" and cfg.devices in ("auto", -1) else idist.get_world_size()
    return resolve_strategy(cfg.strategy, accelerator, world)


def _accelerator(cfg: Any) -> str:
    """``cfg.accelerator`` resolved on this machine (the one rule ``Precision`` applies too), and available."""
    available = available_accelerators()
    accelerator = resolve_accelerator(cfg.accelerator, available)
    check_accelerator_available(accelerator, available)
    return accelerator


def _device(accelerator: str) -> torch.device:
    import ignite.distributed as idist

    if accelerator == "mps":
        return torch.device("mps")
    if accelerator == "gpu" and idist.get_world_size() == 1 and idist.model_name() == "serial":
        return torch.device("cuda", torch.cuda.current_device())
    return idist.device()


def _process_group_ready() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def rebuild_optimizer(
    optimizer: torch.optim.Optimizer, names: Mapping[int, str], model: nn.Module
) -> torch.optim.Optimizer:
    """Point ``optimizer`` at ``model``'s current parameters.

    Returns ``optimizer`` itself when it already holds them; otherwise (sharding or a device move
    replaced the parameter objects) a new optimizer of the same class with the same param groups and
    hyper-parameters. ``names`` maps ``id(old_param)`` to its name in the model before the change.
    """
    current = dict(model.named_parameters())
    ids = {id(p) for p in current.values()}
    if all(id(p) in ids for g in optimizer.param_groups for p in g["params"]):
        return optimizer
    if any(optimizer.state.values()):
        raise ValueError(
            f"prepare() has to replace the parameters of {type(optimizer).__name__}, which already "
            f"holds state (a step was taken or a state was loaded); call prepare() before training "
            f"and load optimizer checkpoints afterwards"
        )
    groups = []
    for group in optimizer.param_groups:
        params = []
        for p in group["params"]:
            if id(p) not in names:
                raise ValueError(
                    f"the optimizer holds a parameter of shape {tuple(p.shape)} that is not in the "
                    f"model given to prepare(); pass the model that owns every optimized parameter"
                )
            params.append(current[names[id(p)]])
        groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": params})
    try:
        return type(optimizer)(groups, **optimizer.defaults)
    except TypeError as exc:
        raise TypeError(
            f"cannot rebuild {type(optimizer).__name__} from its param_groups and defaults ({exc}); "
            f"pass prepare() a factory instead, e.g. lambda params: MyOptim(params, ...)"
        ) from exc


def _make_optimizer(optimizer: OptimizerLike, model: nn.Module, names: Mapping[int, str]) -> torch.optim.Optimizer:
    if isinstance(optimizer, torch.optim.Optimizer):
        return rebuild_optimizer(optimizer, names, model)
    if callable(optimizer):
        made = optimizer(model.parameters())
        if not isinstance(made, torch.optim.Optimizer):
            raise TypeError(f"the optimizer factory returned {type(made).__name__}, not a torch.optim.Optimizer")
        return made
    raise TypeError(
        f"optimizer={optimizer!r} has type {type(optimizer).__name__}; accepted: a torch.optim.Optimizer "
        f"or a callable params -> Optimizer"
    )


def _reject_fairscale_fsdp(model: nn.Module, accelerator: str) -> None:
    for m in model.modules():
        cls = type(m)
        if cls.__name__ == "FullyShardedDataParallel" and cls.__module__.startswith("fairscale"):
            if accelerator != "gpu":
                raise ValueError(
                    f"the model is wrapped in fairscale's FullyShardedDataParallel, which needs CUDA "
                    f"(accelerator={accelerator!r}); on CPU pass the plain model with strategy='fsdp' "
                    f"(torch FSDP2)"
                )
            raise ValueError(
                "the model is already wrapped in fairscale's FullyShardedDataParallel; pass the plain "
                "model and strategy='fsdp' (torch FSDP2) instead"
            )


def prepare(
    model: nn.Module,
    optimizer: OptimizerLike,
    cfg: Any = None,
    *,
    shard_modules: Callable[[nn.Module], bool] | None = None,
    ddp_kwargs: Mapping[str, Any] | None = None,
) -> tuple[Any, Any]:
    """Wrap ``model`` and ``optimizer`` for ``cfg.strategy`` on this process's device.

    Call it inside the function given to :func:`~ignite_speed.distributed.launch`, once, before
    training. ``optimizer`` may be an optimizer built on ``model.parameters()`` (it is rebuilt with
    the same hyper-parameters when sharding replaces the parameters) or a factory
    ``params -> Optimizer``. Returns ``(model, optimizer)`` to use from then on (for instance in
    ``create_trainer(model, optimizer, loss_fn, cfg)``, which takes the pair of every strategy):

    ========================== ===============================================================
    strategy                   result
    ========================== ===============================================================
    single_device              the model moved to the device; the optimizer unchanged
    ddp (and its spellings)    ``DistributedDataParallel`` (via ``idist.auto_model``)
    zero                       DDP + ``ZeroRedundancyOptimizer`` of the optimizer's class
    fsdp / fsdp_cpu_offload    torch FSDP2 ``fully_shard`` on every sub-module that owns
                               parameters (or those ``shard_modules`` selects), then the root
    ddp_sharded                fairscale ``ShardedDataParallel`` + ``OSS``
    deepspeed*                 ``deepspeed.initialize`` -> ``(engine, engine optimizer)``
    xla / single_xla           the model on the XLA device; ``optimizer.step`` reduces gradients
    ========================== ===============================================================
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model has type {type(model).__name__}; accepted: a torch.nn.Module")
    cfg = as_config(cfg)
    import ignite.distributed as idist

    accelerator = _accelerator(cfg)
    strategy = current_strategy(cfg)
    _reject_fairscale_fsdp(model, accelerator)
    world = idist.get_world_size()
    if strategy in PROCESS_GROUP_STRATEGIES and strategy not in ("ddp", "zero") and not _process_group_ready():
        raise ValueError(
            f"strategy={cfg.strategy!r} needs a process group; call prepare() inside the function "
            f"passed to ignite_speed.launch(cfg, fn)"
        )
    warn_if_not_launched(cfg, "prepare")
    names = {id(p): n for n, p in model.named_parameters()}

    if strategy in ("xla", "single_xla"):
        from .xla import prepare_xla

        return prepare_xla(model, lambda moved: _make_optimizer(optimizer, moved, names))
    if strategy in DEEPSPEED_STRATEGIES:
        return _prepare_deepspeed(model, optimizer, cfg, strategy)
    device = _device(accelerator)
    if strategy in FSDP_STRATEGIES:
        sharded = _fully_shard(
            model, device, world, offload=strategy == "fsdp_cpu_offload", shard_modules=shard_modules
        )
        return sharded, _make_optimizer(optimizer, sharded, names)
    if strategy == "ddp_sharded":
        return _prepare_sharded_ddp(model.to(device), _make_optimizer(optimizer, model, names))

    model = model.to(device)
    opt = _make_optimizer(optimizer, model, names)
    if strategy == "single_device" or world == 1:
        return model, opt
    kwargs = dict(ddp_kwargs or {})
    if cfg.strategy == "ddp_find_unused_parameters_true":
        kwargs.setdefault("find_unused_parameters", True)
    wrapped = idist.auto_model(model, **kwargs)
    if strategy == "zero":
        from torch.distributed.optim import ZeroRedundancyOptimizer

        if any(opt.state.values()):
            raise ValueError(
                "strategy='zero' needs a fresh optimizer (its state would be lost); call prepare() before training"
            )
        groups = [dict(g) for g in opt.param_groups]
        opt = ZeroRedundancyOptimizer(groups, optimizer_class=type(opt), **opt.defaults)
    return wrapped, opt


def _owns_parameters(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False))


def _fully_shard(
    model: nn.Module,
    device: torch.device,
    world: int,
    *,
    offload: bool,
    shard_modules: Callable[[nn.Module], bool] | None,
) -> nn.Module:
    from torch.distributed.device_mesh import init_device_mesh

    try:
        from torch.distributed.fsdp import CPUOffloadPolicy, FSDPModule, fully_shard
    except ImportError:  # torch < 2.6
        from torch.distributed._composable.fsdp import CPUOffloadPolicy, FSDPModule, fully_shard  # type: ignore

    if isinstance(model, FSDPModule):
        return model
    mesh = init_device_mesh(device.type, (world,))
    kwargs: dict[str, Any] = {"mesh": mesh}
    if offload:
        kwargs["offload_policy"] = CPUOffloadPolicy(pin_memory=device.type == "cuda")
    else:
        model = model.to(device)
    select = shard_modules or _owns_parameters
    children = [m for m in model.modules() if m is not model and select(m)]
    for module in reversed(children):  # innermost first
        fully_shard(module, **kwargs)
    fully_shard(model, **kwargs)
    return model


def _prepare_sharded_ddp(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[nn.Module, torch.optim.Optimizer]:
    try:
        from fairscale.nn.data_parallel import ShardedDataParallel
    except ImportError as exc:
        raise ImportError("strategy='ddp_sharded' needs fairscale: pip install fairscale==0.4.13") from exc
    oss_cls = _oss_class()
    groups = [dict(g) for g in optimizer.param_groups]
    oss = oss_cls(groups, optim=type(optimizer), **optimizer.defaults)
    return ShardedDataParallel(model, oss), oss


_OSS_CLASS: Any = None


def _oss_class() -> Any:
    """fairscale's OSS with two fixes for use under Ignite.

    * ``zero_grad()`` keeps gradients as zero tensors (``set_to_none=False``): with torch 2's
      default ``set_to_none=True``, ShardedDataParallel silently computes different updates than DDP.
    * ``state_dict()`` consolidates the sharded state onto rank 0 first (a collective, so Ignite's
      ``Checkpoint`` calling it on every rank works); other ranks return ``{}``.
    """
    global _OSS_CLASS
    if _OSS_CLASS is None:
        import torch.distributed as dist
        from fairscale.optim.oss import OSS

        class SpeedOSS(OSS):  # type: ignore[misc, valid-type]
            def zero_grad(self, set_to_none: bool = False) -> None:
                super().zero_grad(set_to_none=set_to_none)

            def state_dict(self, all_ranks: bool = False) -> dict[str, Any]:
                if all_ranks:
                    return super().state_dict(all_ranks=True)
                self.consolidate_state_dict(recipient_rank=0)
                if dist.get_rank() != 0:
                    return {}
                return super().state_dict()

        _OSS_CLASS = SpeedOSS
    return _OSS_CLASS


def deepspeed_config_for(cfg: Any, strategy: str | None = None) -> dict[str, Any]:
    """The DeepSpeed config dict ``prepare`` passes to ``deepspeed.initialize``.

    Starts from ``cfg.deepspeed_config`` (a dict or a JSON file path) and fills in what the flags
    say: the ZeRO stage and offload from the strategy name (``"deepspeed"`` alone means stage 2
    unless the config names a stage), ``gradient_accumulation_steps`` from
    ``accumulate_grad_batches``, ``gradient_clipping`` from ``gradient_clip_val`` (``0.0``, no
    clipping, when neither names it: DeepSpeed's own default of ``1.0`` would clip where DDP does
    not), fp16/bf16 from ``precision``, and ``train_micro_batch_size_per_gpu=1`` when no batch size
    is given (DeepSpeed requires one; it only affects its own data loader and logging). Unless the
    config says otherwise, ``zero_allow_untested_optimizer=True`` lets ZeRO take any torch optimizer
    (as Lightning does). A flag that contradicts the given config is a ``ValueError``.
    """
    cfg = as_config(cfg)
    strategy = strategy or cfg.strategy
    if strategy not in DEEPSPEED_STRATEGIES:
        raise ValueError(f"strategy={strategy!r} is not a DeepSpeed strategy; accepted: {list(DEEPSPEED_STRATEGIES)}")
    raw = cfg.deepspeed_config
    if isinstance(raw, str):
        if not os.path.isfile(raw):
            raise ValueError(f"deepspeed_config={raw!r} is not a file; accepted: a dict or the path of a JSON file")
        with open(raw, encoding="utf-8") as fh:
            raw = json.load(fh)
    ds: dict[str, Any] = json.loads(json.dumps(dict(raw or {})))  # deep copy, plain data
    zero = ds.setdefault("zero_optimization", {})
    given_stage = zero.get("stage")
    stage = int(strategy.split("_")[2]) if strategy.startswith("deepspeed_stage_") else None
    if stage is None:
        stage = 2 if given_stage is None else int(given_stage)
    elif given_stage is not None and int(given_stage) != stage:
        raise ValueError(
            f"strategy={strategy!r} asks for ZeRO stage {stage} but deepspeed_config has "
            f"zero_optimization.stage={given_stage}; make them agree"
        )
    zero["stage"] = stage
    if strategy.endswith("_offload"):
        zero.setdefault("offload_optimizer", {"device": "cpu"})
        if stage == 3:
            zero.setdefault("offload_param", {"device": "cpu"})

    def put(key: str, value: Any, flag: str) -> None:
        if key in ds and ds[key] != value:
            raise ValueError(f"{flag} conflicts with deepspeed_config[{key!r}]={ds[key]!r}; set it in one place")
        ds[key] = value

    if "accumulate_grad_batches" in cfg.explicit:
        put(
            "gradient_accumulation_steps",
            cfg.accumulate_grad_batches,
            f"accumulate_grad_batches={cfg.accumulate_grad_batches}",
        )
    if cfg.gradient_clip_val:
        if cfg.gradient_clip_algorithm != "norm":
            raise ValueError(
                "gradient_clip_algorithm='value' is not supported by DeepSpeed (it clips the global "
                "norm); accepted with a deepspeed strategy: 'norm'"
            )
        put("gradient_clipping", cfg.gradient_clip_val, f"gradient_clip_val={cfg.gradient_clip_val}")
    elif "gradient_clip_val" in cfg.explicit:
        put("gradient_clipping", 0.0, f"gradient_clip_val={cfg.gradient_clip_val!r} (no clipping)")
    else:
        # DeepSpeed's own default is gradient_clipping=1.0 (global norm): it would silently clip every
        # step that DDP (and Lightning, which also writes 0.0 here) leaves alone.
        ds.setdefault("gradient_clipping", 0.0)
    if cfg.precision.startswith("16"):
        ds.setdefault("fp16", {}).setdefault("enabled", True)
    elif cfg.precision.startswith("bf16"):
        ds.setdefault("bf16", {}).setdefault("enabled", True)
    if "train_batch_size" not in ds and "train_micro_batch_size_per_gpu" not in ds:
        ds["train_micro_batch_size_per_gpu"] = 1
    # ZeRO otherwise refuses every torch optimizer but Adam/AdamW/Lamb/Adagrad (SGD included); Lightning's
    # default too
    ds.setdefault("zero_allow_untested_optimizer", True)
    return ds


def _prepare_deepspeed(model: nn.Module, optimizer: OptimizerLike, cfg: Any, strategy: str) -> tuple[Any, Any]:
    try:
        import deepspeed
    except ImportError as exc:
        raise ImportError(f"strategy={strategy!r} needs DeepSpeed: pip install deepspeed") from exc
    import ignite.distributed as idist

    ds_config = deepspeed_config_for(cfg, strategy)
    deepspeed.init_distributed(dist_backend=idist.backend())
    opt_arg: Any = optimizer if isinstance(optimizer, torch.optim.Optimizer) else None
    if opt_arg is None and not callable(optimizer):
        raise TypeError(
            f"optimizer has type {type(optimizer).__name__}; accepted: a torch.optim.Optimizer or a "
            f"callable params -> Optimizer"
        )
    engine, ds_optimizer, _, _ = deepspeed.initialize(
        model=model,
        optimizer=opt_arg if opt_arg is not None else optimizer,
        model_parameters=None if opt_arg is not None else list(model.parameters()),
        config=ds_config,
    )
    return engine, ds_optimizer
