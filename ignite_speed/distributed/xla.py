"""torch_xla (TPU) support, with a bridge for ignite's ``xla-tpu`` backend on torch-xla >= 2.8.

ignite (0.4.13 - 0.5.5) drives torch_xla through ``xla_model.xrt_world_size``, ``get_ordinal`` and
``get_local_ordinal``, which torch-xla 2.8 removed in favour of ``torch_xla.runtime``. Before ignite's
backend is used, :func:`install_xla_shims` puts those names back, bound to the runtime functions.
Supported: torch-xla 2.1 and newer (PJRT runtime); torch_xla is imported only when a config asks
for ``accelerator="tpu"``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ._xla_runtime import MIN_TORCH_XLA, _import_xla, install_xla_shims

__all__ = ["install_xla_shims", "xla_optimizer", "prepare_xla", "launch_xla", "MIN_TORCH_XLA"]


def xla_optimizer(
    optimizer: torch.optim.Optimizer, xla_model: Any = None, *, barrier: bool = True
) -> torch.optim.Optimizer:
    """Make ``optimizer.step()`` all-reduce gradients across XLA replicas first (and cut the lazy
    graph with ``mark_step`` when ``barrier``). The object stays an instance of its own class
    (a subclass is swapped in), so LR schedulers and checkpoints keep working."""
    if xla_model is None:
        xla_model, _ = _import_xla()
    base = type(optimizer)
    if getattr(base, "_ignite_speed_xla", False):
        return optimizer
    xm = xla_model

    def step(self: torch.optim.Optimizer, closure: Callable[[], Any] | None = None) -> Any:
        xm.reduce_gradients(self)
        result = base.step(self, closure) if closure is not None else base.step(self)
        if barrier:
            xm.mark_step()
        return result

    optimizer.__class__ = type(base.__name__, (base,), {"step": step, "_ignite_speed_xla": True})
    return optimizer


def prepare_xla(
    model: nn.Module, make_optimizer: Callable[[nn.Module], torch.optim.Optimizer]
) -> tuple[nn.Module, torch.optim.Optimizer]:
    """Move ``model`` to this process's XLA device and wrap the optimizer that ``make_optimizer(model)``
    builds for it with :func:`xla_optimizer`."""
    xm, _ = _import_xla()
    install_xla_shims()
    import torch_xla

    device = torch_xla.device() if hasattr(torch_xla, "device") else xm.xla_device()
    model = model.to(device)
    return model, xla_optimizer(make_optimizer(model), xm)


def _xla_entry(index: int, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    import ignite.distributed as idist

    install_xla_shims()
    idist.initialize("xla-tpu")
    try:
        fn(idist.get_local_rank(), *args, **kwargs)
    finally:
        idist.finalize()


def launch_xla(plan: Any, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    """Run ``fn`` on one TPU core (``devices=1`` or ``[k]``) or on all of them (torch_xla's PJRT
    launcher decides the count; other counts are refused by torch_xla itself)."""
    _import_xla()
    install_xla_shims()
    if plan.nproc_per_node == 1:
        _xla_entry(0, fn, args, kwargs)
        return
    import torch_xla.distributed.xla_multiprocessing as xmp

    xmp.spawn(_xla_entry, args=(fn, args, kwargs), nprocs=None)
