"""The training loop that the handlers of one trainer share: counters, decisions and the run's state.

Every handler of :mod:`ignite_speed.handlers` registers with the trainer's one :class:`TrainingLoop`
(made by the first of them). The loop alone adds event handlers to the trainer and calls the handlers
through the handler protocol (:mod:`ignite_speed.loop.hooks`), so the per-batch cost does not grow with
the number of handlers: at most two calls per training batch,

* ``ITERATION_COMPLETED`` (first): count batches and optimizer steps;
* ``ITERATION_COMPLETED`` (last, after the user's handlers): the handlers' per-batch hooks, the
  validation decision, ending the epoch or the run;

merged into one when the trainer has no ``ITERATION_COMPLETED`` handler of its own; and per epoch or run:
``EPOCH_STARTED`` (counters; the epoch's data iterator), ``EPOCH_COMPLETED`` (the epoch-end decision),
``STARTED`` / ``TERMINATE`` / ``COMPLETED`` (clock, a decision left pending by a checkpoint, the final reason).

This module holds the loop's decisions (after a due batch, at an epoch's end, at the run's end), how it
sits on its trainer (its event handlers and the ``trainer.run`` wrapper), and :class:`RunSetup`, which
stands between the user's ``trainer.run(...)`` call and Ignite's own ``run``. The resume machinery is in
:mod:`ignite_speed.loop.resume`.
"""

from __future__ import annotations

import datetime
import functools
import math
import warnings
from collections.abc import Callable
from typing import Any

from ignite.engine import Engine, EventEnum, Events, State

from .._compat import engine_is_done, engine_run_original, event_handlers, has_event, move_handler
from .._logging import logger
from ..config.limits import UNLIMITED
from ..data.batched_fetch import with_batched_fetch
from ..data.loaders import UnsizedView, data_length, for_ignite, sequential_copy
from ..distributed import _dist
from .clock import TrainingClock
from .hooks import HandlerRegistry
from .plan import RunLimits, RunPlan
from .progress import Progress
from .resume import (
    CheckpointRehearsal,
    DataPosition,
    RunLayout,
    copy_checkpoint,
    layout_refusal,
    layout_warning,
    loop_checkpoint,
    read_loop_checkpoint,
    restore_rng,
    set_epoch_position,
    torch_rng_state,
)
from .run_timer import RunTimer
from .state import LoopState, Stage
from .stop import RankFailureError, StopAgreement, StopController, StopReason, StopRequest
from .trainer_parts import TrainerParts

__all__ = ["TrainingLoop", "RunSetup", "StepEvents", "TERMINATED", "TERMINATED_MESSAGE"]

_BATCH_PENDING, _IN_EPOCH = Stage.BATCH_PENDING, Stage.IN_EPOCH
TERMINATED_MESSAGE = "trainer.terminate() was called by a handler or user code (not by ignite-speed)"
TERMINATED = StopRequest(StopReason.TERMINATED, TERMINATED_MESSAGE, "terminate")


class StepEvents(EventEnum):
    """Events of the trainer's loop (registered on the trainer by any ignite-speed handler).

    ``OPTIMIZER_STEP`` fires after each batch that took an optimizer step (every ``accumulate_grad_batches``
    batches, and at an epoch's last batch), at the start of that batch's ``ITERATION_COMPLETED``, once the
    loop has counted it; ``trainer.state.optimizer_step`` is the number of steps so far, so filters count
    steps: ``trainer.add_event_handler(StepEvents.OPTIMIZER_STEP(every=100), checkpoint)``. A checkpoint
    written there never lands inside an accumulation window.
    """

    OPTIMIZER_STEP = "optimizer_step"


