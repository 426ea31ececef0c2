"""torch-xla's import and the names Ignite still calls on it (kept free of package imports: both
:mod:`ignite_speed.distributed._dist` and :mod:`ignite_speed.distributed.xla` use it)."""

from __future__ import annotations

from typing import Any

__all__ = ["MIN_TORCH_XLA", "install_xla_shims"]

MIN_TORCH_XLA = (2, 1)

# legacy xla_model name -> torch_xla.runtime name
_SHIMS = {"xrt_world_size": "world_size", "get_ordinal": "global_ordinal", "get_local_ordinal": "local_ordinal"}


def _import_xla() -> tuple[Any, Any]:
    try:
        import torch_xla
        import torch_xla.core.xla_model as xm
        import torch_xla.runtime as xr
    except ImportError as exc:
        raise ImportError(
            "accelerator='tpu' needs torch_xla (pip install 'torch_xla>=2.1' with the matching torch); "
            f"importing it failed: {exc}"
        ) from exc
    version = tuple(int(p) for p in torch_xla.__version__.split("+")[0].split(".")[:2] if p.isdigit())
    if version and version < MIN_TORCH_XLA:
        raise ImportError(
            f"torch_xla {torch_xla.__version__} is too old; accepted: >= {'.'.join(map(str, MIN_TORCH_XLA))}"
        )
    return xm, xr


def install_xla_shims(xla_model: Any = None, runtime: Any = None) -> list[str]:
    """Add the ``xla_model`` functions ignite's ``xla-tpu`` backend calls and that torch-xla >= 2.8
    removed, bound to their ``torch_xla.runtime`` replacements. Names that exist are left alone.
    Returns the names added (empty on torch-xla < 2.8)."""
    if xla_model is None or runtime is None:
        xla_model, runtime = _import_xla()
    added = []
    for legacy, current in _SHIMS.items():
        if not hasattr(xla_model, legacy) and hasattr(runtime, current):
            setattr(xla_model, legacy, getattr(runtime, current))
            added.append(legacy)
    return added
