"""ignite-speed: Lightning-style speed-up controls for PyTorch Ignite.

``import ignite_speed`` is cheap: submodules (and torch, Ignite and the optional engines they use)
load on first use of a name.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "attach_speedups": "speedups",
    "Speedups": "speedups",
    "SpeedConfig": "config",
    "BatchLimit": "durations",
    "StopController": "stop",
    "StopReason": "stop",
    "Progress": "progress",
    "EarlyStopping": "early_stopping",
    "EarlyStoppingReason": "early_stopping",
    "NonFiniteLossGuard": "nan_guard",
    "LoopLimits": "limits",
    "TrainBatchLimit": "limits",
    "ValidationSchedule": "validation",
    "TimeBudget": "time_budget",
    "TrainingLoop": "loop",
    "StepEvents": "events",
    "Precision": "precision",
    "create_trainer": "trainer",
    "launch": "distributed",
    "prepare": "distributed",
    "prepare_dataloader": "distributed",
    "with_batched_fetch": "batched_fetch",
}

__all__ = sorted(_EXPORTS) + ["__version__"]

if TYPE_CHECKING:  # pragma: no cover  (static checkers see the lazy names)
    from .batched_fetch import with_batched_fetch  # noqa: F401
    from .config import SpeedConfig  # noqa: F401
    from .durations import BatchLimit  # noqa: F401
    from .progress import Progress  # noqa: F401
    from .speedups import Speedups, attach_speedups  # noqa: F401
    from .stop import StopController, StopReason  # noqa: F401


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ignite_speed' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
