"""NVIDIA apex for ``amp_backend="apex"``: finding it without importing it, and loading ``apex.amp``.

``apex`` is imported only here, inside :func:`import_apex_amp`, and only when a ``Precision`` asks for it.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import torch

__all__ = ["APEX_INSTALL_HINT", "nvidia_apex_available", "import_apex_amp", "load_apex_amp"]

APEX_INSTALL_HINT = (
    "NVIDIA apex is not on PyPI (`pip install apex` installs an unrelated web toolkit). Build it from source "
    "against your CUDA build of torch: `git clone https://github.com/NVIDIA/apex && cd apex && git checkout 25.05 "
    "&& pip install -v --no-build-isolation --no-cache-dir ./` (releases after 25.05 removed apex.amp). "
    "Or use amp_backend='native' (torch.amp), which needs nothing extra"
)


def nvidia_apex_available() -> bool:
    """True when an ``apex`` package with an ``amp`` sub-package (NVIDIA apex <= 25.05) is importable.

    Decided from the file system only: the PyPI package called ``apex`` is an unrelated web toolkit whose
    import has side effects, so it must never be imported to find out.
    """
    spec = importlib.util.find_spec("apex")
    if spec is None or not spec.submodule_search_locations:
        return False
    return any(os.path.isdir(os.path.join(loc, "amp")) for loc in spec.submodule_search_locations)


def import_apex_amp() -> Any:
    """``apex.amp``, or an ImportError that says which ``apex`` was found and how to install NVIDIA's."""
    spec = importlib.util.find_spec("apex")
    if spec is None:
        raise ImportError(f"amp_backend='apex' needs NVIDIA apex, which is not installed. {APEX_INSTALL_HINT}")
    if not nvidia_apex_available():
        where = ", ".join(spec.submodule_search_locations or []) or str(spec.origin)
        raise ImportError(
            f"amp_backend='apex' needs NVIDIA apex, but the installed 'apex' package ({where}) has "
            f"no 'amp' module: it is either the unrelated PyPI package or an NVIDIA apex newer than "
            f"25.05. {APEX_INSTALL_HINT}"
        )
    try:
        from apex import amp  # type: ignore[import-not-found]
    except Exception as exc:  # a broken build fails in many ways; report them all the same way
        raise ImportError(f"amp_backend='apex': importing apex.amp failed ({exc!r}). {APEX_INSTALL_HINT}") from exc
    return amp


def load_apex_amp(device_type: str, scaler: bool | torch.amp.GradScaler | None) -> Any:
    """``apex.amp`` for a ``Precision`` on ``device_type``, after checking that apex can serve it there."""
    if scaler is not None:
        raise ValueError("scaler= cannot be combined with amp_backend='apex' (apex scales the loss itself)")
    amp = import_apex_amp()
    if device_type != "cuda":
        raise ValueError(
            f"amp_backend='apex' needs a CUDA device, got device type {device_type!r}; use amp_backend='native'"
        )
    return amp