class TrainingLoop:
    """The loop state and decisions of one trainer (get it with :meth:`of`; handlers make it).

    Attributes:
        controller: the trainer's :class:`~ignite_speed.loop.StopController`.
        state: the loop's own state (:class:`~ignite_speed.loop.state.LoopState`: counters, stage, window).
        clock: elapsed training time (validation included; the sanity check excluded).
        timer: where the time of ``trainer.run`` goes (:class:`~ignite_speed.loop.run_timer.RunTimer`).
        handlers: the registered handlers (:class:`~ignite_speed.loop.hooks.HandlerRegistry`).
        plan: the current run's :class:`~ignite_speed.loop.plan.RunPlan`.
        accumulate: batches per optimizer step (``accumulate_grad_batches``).
        batched_fetch: read ``TensorDataset`` loaders a batch at a time (``attach_speedups``' flag).
    """

    rank_failure_timeout: datetime.timedelta = datetime.timedelta(seconds=30)

    def __init__(self, trainer: Engine) -> None:
        self.trainer = trainer
        self.parts = TrainerParts.of(trainer)  # (the one attribute on the trainer)
        self.owns_controller = self.parts.controller is None  # (one bound before the loop stays when it detaches)
        if self.parts.controller is None:
            StopController().bind(trainer)
        self.controller: StopController = self.parts.controller
        self.state = LoopState()
        self.clock, self.timer = TrainingClock(), RunTimer()
        self.position = DataPosition()
        self.handlers, self.plan = HandlerRegistry(), RunPlan()
        self.accumulate, self.batched_fetch = self.parts.accumulate, False
        self.agreement = StopAgreement()  # when the ranks agree on stop requests (stop.py)
        self.setup = RunSetup(self)
        self._resume: bool | None = None  # a loaded run resumes at the next STARTED (True: a decision pending)
        self._before_validation: dict[str, Any] | None = None  # the checkpoint while a decision validates
        # the per-batch fast path: the epoch batch index of the next planned validation, whether a clock
        # schedules it, max_steps as a number (set at the start of a run and after each due batch)
        self._next_val: float = 0
        self.time_schedule = False  # validation on a clock, in a single process: asked after every batch
        self._max_steps: float = math.inf
        self._train_batches: int | None = None  # the plan's, read per batch
        self._batch_checks = self.handlers.hooks["on_batch_end"]  # (updated in place as handlers register)
        if not has_event(trainer, StepEvents.OPTIMIZER_STEP):
            trainer.register_events(*StepEvents, event_to_attr={StepEvents.OPTIMIZER_STEP: "optimizer_step"})
        _attach(self)
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

    def configure(self, *, accumulate: int, batched_fetch: bool, rank_failure_timeout: datetime.timedelta) -> None:
        """Settings of ``attach_speedups`` (the handlers alone keep the defaults)."""
        self.accumulate, self.batched_fetch, self.rank_failure_timeout = accumulate, batched_fetch, rank_failure_timeout

    @property
    def progress(self) -> Progress:
        return self.state.progress

    @property
    def sync_every_n_batches(self) -> int | None:
        """Batches between the ranks' agreements on stop requests (``None``: about once a second)."""
        return self.agreement.sync_every_n_batches

    @sync_every_n_batches.setter
    def sync_every_n_batches(self, value: int | None) -> None:
        self.agreement.sync_every_n_batches = value

    # ------------------------------------------------------------------ requests from user code
    def request_stop(self, message: str = "stop requested by user code") -> None:
        self.controller.request(StopReason.USER_REQUEST, message, "user")

    def end_epoch(self) -> None:
        """End the current epoch now (from an ``ITERATION_STARTED`` or ``ITERATION_COMPLETED`` handler): the
        epoch's remaining batches and its pending validation are skipped."""
        event = self.trainer.last_event_name
        if event == Events.ITERATION_STARTED:
            self.state.count_fetched_batch()  # fetched, not trained: no optimizer step
            self.position.count()
        elif event != Events.ITERATION_COMPLETED:
            raise RuntimeError(
                f"end_epoch() must be called from an ITERATION_STARTED or ITERATION_COMPLETED "
                f"handler of the trainer; it was called during {event}"
            )
        self.state.end_epoch_early()
        self.trainer.terminate_epoch()

    def estimated_stepping_batches(self, train_data: Any) -> int | float:
        """Optimizer steps a ``trainer.run(train_data)`` will take under the attached limits, with
        Lightning's ``Trainer.estimated_stepping_batches`` rule (``limit_train_batches``,
        ``accumulate_grad_batches``, ``max_steps``, ``max_epochs``; ``math.inf`` when nothing bounds the run):
        the ``total_steps`` of a ``OneCycleLR`` schedule, say."""
        return self.setup.estimated_stepping_batches(train_data)

    def detach(self) -> None:
        """Take the loop and its handlers off the trainer (an ``attach_speedups`` refused part-way leaves the
        trainer as it found it, so that a corrected call can attach)."""
        _detach(self)

    # ------------------------------------------------------------------ a run (called by RunSetup)
    def begin_run(self, plan: RunPlan) -> None:
        """The resolved plan of the run that starts (before any training event)."""
        self.plan, self._train_batches = plan, plan.train_batches

    def begin_resume(self, replaying: bool | None) -> None:
        """A loaded run resumes at the next ``STARTED`` (``replaying``: with the decision it had pending;
        ``None``: it does not resume after all)."""
        self._resume = replaying

    def reset_run(self) -> None:
        """A new run from scratch: counters, stop record, clock, run profile and the handlers' run state are reset."""
        self.state = LoopState()
        self.position.reset()
        self.controller.reset_run()
        self.clock.reset()
        self.timer.reset()
        self.handlers.call("on_new_run")

    # ------------------------------------------------------------------ per-run and per-epoch events
    def on_started(self, engine: Engine) -> None:
        self.clock.start()
        self.fire_steps = bool(event_handlers(engine, StepEvents.OPTIMIZER_STEP))  # (read per batch)
        self.position.start_run()
        self.agreement.start_run(self.state.progress.total_batches)
        self._next_val = 0
        schedule = self.plan.validation
        self.time_schedule = self.plan.world_size <= 1 and schedule is not None and schedule.time_based
        self._max_steps = self.plan.run_limits.max_steps.bound
        resume, self._resume = self._resume, None
        if resume is not None:
            self.handlers.call("on_resume", resume)
            self.setup.complete_pending(engine)
            if engine.should_terminate:
                return
        else:
            self.state.end_after_epoch = None
            self.state.epoch_ended_early = False
        self.handlers.call("on_train_start")
        self.sync()
        p = self.state.progress
        if self.controller.should_stop(p.epochs_done, p.global_step):
            self.controller.finish()
            engine.terminate()

    def on_epoch_pending(self, engine: Engine) -> None:
        self.state.stage = Stage.EPOCH_PENDING

    def on_epoch_started(self, engine: Engine) -> None:
        self.state.stage = Stage.IN_EPOCH
        self._next_val = 0  # the first decision of the epoch asks the schedule
        if not self.position.resume_mid_epoch:  # (a resumed epoch: its counters come from the checkpoint)
            self.state.start_epoch(engine.state.epoch - 1)

    def on_epoch_data(self, engine: Engine) -> None:
        """The last EPOCH_STARTED handler: the epoch's data iterator (:meth:`~.resume.DataPosition.open_epoch`)."""
        self.position.open_epoch(engine, self.state, self.parts.accumulation, self.parts.model, self.accumulate)

    def is_last_batch(self) -> bool:
        n = self.plan.train_batches
        return n is not None and self.state.progress.batch_in_epoch >= n

    def ends_at_this_decision(self) -> bool:
        """Whether the run ends at the decision being made, whatever the handlers ask (its limits, a stop due)."""
        state, limits = self.state, self.plan.run_limits
        p = state.progress
        if limits.max_steps.reached(p.global_step):
            return True
        epoch_end = self.is_last_batch() or state.stage is Stage.EPOCH_PENDING
        return epoch_end and (limits.max_epochs.reached(p.epochs_done + 1) or state.end_after_epoch is not None)

    # ------------------------------------------------------------------ the hot path
    def on_iteration_completed(self, engine: Engine) -> None:
        self.on_iteration_counted(engine)
        self.on_iteration_decide(engine)

    def on_iteration_counted(self, engine: Engine) -> None:
        # kept to a few attribute updates of the loop's own state (see benchmarks/overhead_tiny.py)
        state = self.state
        p = state.progress
        n = p.batch_in_epoch = p.batch_in_epoch + 1
        p.total_batches += 1
        self.position.fetched += 1
        state.stage = _BATCH_PENDING
        train_batches = self._train_batches
        if n % self.accumulate == 0 or (train_batches is not None and n >= train_batches):
            p.global_step += 1
            state.window_batches = 0
            if self.fire_steps:
                engine.state.optimizer_step = p.global_step  # type: ignore[attr-defined]
                engine.fire_event(StepEvents.OPTIMIZER_STEP)
        else:
            state.window_batches += 1

    def sync(self, extra: list[int] | None = None) -> None:
        """A decision point for every stop source: combine the ranks' requests (alone: only if any)."""
        if self.plan.world_size > 1 or self.controller.has_local_request:
            self.controller.sync(self.plan.world_size, extra or [])
        else:
            self.controller.last_extra = list(extra or [])

    def on_iteration_decide(self, engine: Engine, replay: bool = False) -> None:
        # no work beyond a few comparisons unless something is due
        state = self.state
        state.stage = _IN_EPOCH
        if state.epoch_ended_early:
            return
        if engine.should_terminate:
            self._terminated_by_others(engine)
            return
        p, controller = state.progress, self.controller
        if self.accumulate > 1 and state.window_batches == 0:
            # a window of accumulated gradients starts with the next batch: the generator state that its
            # forward passes draw from, for a resume inside it (replay_open_window)
            state.window_rng = torch_rng_state()
        for check in self._batch_checks:
            check(engine)
        if (
            p.batch_in_epoch < self._next_val
            and p.total_batches < self.agreement.next_at
            and not controller.unsynced
            and controller.pending is None
            and not self.time_schedule
            and p.global_step < self._max_steps
        ):
            return  # the common batch: nothing planned, nothing requested
        self._next_val = self.due_batch(engine, replay, self._next_val)

    # ------------------------------------------------------------------ decisions after a due batch
    def due_batch(self, engine: Engine, replay: bool, next_val: float) -> float:
        """Decide after a batch at which something can be due; returns the epoch batch index of the next
        planned validation (``next_val`` unchanged when this batch did not reach it)."""
        p, controller, schedule, agreement = self.state.progress, self.controller, self.plan.validation, self.agreement
        time_due = False
        if p.total_batches >= agreement.next_at:
            self.handlers.call("on_agreement", engine)
            time_due = agreement.agree(controller, p.total_batches, self.plan.world_size, self._time_due_here)
        elif controller.has_local_request and self.plan.world_size <= 1:
            controller.sync(1)
        if self.time_schedule:
            time_due = self._time_due_here()
        stopping = controller.pending is not None and controller.should_stop(p.epochs_done, p.global_step)
        preempted = stopping and controller.pending is not None and controller.pending.reason is StopReason.PREEMPTED
        if preempted and not replay and not self.is_last_batch():
            assert controller.pending is not None
            self._stop_now(controller.pending)
            self.state.leave_decision_pending()  # (the resumed run decides for this batch)
            return next_val
        # (a preempted run does not validate at its stop: the resumed run validates where it is due)
        if schedule is not None and schedule.due_after_batch(
            p, self.is_last_batch(), stopping and not preempted, time_due
        ):
            self._validate_now()
            if engine.should_terminate:  # e.g. Ignite's EarlyStopping on the evaluator
                self._terminated_by_others(engine)
                return next_val
            if controller.has_local_request and self.plan.world_size <= 1:
                controller.sync(1)  # a signal during the validation run: act on it at this batch, not the next
            stopping = controller.should_stop(p.epochs_done, p.global_step)
            pending = controller.pending
            preempted = stopping and pending is not None and pending.reason is StopReason.PREEMPTED
        if schedule is not None and p.batch_in_epoch >= next_val:
            next_val = schedule.next_due(p, self.plan.train_batches)
        max_steps = self.plan.run_limits.max_steps
        if max_steps.reached(p.global_step):
            self._end_training(StopRequest(StopReason.MAX_STEPS, f"max_steps={max_steps} reached", "max_steps"), replay)
        elif preempted and not replay and not self.is_last_batch():  # (a signal during this batch's validation)
            assert controller.pending is not None
            self._stop_now(controller.pending)
        elif stopping:
            assert controller.pending is not None
            self._end_training(controller.pending, replay)
        return next_val

    def _time_due_here(self) -> bool:
        """Whether this rank's clock says a time-based validation is due (rank 0's decides when distributed)."""
        schedule = self.plan.validation
        return (
            schedule is not None
            and schedule.time_based
            and self.plan.is_rank_zero
            and schedule.time_due(self.clock.elapsed())
        )

    def _terminated_by_others(self, engine: Engine) -> None:
        """Another handler (Ignite's ``EarlyStopping`` or ``TerminateOnNan``, user code) called
        ``trainer.terminate()`` during this batch: end the run as a stop request would, with the partial
        epoch ending and counting (so that ``Speedups.extend`` continues it exactly), whatever the minimums."""
        engine.should_terminate = False
        self._end_training(TERMINATED)

    def _stop_now(self, request: StopRequest) -> None:
        """End the run after this batch, inside its epoch (a preemption): the epoch neither ends nor counts, so
        that a checkpoint written now resumes at the next batch of the same epoch, exactly. The data position
        is kept for that checkpoint (:meth:`on_completed` lets it go)."""
        self.controller.finish(request.reason, request.message, request.source)
        self.trainer.terminate()

    def _end_training(self, request: StopRequest, replay: bool = False) -> None:
        self.state.end_after(request)
        if not replay and not self.is_last_batch():
            self.trainer.terminate_epoch()

    def _validate_now(self) -> None:
        schedule = self.plan.validation
        assert schedule is not None
        # a checkpoint written while this decision validates (by the evaluator's handlers, or a handler told of
        # the run) holds the loop as it was before, the decision pending: a resumed run validates here again
        self._before_validation = self._checkpoint(decision_pending=True)
        try:
            self.timer.timed("validation", schedule.validate)
            self.state.note_window_draws(torch_rng_state)
            self.state.progress.val_runs += 1
            self.handlers.call("on_validation_end", schedule.last_metrics or {})
        finally:
            self._before_validation = None

    # ------------------------------------------------------------------ the epoch's end
    def on_epoch_completed(self, engine: Engine) -> None:
        """The last EPOCH_COMPLETED handler: the decision at an epoch's end (count the epoch, let the handlers
        report, and end the run or go on)."""
        state, plan = self.state, self.plan
        p = state.progress
        if engine.should_terminate and state.end_after_epoch is None:
            # terminate() called by another EPOCH_COMPLETED handler (an evaluator run with Ignite's EarlyStopping)
            state.end_after(TERMINATED)
        ended_early = state.epoch_ended_early or state.end_after_epoch is not None
        empty = p.batch_in_epoch == 0 and not ended_early
        if plan.train_batches is None and not ended_early and not empty:
            # loader of unknown length, now exhausted: the pending optimizer step and the validation at exhaustion
            if p.batch_in_epoch % self.accumulate != 0:
                p.global_step += 1
            if plan.validation is not None and plan.validation.due_at_exhaustion(p):
                self._validate_now()
        if empty and _one_shot(engine.state.dataloader):
            # a one-shot generator/iterator is exhausted after one pass: end the run, do not count empty epochs
            message = _empty_one_shot_message(p.epoch)
            warnings.warn(message, UserWarning, stacklevel=2)
            self._finish(StopRequest(StopReason.DATA_EXHAUSTED, message, "data"))
        else:
            _count_epoch_and_decide(self, engine, empty)
        state.stage = Stage.BETWEEN

    # ------------------------------------------------------------------ the run's end
    def _finish(self, request: StopRequest) -> None:
        """Record why the run ends, and end it."""
        self.position.end_run()
        self.controller.finish(request.reason, request.message, request.source)
        if not engine_is_done(self.trainer):
            self.trainer.terminate()

    def on_terminate(self, engine: Engine) -> None:
        """Ignite's ``TERMINATE`` (first): a ``terminate()`` that no decision of the loop saw, from an
        ``ITERATION_STARTED`` (or ``GET_BATCH_*``) handler, where Ignite ends the run at once. As at any other
        event, the partial epoch ends and counts (its ``EPOCH_COMPLETED`` fires), and Ignite's ``iteration``
        drops the batch it counted but never ran, so that ``Speedups.extend`` continues the run."""
        if self.controller.final is not None or self.state.stage is not Stage.IN_EPOCH:
            return  # a decision of the loop ended the run, or the epoch had ended
        engine.state.iteration = self.state.progress.total_batches
        flag = engine.should_terminate  # (Ignite 0.5's "skip_completed" must survive the epoch-end decision)
        engine.fire_event(Events.EPOCH_COMPLETED)
        engine.should_terminate = flag

    def on_completed(self, engine: Engine) -> None:
        """Ignite's ``COMPLETED``: record the reason when no decision did (Ignite's own limits, the data)."""
        self.clock.pause()
        if self.controller.final is None:
            request = _ended_by_ignite(engine, self.state.progress, self.plan.run_limits)
            self.controller.finish(request.reason, request.message, request.source)
        self.handlers.call("on_train_end", engine)
        if self.controller.stop_reason is StopReason.PREEMPTED:
            self.position.end_run()  # (_stop_now kept it for the handlers' last save)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The loop's checkpoint as plain data (``torch.load(weights_only=True)`` reads it back):
        ``{"version": ..., "loop": <the loop's own state>, "<handler name>": <its state_dict()>, ...}``
        (see :func:`~ignite_speed.loop.resume.loop_checkpoint`). Written during a validation run of the
        schedule, it is the state from before that run, its batch's (or epoch's) decision pending: a run
        resumed from it validates there again."""
        if self._before_validation is not None:
            return copy_checkpoint(self._before_validation)
        return self._checkpoint()

    def _checkpoint(self, decision_pending: bool = False) -> dict[str, Any]:
        loader = getattr(self.trainer.state, "dataloader", None)
        parts = (self.state, self.controller, self.clock, self.position, loader, self.handlers)
        return loop_checkpoint(*parts, decision_pending=decision_pending)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (also a state saved by ignite-speed 0.1.0); the next
        ``trainer.run()`` continues where the saved run stood."""
        self.state, rng = read_loop_checkpoint(state, self.controller, self.clock, self.position, self.handlers)
        self.setup.loaded(rng)


