"""What the loop's helper modules (run set-up, checkpoint, event wiring) see of the loop: a protocol, so
that they need not import :mod:`ignite_speed.loop.training_loop`, which imports them."""

from __future__ import annotations

import datetime
from typing import Any, Protocol

from ignite.engine import Engine

from .agreement import StopAgreement
from .clock import TrainingClock
from .plan import RunPlan
from .position import DataPosition
from .progress import Progress
from .registry import HandlerRegistry
from .run_timer import RunTimer
from .state import LoopState
from .stop import StopController
from .trainer_parts import TrainerParts

__all__ = ["LoopView"]


class LoopView(Protocol):
    trainer: Engine
    parts: TrainerParts
    controller: StopController
    state: LoopState
    clock: TrainingClock
    timer: RunTimer
    position: DataPosition
    handlers: HandlerRegistry
    plan: RunPlan
    accumulate: int
    agreement: StopAgreement
    time_schedule: bool
    batched_fetch: bool
    rank_failure_timeout: datetime.timedelta
    owns_controller: bool

    @property
    def progress(self) -> Progress: ...


    def begin_run(self, plan: RunPlan) -> None: ...

    def begin_resume(self, replaying: bool | None) -> None: ...

    def reset_run(self) -> None: ...

    def is_last_batch(self) -> bool: ...

    def sync(self, extra: list[int] | None = None) -> None: ...

    def on_iteration_decide(self, engine: Engine, replay: bool = False) -> None: ...

    def on_epoch_completed(self, engine: Engine) -> None: ...

    def load_own_state(self, state: LoopState, controller: dict[str, Any], clock: dict[str, Any],
                       position: dict[str, Any], local_requests: list[dict[str, str]]) -> None: ...

    # the loop's event handlers (wired to the trainer by trainer_events)
    def on_started(self, engine: Engine) -> None: ...

    def on_epoch_started(self, engine: Engine) -> None: ...

    def on_epoch_data(self, engine: Engine) -> None: ...

    def on_epoch_pending(self, engine: Engine) -> None: ...

    def on_iteration_counted(self, engine: Engine) -> None: ...

    def on_iteration_completed(self, engine: Engine) -> None: ...

    def on_terminate(self, engine: Engine) -> None: ...

    def on_completed(self, engine: Engine) -> None: ...
