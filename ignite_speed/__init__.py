"""ignite-speed: Lightning-style speed-up controls for PyTorch Ignite.

``import ignite_speed`` is cheap: submodules (and torch, Ignite and the optional engines they use)
load on first use of a name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_names

__version__ = "0.1.0"

_EXPORTS = {
    "attach_speedups": "speedups",
    "Speedups": "speedups",
    "SpeedConfig": "config",
    "BatchLimit": "config",
    "StopController": "loop",
    "StopReason": "loop",
    "Progress": "loop",
    "EarlyStopping": "handlers",
    "EarlyStoppingReason": "handlers",
    "EarlyStoppingOptions": "handlers",
    "NonFiniteLossGuard": "handlers",
    "PreemptionGuard": "handlers",
    "AutoResume": "handlers",
    "PREEMPTED_EXIT_CODE": "handlers",
    "LoopLimits": "handlers",
    "TrainBatchLimit": "handlers",
    "ValidationSchedule": "handlers",
    "TimeBudget": "handlers",
    "TrainingLoop": "loop",
    "StepEvents": "loop",
    "Precision": "step",
    "create_trainer": "step",
    "launch": "distributed",
    "prepare": "distributed",
    "prepare_dataloader": "distributed",
    "with_batched_fetch": "data",
}

__all__ = sorted(_EXPORTS) + ["__version__"]

if TYPE_CHECKING:  # pragma: no cover  (static checkers see the lazy names)
    from .config import BatchLimit, SpeedConfig  # noqa: F401
    from .data import with_batched_fetch  # noqa: F401
    from .distributed import launch, prepare, prepare_dataloader  # noqa: F401
    from .handlers import (  # noqa: F401
        PREEMPTED_EXIT_CODE,
        AutoResume,
        EarlyStopping,
        EarlyStoppingOptions,
        EarlyStoppingReason,
        LoopLimits,
        NonFiniteLossGuard,
        PreemptionGuard,
        TimeBudget,
        TrainBatchLimit,
        ValidationSchedule,
    )
    from .loop import Progress, StepEvents, StopController, StopReason, TrainingLoop  # noqa: F401
    from .speedups import Speedups, attach_speedups  # noqa: F401
    from .step import Precision, create_trainer  # noqa: F401


__getattr__, __dir__ = lazy_names(__name__, _EXPORTS, __all__, globals())