# ---------------------------------------------------------------------- how the loop sits on its trainer
def _events(loop: TrainingLoop) -> tuple[tuple[Any, Any], ...]:
    """Every (event, handler) the loop may have on its trainer, in the order they are added."""
    renewed = loop.position.on_iterator_renewed  # (Ignite makes a new iterator after these two)
    return (
        (Events.STARTED, loop.on_started),
        (Events.EPOCH_STARTED, loop.on_epoch_started),
        (Events.EPOCH_STARTED, loop.on_epoch_data),
        (Events.DATALOADER_STOP_ITERATION, renewed),
        (Events.TERMINATE_SINGLE_EPOCH, renewed),
        (Events.EPOCH_COMPLETED, loop.on_epoch_pending),
        (Events.ITERATION_COMPLETED, loop.on_iteration_counted),
        (Events.ITERATION_COMPLETED, loop.on_iteration_decide),
        (Events.ITERATION_COMPLETED, loop.on_iteration_completed),
        (Events.EPOCH_COMPLETED, loop.on_epoch_completed),
        (Events.TERMINATE, loop.on_terminate),
        (Events.COMPLETED, loop.on_completed),
    )


def _attach(loop: TrainingLoop) -> None:
    """Register the loop's event handlers and wrap ``trainer.run`` (once per trainer). Why a wrapper of this
    one trainer's ``run``: the loop must see the arguments the user passed (Ignite's state cannot tell
    run(data) from run(data, max_epochs=1), and a config conflict must be refused), run the sanity check
    before any training event, and put a resumed trainer where the saved run stood before Ignite derives
    its position from ``iteration % epoch_length``."""
    for event, handler in _events(loop):
        if handler != loop.on_iteration_completed:  # (the merged one: see _keep_decisions_last)
            loop.trainer.add_event_handler(event, handler)
    move_handler(loop.trainer, Events.ITERATION_COMPLETED, loop.on_iteration_counted, first=True)
    original, timer, setup = engine_run_original(loop.trainer), loop.timer, loop.setup

    @functools.wraps(original)
    def run(data: Any = None, max_epochs: int | None = None, epoch_length: int | None = None, **kwargs: Any) -> State:
        timer.run_started()  # [run profile] the wall time of the whole call
        returned = False
        try:
            state = setup.run(original, data, max_epochs, epoch_length, **kwargs)
            returned = True
            return state
        finally:
            timer.run_ended(returned)  # (a fast_dev_run that raised is not summed up nor projected)

    loop.trainer.run = run  # type: ignore[method-assign,assignment]


