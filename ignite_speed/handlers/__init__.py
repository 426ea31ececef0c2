"""The ignite-speed handlers: each one concern, each usable alone in a plain Ignite app.

.. code-block:: python

    from ignite_speed.handlers import (LoopLimits, TrainBatchLimit, ValidationSchedule, TimeBudget,
                                       EarlyStopping, NonFiniteLossGuard, PreemptionGuard, AutoResume)

    LoopLimits(max_epochs=10, min_epochs=2).attach(trainer)
    ValidationSchedule(evaluator, val_loader, val_check_interval=0.5).attach(trainer)
    EarlyStopping(evaluator, monitor="val_loss", patience=3).attach(trainer)
    trainer.run(train_loader)          # LoopLimits governs: no max_epochs here

All handlers of a trainer share its :class:`~ignite_speed.loop.TrainingLoop` and
:class:`~ignite_speed.loop.StopController` (read the outcome from ``StopController.of(trainer)``), in any
attach order; :func:`~ignite_speed.attach_speedups` attaches the ones a config enables.
``import ignite_speed.handlers`` loads no optional engine.
"""

from __future__ import annotations

from ..loop import StepEvents, StopController, StopReason, TrainingLoop
from .autoresume import AutoResume
from .base import LoopHandler
from .early_stopping import EarlyStopping, EarlyStoppingOptions
from .early_stopping_rule import EarlyStoppingReason
from .limits import LoopLimits, TrainBatchLimit
from .nan_guard import NonFiniteLossGuard
from .preemption import PREEMPTED_EXIT_CODE, PreemptionGuard
from .pruning import Pruning
from .time_budget import TimeBudget
from .validation import ValidationSchedule

__all__ = [
    "LoopHandler",
    "EarlyStoppingReason",
    "EarlyStoppingOptions",
    "LoopLimits",
    "TrainBatchLimit",
    "ValidationSchedule",
    "TimeBudget",
    "EarlyStopping",
    "NonFiniteLossGuard",
    "PreemptionGuard",
    "AutoResume",
    "Pruning",
    "PREEMPTED_EXIT_CODE",
    "TrainingLoop",
    "StopController",
    "StopReason",
    "StepEvents",
]
