"""The training loop that the handlers of one trainer share: counters, decisions and the run's state.

Every handler of :mod:`ignite_speed.handlers` attaches to the trainer's one :class:`TrainingLoop`
(made by the first of them) and registers itself as a *concern* there: the loop limits, the
training-batch limit, the validation schedule, the time budget, early stopping, the non-finite-loss
guard. The loop alone adds event handlers to the trainer, so the per-batch cost does not grow with
the number of handlers: at most two per training batch,

* ``ITERATION_COMPLETED`` (first): count batches and optimizer steps;
* ``ITERATION_COMPLETED`` (last, after the user's handlers): the concerns' per-batch checks, the
  validation decision, ending the epoch or the run;

merged into one when the trainer has no ``ITERATION_COMPLETED`` handler of its own;

and per epoch or run: ``EPOCH_STARTED`` (counters; the epoch's data iterator), ``EPOCH_COMPLETED``
(the epoch-end decision), ``STARTED`` / ``COMPLETED`` (clock, a decision left pending by a checkpoint,
the final reason). Setting up a run (:mod:`ignite_speed.loop.run_setup`) happens in a wrapper of
``trainer.run`` (:mod:`ignite_speed.loop.trainer_events` says why it is needed).
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable
from typing import Any, TypeVar

from ignite.engine import Engine, Events

from .._compat import engine_is_done
from .agreement import StopAgreement
from .clock import TrainingClock
from .epoch_end import TERMINATED_MESSAGE, epoch_end_decision
from .position import DataPosition, Stage, replay_open_window
from .progress import Progress
from .resume import set_epoch_position, torch_rng_state
from .run_setup import RunLimits, RunSetup, load_loop_state, loop_state_dict
from .step_events import StepEvents
from .stop import StopController, StopReason, StopRequest
from .trainer_events import attach_loop, detach_loop
from .trainer_parts import TrainerParts

__all__ = ["TrainingLoop", "RunLimits", "LoopHandler"]

_BATCH_PENDING, _IN_EPOCH = Stage.BATCH_PENDING, Stage.IN_EPOCH


class TrainingLoop:
    """The loop state and decisions of one trainer (get it with :meth:`of`; handlers make it).

    Attributes:
        controller: the trainer's :class:`~ignite_speed.loop.StopController`.
        progress: loop counters with Lightning's meanings.
        clock: elapsed training time (validation included; the sanity check excluded).
        concerns: the attached handlers by concern (``"limits"``, ``"train_batches"``, ``"validation"``,
            ``"time_budget"``, ``"early_stopping"``, ``"nan_guard"``).
        accumulate: batches per optimizer step (``accumulate_grad_batches``).
        batched_fetch: read the training and validation ``DataLoader`` of a ``TensorDataset`` a batch at a
            time (:func:`~ignite_speed.data.with_batched_fetch`); ``attach_speedups`` sets it from
            its flag, the handlers alone leave it off.
    """

    rank_failure_timeout: datetime.timedelta = datetime.timedelta(seconds=30)

    def __init__(self, trainer: Engine) -> None:
        self.trainer = trainer
        self.parts = TrainerParts.of(trainer)  # (the one attribute on the trainer)
        self._own_controller = self.parts.controller is None
        self.controller = StopController.of_or_new(trainer, caller="TrainingLoop")
        self.progress = Progress()
        self.clock = TrainingClock()
        self.position = DataPosition()
        self.concerns: dict[str, Any] = {}
        self.accumulate: int = self.parts.accumulate
        self.run_limits = RunLimits()
        self.train_batches: int | None = None  # per epoch, for the current run (None: unknown)
        self.fresh_iterator_each_epoch = False
        self.batched_fetch = False  # attach_speedups' batched_fetch flag: run() reads TensorDatasets a batch at a time
        self.world_size = 1
        self.is_rank_zero = True
        self.stage = Stage.BETWEEN
        self.epoch_ended_early = False
        self.end_after_epoch: StopRequest | None = None
        self.window_batches = 0  # batches of the epoch since its last optimizer step (accumulate_grad_batches)
        self.window_rng: Any = None  # torch generator states where the open window began
        self.replay: dict[str, Any] | None = None  # a loaded state, handed from run() to the STARTED handler
        self.setup = RunSetup(self)
        self._per_batch: list[Callable[[Engine], None]] = []
        self._fire_steps = False  # StepEvents.OPTIMIZER_STEP has handlers
        self.flushes: list[Callable[[Engine], None]] = []  # checks deferred to an agreement or epoch end
        self._schedule: Any = None
        # the per-batch fast path: the epoch batch index of the next planned validation, whether a clock
        # schedules it, max_steps as a number (set at the start of a run and after each due batch)
        self._next_val: float = 0
        self._time_schedule = False
        self._max_steps: float = math.inf
        self.agreement = StopAgreement()  # when the ranks agree on stop requests (see agreement.py)
        if StepEvents.OPTIMIZER_STEP not in trainer._allowed_events:
            trainer.register_events(*StepEvents, event_to_attr={StepEvents.OPTIMIZER_STEP: "optimizer_step"})
        attach_loop(self)
        self.parts.loop = self

    # ------------------------------------------------------------------ one loop per trainer
    @classmethod
    def of(cls, trainer: Engine) -> TrainingLoop | None:
        """The loop of ``trainer``, if a handler made one."""
        parts = TrainerParts.find(trainer)
        return None if parts is None else parts.loop

    @classmethod
    def of_or_attach(cls, trainer: Engine) -> TrainingLoop:
        if not isinstance(trainer, Engine):
            raise TypeError(f"trainer={type(trainer).__name__} is not an ignite Engine")
        loop = cls.of(trainer)
        return loop if loop is not None else cls(trainer)

    def add(self, concern: str, handler: Any) -> None:
        """Register ``handler`` for ``concern``; one handler per concern and trainer."""
        old = self.concerns.get(concern)
        if old is not None and old is not handler:
            raise ValueError(f"{type(handler).__name__}.attach: this trainer already has a {type(old).__name__} "
                             f"attached; attach one handler per concern (change the one attached instead)")
        self.concerns[concern] = handler
        self._refresh()

    def remove(self, concern: str) -> None:
        """Forget the handler of ``concern`` (``Speedups.extend`` replaces handlers with new settings)."""
        self.concerns.pop(concern, None)
        self._refresh()

    def _refresh(self) -> None:
        # what the per-batch decision reads, looked up once here rather than on every batch
        self._per_batch = [h.check_batch for h in self.concerns.values() if hasattr(h, "check_batch")]
        self.flushes = [h.flush for h in self.concerns.values() if hasattr(h, "flush")]
        self._schedule = self.concerns.get("validation")

    @property
    def sync_every_n_batches(self) -> int | None:
        """Batches between the ranks' agreements on stop requests (``None``: about once a second)."""
        return self.agreement.sync_every_n_batches

    @sync_every_n_batches.setter
    def sync_every_n_batches(self, value: int | None) -> None:
        self.agreement.sync_every_n_batches = value

    def get(self, concern: str) -> Any:
        return self.concerns.get(concern)

    # ------------------------------------------------------------------ requests from user code
    def request_stop(self, message: str = "stop requested by user code") -> None:
        self.controller.request(StopReason.USER_REQUEST, message, "user")

    def end_epoch(self) -> None:
        event = self.trainer.last_event_name
        if event == Events.ITERATION_STARTED:
            self.count_fetched_batch()  # fetched, not trained: no optimizer step
        elif event != Events.ITERATION_COMPLETED:
            raise RuntimeError(f"end_epoch() must be called from an ITERATION_STARTED or ITERATION_COMPLETED "
                               f"handler of the trainer; it was called during {event}")
        self.epoch_ended_early = True
        self.trainer.terminate_epoch()

    def estimated_stepping_batches(self, train_data: Any) -> int | float:
        """Optimizer steps a ``trainer.run(train_data)`` will take under the attached limits, with
        Lightning's ``Trainer.estimated_stepping_batches`` rule (``limit_train_batches``,
        ``accumulate_grad_batches``, ``max_steps``, ``max_epochs``; ``math.inf`` when nothing bounds the run):
        the ``total_steps`` of a ``OneCycleLR`` schedule, say."""
        return self.setup.estimated_stepping_batches(train_data)

    # ------------------------------------------------------------------ on the trainer (loop_events.py)
    def detach(self) -> None:
        """Take the loop and its handlers off the trainer (see :func:`~ignite_speed.loop.trainer_events.detach_loop`)."""
        detach_loop(self)

    def _on_iteration_completed(self, engine: Engine) -> None:
        self._on_iteration_counted(engine)
        self._on_iteration_decide(engine)

    # ------------------------------------------------------------------ per-run handlers
    def _on_started(self, engine: Engine) -> None:
        self.clock.start()
        self.position.need_iterator = True
        self.agreement.start_run(self.progress.total_batches)
        self._next_val = 0
        schedule = self._schedule
        self._time_schedule = self.world_size <= 1 and schedule is not None and schedule.time_based
        self._max_steps = self.run_limits.max_steps if self.run_limits.max_steps != -1 else math.inf
        replay, self.replay = self.replay, None
        if replay is not None:
            self.setup.complete_pending(engine, replay)
            if engine.should_terminate:
                return
        else:
            self.end_after_epoch = None
            self.epoch_ended_early = False
        self.check_time()
        self.sync()
        if self.controller.should_stop(self.progress.epochs_done, self.progress.global_step):
            self.controller.finish()
            engine.terminate()

    def _on_epoch_pending(self, engine: Engine) -> None:
        self.stage = Stage.EPOCH_PENDING

    def _on_epoch_started(self, engine: Engine) -> None:
        self.stage = Stage.IN_EPOCH
        self._next_val = 0  # the first decision of the epoch asks the schedule
        if self.position.resume_mid_epoch:
            return  # a resumed epoch: its counters and flags come from the checkpoint
        p = self.progress
        p.epoch = engine.state.epoch - 1
        p.batch_in_epoch = 0
        self.window_batches = 0
        self.epoch_ended_early = False
        self.end_after_epoch = None

    def _on_epoch_data(self, engine: Engine) -> None:
        """The last EPOCH_STARTED handler: the epoch's data iterator; after a resume inside an accumulation
        window, the window's batches replayed (their gradients are in no checkpoint)."""
        resumed_mid_epoch = self.position.resume_mid_epoch
        self.position.on_epoch_data(engine)
        replay, self.position.replay = self.position.replay, 0
        window = self.parts.accumulation
        if resumed_mid_epoch and window is not None:
            # the step's own window counter follows the loop's position (Ignite's iteration % epoch_length is
            # wrong once an epoch ended early)
            window.resume(self.progress.batch_in_epoch - replay)
        if replay:
            replay_open_window(self, engine, replay, window)
        elif not resumed_mid_epoch and self.accumulate > 1:
            self.window_rng = torch_rng_state()  # the epoch's first window starts here

    def is_last_batch(self) -> bool:
        return self.train_batches is not None and self.progress.batch_in_epoch >= self.train_batches

    def count_fetched_batch(self) -> None:
        p = self.progress
        p.batch_in_epoch += 1
        p.total_batches += 1
        self.position.fetched += 1

    # ------------------------------------------------------------------ the hot path
    def _on_iteration_counted(self, engine: Engine) -> None:
        # kept to a few attribute updates (see benchmarks/overhead_tiny.py)
        p = self.progress
        n = p.batch_in_epoch = p.batch_in_epoch + 1
        p.total_batches += 1
        self.position.fetched += 1
        self.stage = _BATCH_PENDING
        if n % self.accumulate == 0 or (self.train_batches is not None and n >= self.train_batches):
            p.global_step += 1
            self.window_batches = 0
            if self._fire_steps:
                engine.state.optimizer_step = p.global_step  # type: ignore[attr-defined]
                engine.fire_event(StepEvents.OPTIMIZER_STEP)
        else:
            self.window_batches += 1

    def check_time(self) -> None:
        budget = self.concerns.get("time_budget")
        if budget is not None:
            budget.check(self)

    def sync(self, extra: list[int] | None = None) -> None:
        if self.world_size > 1 or self.controller.has_local_request:
            self.controller.sync(self.world_size, extra or [])
        else:
            self.controller.last_extra = list(extra or [])

    def _on_iteration_decide(self, engine: Engine, replay: bool = False) -> None:
        # no work beyond a few comparisons unless something is due
        self.stage = _IN_EPOCH
        if self.epoch_ended_early:
            return
        if engine.should_terminate:
            self._terminated_by_others(engine)
            return
        p, controller = self.progress, self.controller
        if self.accumulate > 1 and self.window_batches == 0:
            # a window of accumulated gradients starts with the next batch: the generator state that its
            # forward passes draw from, for a resume inside it (replay_window)
            self.window_rng = torch_rng_state()
        for check in self._per_batch:
            check(engine)
        if p.batch_in_epoch < self._next_val and p.total_batches < self.agreement.next_at and not controller._local \
                and controller.pending is None and not self._time_schedule and p.global_step < self._max_steps:
            return  # the common batch: nothing planned, nothing requested
        schedule = self._schedule
        time_due = False
        if p.total_batches >= self.agreement.next_at:
            time_due = self.agreement.agree(self, engine)
        elif controller.has_local_request and self.world_size <= 1:
            controller.sync(1)
        if self._time_schedule:
            time_due = schedule.time_due(self.clock.elapsed())
        stopping = controller.pending is not None and controller.should_stop(p.epochs_done, p.global_step)
        if schedule is not None and schedule.due_after_batch(p, self.is_last_batch(), stopping, time_due):
            self.validate_now()
            if engine.should_terminate:  # e.g. Ignite's EarlyStopping on the evaluator
                self._terminated_by_others(engine)
                return
            stopping = controller.should_stop(p.epochs_done, p.global_step)
        if schedule is not None and p.batch_in_epoch >= self._next_val:
            self._next_val = schedule.next_due(p, self.train_batches)
        max_steps = self.run_limits.max_steps
        if max_steps != -1 and p.global_step >= max_steps:
            self._end_training(StopRequest(StopReason.MAX_STEPS, f"max_steps={max_steps} reached", "max_steps"),
                               replay)
        elif stopping:
            assert controller.pending is not None
            self._end_training(controller.pending, replay)

    def _terminated_by_others(self, engine: Engine) -> None:
        """Another handler (Ignite's ``EarlyStopping`` or ``TerminateOnNan``, user code) called
        ``trainer.terminate()`` during this batch: end the run as a stop request would, with the partial
        epoch ending and counting (so that ``Speedups.extend`` continues it exactly), whatever the minimums."""
        engine.should_terminate = False
        self._end_training(StopRequest(StopReason.TERMINATED, TERMINATED_MESSAGE, "terminate"))

    def _end_training(self, request: StopRequest, replay: bool = False) -> None:
        self.end_after_epoch = request
        if not replay and not self.is_last_batch():
            self.trainer.terminate_epoch()

    def validate_now(self) -> None:
        schedule = self.concerns["validation"]
        schedule.validate()
        self.progress.val_runs += 1
        es = self.concerns.get("early_stopping")
        if es is not None:
            es.on_validation_end(self.trainer, schedule.evaluator, self.progress, schedule.last_metrics)

    # ------------------------------------------------------------------ epoch end
    def _on_epoch_completed(self, engine: Engine) -> None:
        epoch_end_decision(self, engine)
        self.stage = Stage.BETWEEN

    def finish(self, request: StopRequest, *, terminate: bool) -> None:
        """Record why the run ends (and end it, with ``terminate``)."""
        self.position.creation_rng = None  # the run ends: Ignite drops its iterator, a continuation starts afresh
        self.controller.finish(request.reason, request.message, request.source)
        if terminate and not engine_is_done(self.trainer):
            self.trainer.terminate()

    def _on_completed(self, engine: Engine) -> None:
        self.clock.pause()
        if self.controller.final is None:
            p, lim = self.progress, self.run_limits
            if engine.should_terminate:
                self.controller.finish(StopReason.TERMINATED, TERMINATED_MESSAGE, "terminate")
            elif lim.max_epochs != -1 and p.epochs_done >= lim.max_epochs:
                self.controller.finish(StopReason.MAX_EPOCHS, f"max_epochs={lim.max_epochs} reached", "max_epochs")
            else:
                self.controller.finish(StopReason.DATA_EXHAUSTED, "the training data ran out before the limits "
                                       "were reached", "data")
        es = self.concerns.get("early_stopping")
        if es is not None:
            es.on_train_end(engine)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """All loop state as plain data (see :func:`~ignite_speed.loop.run_setup.loop_state_dict`)."""
        return loop_state_dict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output; the next ``trainer.run()`` continues where the saved run stood."""
        load_loop_state(self, state)

    def position_at(self, epoch: int, batches_done: int) -> None:
        set_epoch_position(self.trainer, epoch, batches_done)


_Handler = TypeVar("_Handler", bound="LoopHandler")


class LoopHandler:
    """Base of the handlers that attach to a trainer's :class:`TrainingLoop` (one per ``concern``).

    ``state_dict()`` is the whole loop's state (counters, stop controller, clock, data position and the
    other handlers' state): any one attached handler in ``Checkpoint(to_save=...)`` resumes the run exactly.
    """

    concern: str = ""

    def __init__(self) -> None:
        self._loop: TrainingLoop | None = None

    def attach(self: _Handler, trainer: Engine) -> _Handler:
        """Attach to ``trainer`` (a plain Ignite ``Engine``); returns ``self``."""
        loop = TrainingLoop.of_or_attach(trainer)
        if self._loop is not None and self._loop is not loop:
            raise ValueError(f"{type(self).__name__} is already attached to another trainer; make one per trainer")
        loop.add(self.concern, self)
        self._loop = loop
        self._attached(loop)
        return self

    def _attached(self, loop: TrainingLoop) -> None:
        """What a handler checks or sets up once attached."""

    @property
    def loop(self) -> TrainingLoop:
        if self._loop is None:
            raise RuntimeError(f"{type(self).__name__} is not attached to a trainer: call attach(trainer) first")
        return self._loop

    def state_dict(self) -> dict[str, Any]:
        """The trainer's loop state as plain data (see :meth:`TrainingLoop.state_dict`)."""
        return self.loop.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output; the next ``trainer.run()`` continues where the saved run stood."""
        self.loop.load_state_dict(state)