def _keep_decisions_last(loop: TrainingLoop) -> None:
    """At the start of each run: handlers attached after the loop still run before the decisions of the
    same event."""
    t = loop.trainer
    t.state.optimizer_step = loop.progress.global_step  # type: ignore[attr-defined]
    iteration = Events.ITERATION_COMPLETED
    if t.has_event_handler(loop.on_iteration_completed, iteration):  # merged by the last run: split again
        t.remove_event_handler(loop.on_iteration_completed, iteration)
        t.add_event_handler(iteration, loop.on_iteration_counted)
        t.add_event_handler(iteration, loop.on_iteration_decide)
    move_handler(t, iteration, loop.on_iteration_decide, first=False)
    move_handler(t, Events.EPOCH_COMPLETED, loop.on_epoch_completed, first=False)
    move_handler(t, iteration, loop.on_iteration_counted, first=True)
    move_handler(t, Events.EPOCH_COMPLETED, loop.on_epoch_pending, first=True)
    move_handler(t, Events.EPOCH_STARTED, loop.on_epoch_data, first=False)
    move_handler(t, Events.TERMINATE, loop.on_terminate, first=True)
    if len(event_handlers(t, iteration)) == 2:
        # nothing runs between counting and deciding: one handler call per batch instead of two (Ignite's
        # dispatch costs about as much as either body)
        t.remove_event_handler(loop.on_iteration_counted, iteration)
        t.remove_event_handler(loop.on_iteration_decide, iteration)
        t.add_event_handler(iteration, loop.on_iteration_completed)


