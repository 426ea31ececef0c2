"""Where a config's flags can come from: a mapping, an ``argparse.Namespace``, a dataclass instance or an
OmegaConf ``DictConfig`` (``SpeedConfig.from_any`` takes another ``SpeedConfig`` itself)."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from typing import Any

__all__ = ["flags_from_source"]


def flags_from_source(source: Any) -> dict[str, Any]:
    """The flags of ``source`` as a new dict (``None``: no flags)."""
    if source is None:
        return {}
    if isinstance(source, argparse.Namespace):
        return dict(vars(source))
    module = type(source).__module__ or ""
    if module.startswith("omegaconf"):
        from omegaconf import OmegaConf  # only when the user already handed us an OmegaConf object

        return dict(OmegaConf.to_container(source, resolve=True))  # type: ignore[arg-type]
    if dataclasses.is_dataclass(source) and not isinstance(source, type):
        return {f.name: getattr(source, f.name) for f in dataclasses.fields(source)}
    if isinstance(source, Mapping):
        return dict(source)
    raise TypeError(
        f"cannot build a SpeedConfig from {type(source).__name__}; accepted: None, a dict, a SpeedConfig, "
        f"an argparse.Namespace, a dataclass instance or an OmegaConf DictConfig"
    )
