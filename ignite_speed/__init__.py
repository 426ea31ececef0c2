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

# A literal list (not computed from _EXPORTS), so that type checkers see the public names; tests/test_typing.py
# checks that it names every key of _EXPORTS and nothing else.
__all__ = [
    "PREEMPTED_EXIT_CODE",
    "AutoResume",
    "BatchLimit",
    "EarlyStopping",
    "EarlyStoppingOptions",
    "EarlyStoppingReason",
    "LoopLimits",
    "NonFiniteLossGuard",
    "Precision",
    "PreemptionGuard",
    "Progress",
    "SpeedConfig",
    "Speedups",
    "StepEvents",
    "StopController",
    "StopReason",
    "TimeBudget",
    "TrainBatchLimit",
    "TrainingLoop",
    "ValidationSchedule",
    "__version__",
    "attach_speedups",
    "create_trainer",
    "launch",
    "prepare",
    "prepare_dataloader",
    "with_batched_fetch",
]

if TYPE_CHECKING:  # pragma: no cover  (static checkers see the lazy names; "X as X" marks each as exported)
    from .config import BatchLimit as BatchLimit
    from .config import SpeedConfig as SpeedConfig
    from .data import with_batched_fetch as with_batched_fetch
    from .distributed import launch as launch
    from .distributed import prepare as prepare
    from .distributed import prepare_dataloader as prepare_dataloader
    from .handlers import PREEMPTED_EXIT_CODE as PREEMPTED_EXIT_CODE
    from .handlers import AutoResume as AutoResume
    from .handlers import EarlyStopping as EarlyStopping
    from .handlers import EarlyStoppingOptions as EarlyStoppingOptions
    from .handlers import EarlyStoppingReason as EarlyStoppingReason
    from .handlers import LoopLimits as LoopLimits
    from .handlers import NonFiniteLossGuard as NonFiniteLossGuard
    from .handlers import PreemptionGuard as PreemptionGuard
    from .handlers import TimeBudget as TimeBudget
    from .handlers import TrainBatchLimit as TrainBatchLimit
    from .handlers import ValidationSchedule as ValidationSchedule
    from .loop import Progress as Progress
    from .loop import StepEvents as StepEvents
    from .loop import StopController as StopController
    from .loop import StopReason as StopReason
    from .loop import TrainingLoop as TrainingLoop
    from .speedups import Speedups as Speedups
    from .speedups import attach_speedups as attach_speedups
    from .step import Precision as Precision
    from .step import create_trainer as create_trainer


__getattr__, __dir__ = lazy_names(__name__, _EXPORTS, __all__, globals())