def _detach(loop: TrainingLoop) -> None:
    t = loop.trainer
    for event, handler in _events(loop):
        if t.has_event_handler(handler, event):
            t.remove_event_handler(handler, event)
    t.__dict__.pop("run", None)  # the class's run again
    loop.handlers.call("detach")
    loop.parts.forget_loop(t, loop, loop.controller if loop.owns_controller else None)


# ---------------------------------------------------------------------- pieces of the epoch-end decision
def _count_epoch_and_decide(loop: TrainingLoop, engine: Engine, empty: bool) -> None:
    """The epoch-end decision for an epoch that counts: the handlers report, then the run ends (a stop
    request, ``max_steps`` / ``max_epochs``) or goes on, with Ignite's ``max_epochs`` and the data iterator
    set up for the next epoch."""
    # (an empty epoch of a re-iterable counts, as in Lightning: the next one may have batches)
    state, plan = loop.state, loop.plan
    p = state.progress
    remeasure = empty and engine.state.epoch_length == 0
    if remeasure:
        # the run's first epoch of an unsized re-iterable gave no batch: Ignite took 0 as the epoch length,
        # which ends its run; let it measure the next epoch again (on a fresh iterator, below)
        engine.state.epoch_length = None
    p.epochs_done += 1
    # the handlers report (deferred checks, the time budget, early stopping's epoch-end check); one sync
    # makes this boundary a decision point for every stop source (early stopping's check syncs itself)
    syncs = loop.controller.syncs
    loop.handlers.call("on_agreement", engine)
    loop.handlers.call("on_epoch_end", engine)
    if loop.controller.syncs == syncs:
        loop.sync()
    request = state.end_after_epoch or _hard_limit_reached(p, plan.run_limits)
    if request is None and loop.controller.should_stop(p.epochs_done, p.global_step):
        request = loop.controller.pending
    if request is not None:
        loop._finish(request)
        return
    if plan.run_limits.max_epochs.unlimited and engine.state.max_epochs is not None:
        wanted = _ignite_max_epochs_ahead(
            engine.state.epoch,
            engine.state.max_epochs,
            p.epochs_done,
            loop.clock.elapsed(),
            plan.time_budget_seconds,
        )
        if wanted is not None:
            engine.state.max_epochs = wanted
    if remeasure or (plan.fresh_iterator_each_epoch and not state.epoch_ended_early):
        # Lightning's limit_train_batches: every epoch takes the first N batches of a fresh iterator
        # (Ignite's epoch_length alone would continue the old one).
        loop.position.new_iterator(engine)


def _ended_by_ignite(engine: Engine, progress: Progress, limits: RunLimits) -> StopRequest:
    """Why a run ended that no decision of the loop ended: a ``terminate()``, Ignite's own limits, the data."""
    if engine.should_terminate:
        return TERMINATED
    if limits.max_epochs.reached(progress.epochs_done):
        return StopRequest(StopReason.MAX_EPOCHS, f"max_epochs={limits.max_epochs} reached", "max_epochs")
    return StopRequest(StopReason.DATA_EXHAUSTED, "the training data ran out before the limits were reached", "data")


def _hard_limit_reached(progress: Progress, limits: RunLimits) -> StopRequest | None:
    """``max_steps`` or ``max_epochs`` reached at an epoch end (whatever the minimums), else ``None``."""
    if limits.max_steps.reached(progress.global_step):
        return StopRequest(StopReason.MAX_STEPS, f"max_steps={limits.max_steps} reached", "max_steps")
    if limits.max_epochs.reached(progress.epochs_done):
        return StopRequest(StopReason.MAX_EPOCHS, f"max_epochs={limits.max_epochs} reached", "max_epochs")
    return None


def _empty_one_shot_message(epoch: int) -> str:
    return (
        f"the training data gave no batches in epoch {epoch} (0-based): a one-shot generator or "
        f"iterator is exhausted after one pass; pass a re-iterable (a DataLoader or a list) to train "
        f"more epochs"
    )


def _ignite_max_epochs_ahead(
    epoch: int, max_epochs: int, epochs_done: int, elapsed: float, budget_seconds: float | None
) -> int | None:
    """No epoch limit: the ``max_epochs`` to give Ignite so that it trains on and a ``ProgressBar`` shows
    an estimate (one more epoch than ``epoch``, or as many as ``max_time`` is likely to allow), or ``None``
    to leave it."""
    wanted = epoch + 1
    if budget_seconds is not None and epochs_done:
        per_epoch = elapsed / epochs_done
        if per_epoch > 0:
            wanted = max(wanted, math.ceil(budget_seconds / per_epoch))
    return wanted if epoch >= max_epochs or wanted > max_epochs else None


def _one_shot(data: Any) -> bool:
    """Whether ``data`` is an iterator (``iter()`` gives itself back): exhausted after one pass."""
    data = data.data if isinstance(data, UnsizedView) else data
    try:
        return iter(data) is data
    except TypeError:
        return False


# ---------------------------------------------------------------------- a run's set-up
class RunSetup:
    """What happens between the user's ``trainer.run(...)`` call and Ignite's own ``run``."""

    def __init__(self, loop: TrainingLoop) -> None:
        self.loop = loop
        self._loaded = False  # a state was loaded that no run() has used yet
        self._loaded_rng: dict[str, Any] | None = None  # ... with the generator states it was saved with
        self.source: str | None = None  # the file the loaded state came from, when known (autoresume)
        self.allow_resume_changes = self.extended_layout = False  # another layout (resume.py); 2nd: once, by extend
        self.changes: list[tuple[str, Any, Any]] = []  # this run's layout against the saved one (accepted)
        self._end_epoch_at_resume = False  # a resume under another layout ends the interrupted epoch first
        self._saved_batches: int | None = None  # ... whose batches per epoch were these

    def loaded_from(self, path: str) -> None:
        """The state loaded for the next run came from ``path`` (named in the refusals of a resume)."""
        self.source = path

    def loaded(self, rng: dict[str, Any] | None) -> None:
        """A state was loaded (:meth:`TrainingLoop.load_state_dict`): the next run resumes it."""
        self._loaded, self._loaded_rng = True, rng

    # ------------------------------------------------------------------ the run
    def run(
        self, original: Callable[..., State], data: Any, max_epochs: int | None, epoch_length: int | None, **kwargs: Any
    ) -> State:
        loop = self.loop
        loop.handlers.call("before_run")  # (autoresume loads a checkpoint here)
        t = loop.trainer
        # A brand-new engine, or one the user reset with ``trainer.state.max_epochs = None`` (Ignite's restart).
        new_run = t.state.max_epochs is None and getattr(t.state, "max_iters", None) is None
        plan = self.plan_for(max_epochs, kwargs.pop("max_iters", None), new_run)
        self._check_continuable(new_run)
        data = self._prepare_data(plan, data, epoch_length, new_run)
        loop.begin_run(plan)
        try:  # a run that called on_run_start calls on_run_exit once, however it ends: no training, a raise
            loop.handlers.call("on_run_start", plan)
            if new_run and plan.validation is not None:
                loop.timer.timed("sanity_check", plan.validation.sanity_check)
            lim = plan.run_limits
            if plan.train_batches == 0 or lim.max_epochs == 0 or lim.max_steps == 0:  # (a Limit is its int value)
                what = (
                    "limit_train_batches gives 0 batches"
                    if plan.train_batches == 0
                    else "max_epochs=0"
                    if lim.max_epochs == 0
                    else "max_steps=0"
                )
                loop.controller.finish(StopReason.NO_TRAINING, f"no training: {what}", "limits")
                return t.state
            pending = self._position_for_resume(new_run)
            run_kwargs = self._ignite_run_kwargs(plan, kwargs, new_run, pending)
            _keep_decisions_last(loop)
            return self._run_ignite(original, data, run_kwargs, rehearse=new_run and bool(plan.fast_dev_run))
        finally:
            loop.handlers.call("on_run_exit")

    def plan_for(self, max_epochs: int | None, max_iters: int | None, new_run: bool) -> RunPlan:
        """The plan of a run with these ``run()`` arguments, as the handlers set it."""
        loop = self.loop
        plan = RunPlan(new_run=new_run, max_epochs_arg=max_epochs, max_iters_arg=max_iters, accumulate=loop.accumulate)
        loop.handlers.call("plan_run", plan)
        if plan.limits is None:
            # No LoopLimits: Ignite's own arguments govern (run(data) trains 1 epoch, or continues a resumed run).
            if max_epochs is None:
                state_max = loop.trainer.state.max_epochs
                max_epochs = (
                    UNLIMITED if max_iters is not None else (1 if new_run or state_max is None else int(state_max))
                )
            plan.limits = RunLimits.of(max_epochs, UNLIMITED if max_iters is None else int(max_iters))
        return plan

    def _check_continuable(self, new_run: bool) -> None:
        """A new run starts from scratch; a continued one must be where the loop's state says."""
        loop = self.loop
        t = loop.trainer
        if new_run:
            if loop.progress.total_batches or loop.controller.final is not None:
                loop.reset_run()
        elif not self._loaded and loop.progress.total_batches != t.state.iteration:
            # Ignite's state came from a checkpoint (Checkpoint.load_objects), the loop's did not: its counters,
            # stop record and data position would be those of another point of training
            raise RuntimeError(
                f"the trainer was restored to iteration {t.state.iteration} (epoch {t.state.epoch}), but ignite-speed's "
                f"state was not (it stands at iteration {loop.progress.total_batches}): add the Speedups object (or "
                f"TrainingLoop.of(trainer) when you use the handlers alone) to Checkpoint(to_save={{'trainer': trainer, "
                f"'speedups': speedups, ...}}) and to Checkpoint.load_objects(to_load=...), then resume from a "
                f"checkpoint written with it"
            )
        elif loop.controller.final is not None:
            final = loop.controller.final
            raise RuntimeError(
                f"this training run already finished ({final.reason.value}: {final.message}); ignite-speed does not "
                f"train on silently. To continue it, call speedups.extend(...) with the limit to raise (e.g. "
                f"speedups.extend(max_epochs=20)); to start a new run, set trainer.state.max_epochs = None"
            )

    def _prepare_data(self, plan: RunPlan, data: Any, epoch_length: int | None, new_run: bool) -> Any:
        """The data Ignite iterates, and the plan's batches per epoch and ranks."""
        t = self.loop.trainer
        plan.world_size = _dist.get_world_size()
        plan.is_rank_zero = _dist.get_rank() == 0
        plan.train_data, data = data, for_ignite(data)
        full_length = plan.data_batches = epoch_length if epoch_length is not None else data_length(data)
        if plan.overfit:
            data = sequential_copy(data, "train")
        if self.loop.batched_fetch:
            data = with_batched_fetch(data)
        plan.train_batches = plan.train_limit.resolve(full_length, "limit_train_batches")
        plan.fresh_iterator_each_epoch = plan.train_batches is not None and (
            full_length is None or plan.train_batches < full_length
        )
        saved = self.loop.position.layout
        self._saved_batches = None if saved is None else saved.train_batches
        self.changes = _check_layout(
            self.loop,
            plan,
            plan.train_data,
            data_length(data),
            None if new_run else saved,
            self.source,
            self.allow_resume_changes or self.extended_layout,
        )
        self.extended_layout = False
        if self.changes:
            t.state.epoch_length = plan.train_batches  # (Ignite's own, for the rest of the run)
        elif (
            not new_run
            and t.state.epoch_length is not None
            and plan.train_batches is not None
            and t.state.epoch_length != plan.train_batches
        ):
            raise ValueError(
                f"the resumed run trained {t.state.epoch_length} batches per epoch, but limit_train_batches now gives "
                f"{plan.train_batches}; resume with the same data and limit_train_batches"
            )
        return data

    def _ignite_run_kwargs(self, plan: RunPlan, kwargs: dict[str, Any], new_run: bool, pending: bool) -> dict[str, Any]:
        t = self.loop.trainer
        run_kwargs: dict[str, Any] = dict(kwargs)
        run_kwargs["max_epochs"] = self._ignite_max_epochs(plan)
        if pending and t.state.epoch_length:
            # the interrupted run's pending decision comes first; Ignite must not see the run as done (it
            # would start over), the decision ends it if it is
            run_kwargs["max_epochs"] = max(
                run_kwargs["max_epochs"], t.state.iteration // t.state.epoch_length + 1, t.state.epoch + 1
            )
        if self.changes and t.state.epoch_length:
            # another epoch length: Ignite's iteration >= epoch_length * max_epochs must not end the run before
            # the loop's own limits do (the loop ends it at its max_epochs)
            run_kwargs["max_epochs"] += -(-t.state.iteration // t.state.epoch_length)
        if new_run or t.state.epoch_length is None:
            run_kwargs["epoch_length"] = plan.train_batches
        elif not pending and not self.changes and t.state.iteration >= t.state.epoch_length * run_kwargs["max_epochs"]:
            raise ValueError(
                f"nothing left to train: the run already reached max_epochs={run_kwargs['max_epochs']}; "
                f"raise it with speedups.extend(max_epochs=...)"
            )
        return run_kwargs

    def _run_ignite(
        self, original: Callable[..., State], data: Any, run_kwargs: dict[str, Any], *, rehearse: bool
    ) -> State:
        loop = self.loop
        rehearsal = None
        try:  # (a failure while setting up puts the user's savers back and the timing out too)
            if rehearse:
                rehearsal = CheckpointRehearsal(loop.trainer)
            loop.timer.begin_call(loop)  # [run profile] checkpoint saves (and with profile=True the batches) timed
            state = _other_engines_limited(loop, original)(data, **run_kwargs)  # (fast_dev_run: the app's too)
        except Exception as exc:
            if rehearsal is not None:
                rehearsal.finish(rehearse=False)
            _signal_rank_failure(loop, exc)
            raise
        finally:
            loop.timer.end_call(loop)
            loop.clock.pause()
        if rehearsal is not None:
            rehearsal.finish()
            self._loaded = False  # the loop's own state was loaded back and restored too
            loop.begin_resume(None)
        return state

    def estimated_stepping_batches(self, data: Any) -> int | float:
        """Lightning's ``Trainer.estimated_stepping_batches`` for a run on ``data`` (``math.inf``: unbounded)."""
        plan = self.plan_for(None, None, new_run=True)  # (plain Ignite's run(data): one epoch)
        lim = plan.run_limits
        max_steps = lim.max_steps.bound  # (unsized data: Lightning returns max_steps, -1 without one, which no
        batches = plan.train_limit.resolve(data_length(for_ignite(data)), "limit_train_batches")  # schedule takes)
        if lim.max_epochs.unlimited or batches is None:
            return max_steps
        steps = math.ceil(batches / self.loop.accumulate) * max(lim.max_epochs, 1)
        return min(steps, max_steps)

    def _ignite_max_epochs(self, plan: RunPlan) -> int:
        loop, lim = self.loop, plan.run_limits
        if not lim.max_epochs.unlimited:
            return int(lim.max_epochs)
        if not lim.max_steps.unlimited and plan.train_batches:
            steps_per_epoch = math.ceil(plan.train_batches / loop.accumulate)
            return max(loop.trainer.state.epoch, math.ceil(lim.max_steps / steps_per_epoch))
        # No limit on epochs: Ignite gets one more than it has done, raised at each epoch end (its state and a
        # ProgressBar then show a sensible number, not 2**31 - 1).
        return int(loop.trainer.state.epoch) + 1

    # ------------------------------------------------------------------ resume
    def _position_for_resume(self, new_run: bool) -> bool:
        """After ``load_state_dict``: put the trainer where the saved run stood (Ignite's own
        ``epoch = iteration // epoch_length`` is wrong once an epoch ended early, and it restarts an
        interrupted epoch from batch 0). Returns whether a decision of the saved run is pending."""
        if not self._loaded:
            return False
        source = self.source  # (both kept until the checks pass: a refused run, then extend(), still resumes)
        of = "" if source is None else f" ({source})"
        loop = self.loop
        t, state = loop.trainer, loop.state
        p = state.progress
        if new_run:  # (_check_continuable has reset the loop's state for the new run: nothing left to resume)
            self._loaded, self.source = False, None
            raise ValueError(
                f"speedups state was loaded (total_batches={p.total_batches}), but the trainer has no state to "
                f"resume: load the trainer's checkpoint too, e.g. Checkpoint.load_objects(to_load={{'trainer': "
                f"trainer, 'speedups': speedups, ...}}, checkpoint=...)"
            )
        if t.state.iteration != p.total_batches:
            raise ValueError(
                f"the trainer's state (iteration={t.state.iteration}) and the speedups state (total_batches="
                f"{p.total_batches}) are from different points of training{of}; save and load them together (one "
                f"Checkpoint with both)"
            )
        completed = p.epochs_done + (1 if state.stage is Stage.EPOCH_PENDING else 0)
        max_epochs = loop.plan.run_limits.max_epochs
        if not max_epochs.unlimited and completed > max_epochs:
            raise ValueError(
                f"the checkpoint{of} has {completed} epochs done, but max_epochs={max_epochs}: resume with "
                f"max_epochs >= {completed} (as saved), or start a new run"
                + ("" if source is None else " (move that file out of its folder, or set autoresume=False)")
            )
        self._loaded, self.source = False, None
        pending = state.stage in (Stage.BATCH_PENDING, Stage.EPOCH_PENDING)
        mid_epoch = state.stage in (Stage.IN_EPOCH, Stage.BATCH_PENDING)
        if self.changes:
            # another layout: the interrupted epoch ends at the checkpoint's batch, the next starts afresh
            _warn_layout_change(loop, self.changes, mid_epoch, self._saved_batches)
            self._end_epoch_at_resume = mid_epoch
            pending = pending or mid_epoch
            loop.position.restart()
        else:
            loop.position.resume(mid_epoch, state.window_batches if mid_epoch and loop.accumulate > 1 else 0)
        loop.begin_resume(pending)
        if state.stage is Stage.BETWEEN:
            set_epoch_position(t, p.epochs_done, 0)
        else:
            set_epoch_position(t, p.epoch, p.batch_in_epoch if mid_epoch else 0)
        return pending

    def complete_pending(self, engine: Engine) -> None:
        """First thing in a resumed run: restore the generators and make the decision the saved run had
        pending when its checkpoint was written (handlers of that event that ran before the checkpoint
        are not run again, as with plain Ignite; the events the decision leads to are fired)."""
        loop = self.loop
        state = loop.state
        p = state.progress
        if self._loaded_rng is not None:
            restore_rng(self._loaded_rng, engine.state.dataloader)
            self._loaded_rng = None
        if self._end_epoch_at_resume:
            self._end_epoch_at_resume = False
            _end_interrupted_epoch(loop, engine)
        elif state.stage is Stage.BATCH_PENDING:
            loop.on_iteration_decide(engine, replay=True)
            if state.epoch_ended_early or state.end_after_epoch is not None or loop.is_last_batch():
                if not loop.is_last_batch():
                    loop.position.new_iterator(engine)  # terminate_epoch() made the interrupted run a fresh iterator
                loop.position.resume_done()
                engine.state.epoch = p.epoch + 1
                engine.fire_event(Events.EPOCH_COMPLETED)
                set_epoch_position(loop.trainer, p.epoch + 1, 0)
        elif state.stage is Stage.EPOCH_PENDING:
            engine.state.epoch = p.epoch + 1
            loop.on_epoch_completed(engine)


def _other_engines_limited(loop: TrainingLoop, original: Callable[..., State]) -> Callable[..., State]:
    """Under ``fast_dev_run=n``, Ignite's ``run`` with every other engine that runs inside it limited to n
    batches (:mod:`~ignite_speed.loop.debug_run` says why; the plan's ``debug_limited`` names who ran them)."""
    n = loop.plan.fast_dev_run
    if not n:
        return original
    from .debug_run import engines_limited_to

    def run(*args: Any, **kwargs: Any) -> State:
        with engines_limited_to(int(n), loop.trainer, loop.plan.debug_limited):
            return original(*args, **kwargs)

    return run


def _end_interrupted_epoch(loop: TrainingLoop, engine: Engine) -> None:
    """A resume under another layout (``allow_resume_changes``), from a checkpoint inside an epoch: the epoch
    ends at the checkpoint's batch, as if ``end_epoch()`` had been called after it (a decision pending on that
    batch is not made; the epoch-end decision is, with the app's ``EPOCH_COMPLETED`` handlers)."""
    p = loop.state.progress
    loop.state.end_epoch_early()
    loop.state.window_batches = 0  # (the open window's gradients are in no checkpoint: no optimizer step)
    engine.state.epoch = p.epoch + 1
    engine.fire_event(Events.EPOCH_COMPLETED)
    set_epoch_position(loop.trainer, p.epoch + 1, 0)


def _check_layout(
    loop: TrainingLoop,
    plan: RunPlan,
    data: Any,
    data_length: int | None,
    saved: RunLayout | None,
    source: str | None,
    allow: bool,
) -> list[tuple[str, Any, Any]]:
    """Record this run's layout; against the ``saved`` one (a continued run's), the changes, refused unless
    ``allow`` (``allow_resume_changes``)."""
    layout = RunLayout.of(
        world_size=plan.world_size,
        data=data,
        data_length=data_length,
        train_batches=plan.train_batches,
        accumulate=loop.accumulate,
        limit=plan.train_limit,
    )
    changes = [] if saved is None else saved.changes(layout)
    if changes and not allow:
        raise ValueError(layout_refusal(changes, source))
    loop.position.layout = layout
    return changes


def _signal_rank_failure(loop: TrainingLoop, exc: Exception) -> None:
    """This rank's training raised: tell the other ranks at their next stop sync (they would otherwise
    wait in it until the process group times out, 30 minutes by default). No cost while all goes well."""
    world_size = loop.plan.world_size
    if world_size <= 1 or isinstance(exc, RankFailureError) or _dist.is_collective_error(exc):
        return  # alone, told by another rank, or the process group itself failed: nobody to tell
    rank = _dist.get_rank()
    message = f"rank {rank} failed at iteration {loop.trainer.state.iteration}: {type(exc).__name__}: {exc}"
    try:
        loop.controller.signal_failure(message, f"rank {rank}", world_size, loop.rank_failure_timeout)
    except Exception as sync_exc:  # the original exception is what the user must see: only log this one
        logger.warning(
            "rank %d could not tell the other ranks that it failed (%s); they stop when the process group times out",
            rank,
            sync_exc,
        )


def _warn_layout_change(
    loop: TrainingLoop, changes: list[tuple[str, Any, Any]], mid_epoch: bool, saved_batches: int | None
) -> None:
    state = loop.state
    p = state.progress
    at = p.epoch if mid_epoch else p.epochs_done + (state.stage is Stage.EPOCH_PENDING)
    text = layout_warning(
        changes, at, p.batch_in_epoch if mid_epoch else 0, saved_batches, state.window_batches if mid_epoch else 0
    )
    warnings.warn(text, UserWarning, stacklevel=5)
