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
``STARTED`` / ``COMPLETED`` (clock, a decision left pending by a checkpoint, the final reason). Setting up
a run (:mod:`ignite_speed.loop.run_setup`) happens in a wrapper of ``trainer.run``
(:mod:`ignite_speed.loop.trainer_events` says why it is needed).
"""

from __future__ import annotations

import datetime
import math
import warnings
from typing import Any

from ignite.engine import Engine, Events

from .._compat import engine_is_done
from .agreement import StopAgreement
from .clock import TrainingClock
from .epoch_end import TERMINATED, empty_one_shot_message, hard_limit_reached, ignite_max_epochs_ahead, one_shot
from .hooks import LoopHooks
from .plan import RunPlan
from .position import DataPosition, replay_open_window
from .progress import Progress
from .registry import HandlerRegistry
from .resume import torch_rng_state
from .run_setup import RunSetup
from .state import LoopState, Stage
from .state_io import load_loop_state, loop_state_dict
from .step_events import StepEvents
from .stop import StopController, StopReason, StopRequest
from .trainer_events import attach_loop, detach_loop
from .trainer_parts import TrainerParts

__all__ = ["TrainingLoop"]

_BATCH_PENDING, _IN_EPOCH = Stage.BATCH_PENDING, Stage.IN_EPOCH


class TrainingLoop:
    """The loop state and decisions of one trainer (get it with :meth:`of`; handlers make it).

    Attributes:
        controller: the trainer's :class:`~ignite_speed.loop.StopController`.
        state: the loop's own state (:class:`~ignite_speed.loop.state.LoopState`: counters, stage, window).
        clock: elapsed training time (validation included; the sanity check excluded).
        handlers: the registered handlers (:class:`~ignite_speed.loop.registry.HandlerRegistry`).
        plan: the current run's :class:`~ignite_speed.loop.plan.RunPlan`.
        accumulate: batches per optimizer step (``accumulate_grad_batches``).
        batched_fetch: read ``TensorDataset`` loaders a batch at a time (``attach_speedups``' flag; the
            handlers alone leave it off).
    """

    rank_failure_timeout: datetime.timedelta = datetime.timedelta(seconds=30)

    def __init__(self, trainer: Engine) -> None:
        self.trainer = trainer
        self.parts = TrainerParts.of(trainer)  # (the one attribute on the trainer)
        self._own_controller = self.parts.controller is None
        if self.parts.controller is None:
            StopController().bind(trainer)
        self.controller: StopController = self.parts.controller
        self.state = LoopState()
        self.clock = TrainingClock()
        self.position = DataPosition()
        self.handlers = HandlerRegistry()
        self.plan = RunPlan()
        self.accumulate: int = self.parts.accumulate
        self.batched_fetch = False
        self.agreement = StopAgreement()  # when the ranks agree on stop requests (see agreement.py)
        self.setup = RunSetup(self)
        self.fire_steps = False  # StepEvents.OPTIMIZER_STEP has handlers (set at each run start)
        self._resume: bool | None = None  # a loaded run resumes at the next STARTED (True: a decision pending)
        # the per-batch fast path: the epoch batch index of the next planned validation, whether a clock
        # schedules it, max_steps as a number (set at the start of a run and after each due batch)
        self._next_val: float = 0
        self._time_schedule = False
        self._max_steps: float = math.inf
        if StepEvents.OPTIMIZER_STEP not in trainer._allowed_events:
            trainer.register_events(*StepEvents, event_to_attr={StepEvents.OPTIMIZER_STEP: "optimizer_step"})
        attach_loop(self, self.setup.run)
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

    def owns_controller(self) -> bool:
        """Whether the loop made the trainer's stop controller (one bound before it stays when it detaches)."""
        return self._own_controller

    def register(self, handler: LoopHooks) -> None:
        """Register ``handler`` (one per name and trainer); the loop calls its hooks from now on."""
        self.handlers.add(handler)

    def unregister(self, handler: LoopHooks) -> None:
        self.handlers.remove(handler)

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
        event = self.trainer.last_event_name
        if event == Events.ITERATION_STARTED:
            self.state.count_fetched_batch()  # fetched, not trained: no optimizer step
            self.position.count()
        elif event != Events.ITERATION_COMPLETED:
            raise RuntimeError(f"end_epoch() must be called from an ITERATION_STARTED or ITERATION_COMPLETED "
                               f"handler of the trainer; it was called during {event}")
        self.state.epoch_ended_early = True
        self.trainer.terminate_epoch()

    def estimated_stepping_batches(self, train_data: Any) -> int | float:
        """Optimizer steps a ``trainer.run(train_data)`` will take under the attached limits, with
        Lightning's ``Trainer.estimated_stepping_batches`` rule (``limit_train_batches``,
        ``accumulate_grad_batches``, ``max_steps``, ``max_epochs``; ``math.inf`` when nothing bounds the run):
        the ``total_steps`` of a ``OneCycleLR`` schedule, say."""
        return self.setup.estimated_stepping_batches(train_data)

    def detach(self) -> None:
        """Take the loop and its handlers off the trainer (see :func:`~ignite_speed.loop.trainer_events.detach_loop`)."""
        detach_loop(self)

    # ------------------------------------------------------------------ a run (called by RunSetup)
    def begin_run(self, plan: RunPlan) -> None:
        """The resolved plan of the run that starts (before any training event)."""
        self.plan = plan

    def begin_resume(self, replaying: bool | None) -> None:
        """A loaded run resumes at the next ``STARTED`` (``replaying``: with the decision it had pending;
        ``None``: it does not resume after all)."""
        self._resume = replaying

    def reset_run(self) -> None:
        """A new run from scratch: counters, stop record, clock and the handlers' run state are reset."""
        self.state = LoopState()
        self.position.reset()
        self.controller.reset_run()
        self.clock.reset()
        self.handlers.call("on_new_run")

    # ------------------------------------------------------------------ per-run handlers
    def on_started(self, engine: Engine) -> None:
        self.clock.start()
        self.position.start_run()
        self.agreement.start_run(self.state.progress.total_batches)
        self._next_val = 0
        schedule = self.plan.validation
        self._time_schedule = self.plan.world_size <= 1 and schedule is not None and schedule.time_based
        max_steps = self.plan.run_limits.max_steps
        self._max_steps = max_steps if max_steps != -1 else math.inf
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
        """The last EPOCH_STARTED handler: the epoch's data iterator; after a resume inside an accumulation
        window, the window's batches replayed (their gradients are in no checkpoint)."""
        resumed_mid_epoch = self.position.resume_mid_epoch
        self.position.on_epoch_data(engine)
        replay = self.position.take_replay()
        window = self.parts.accumulation
        if resumed_mid_epoch and window is not None:
            # the step's own window counter follows the loop's position (Ignite's iteration % epoch_length is
            # wrong once an epoch ended early)
            window.resume(self.state.progress.batch_in_epoch - replay)
        if replay:
            replay_open_window(engine, self.position, replay, window, self.state.window_rng, self.accumulate)
        elif not resumed_mid_epoch and self.accumulate > 1:
            self.state.window_rng = torch_rng_state()  # the epoch's first window starts here

    def is_last_batch(self) -> bool:
        n = self.plan.train_batches
        return n is not None and self.state.progress.batch_in_epoch >= n

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
        train_batches = self.plan.train_batches
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
            # forward passes draw from, for a resume inside it (replay_window)
            state.window_rng = torch_rng_state()
        for check in self.handlers.hooks["on_batch_end"]:
            check(engine)
        if p.batch_in_epoch < self._next_val and p.total_batches < self.agreement.next_at \
                and not controller.has_local_request and controller.pending is None and not self._time_schedule \
                and p.global_step < self._max_steps:
            return  # the common batch: nothing planned, nothing requested
        self._decide_due_batch(engine, replay)

    def _decide_due_batch(self, engine: Engine, replay: bool) -> None:
        p, controller, schedule = self.state.progress, self.controller, self.plan.validation
        time_due = False
        if p.total_batches >= self.agreement.next_at:
            self.handlers.call("on_agreement", engine)
            time_due = self.agreement.agree(controller, p.total_batches, self.plan.world_size, self._time_due_here)
        elif controller.has_local_request and self.plan.world_size <= 1:
            controller.sync(1)
        if self._time_schedule:
            time_due = self._time_due_here()
        stopping = controller.pending is not None and controller.should_stop(p.epochs_done, p.global_step)
        if schedule is not None and schedule.due_after_batch(p, self.is_last_batch(), stopping, time_due):
            self.validate_now()
            if engine.should_terminate:  # e.g. Ignite's EarlyStopping on the evaluator
                self._terminated_by_others(engine)
                return
            stopping = controller.should_stop(p.epochs_done, p.global_step)
        if schedule is not None and p.batch_in_epoch >= self._next_val:
            self._next_val = schedule.next_due(p, self.plan.train_batches)
        max_steps = self.plan.run_limits.max_steps
        if max_steps != -1 and p.global_step >= max_steps:
            self._end_training(StopRequest(StopReason.MAX_STEPS, f"max_steps={max_steps} reached", "max_steps"),
                               replay)
        elif stopping:
            assert controller.pending is not None
            self._end_training(controller.pending, replay)

    def _time_due_here(self) -> bool:
        # whether this rank's clock says a time-based validation is due (rank 0's decides in distributed runs)
        schedule = self.plan.validation
        return schedule is not None and schedule.time_based and self.plan.is_rank_zero and \
            schedule.time_due(self.clock.elapsed())

    def _terminated_by_others(self, engine: Engine) -> None:
        """Another handler (Ignite's ``EarlyStopping`` or ``TerminateOnNan``, user code) called
        ``trainer.terminate()`` during this batch: end the run as a stop request would, with the partial
        epoch ending and counting (so that ``Speedups.extend`` continues it exactly), whatever the minimums."""
        engine.should_terminate = False
        self._end_training(TERMINATED)

    def _end_training(self, request: StopRequest, replay: bool = False) -> None:
        self.state.end_after_epoch = request
        if not replay and not self.is_last_batch():
            self.trainer.terminate_epoch()

    def validate_now(self) -> None:
        schedule = self.plan.validation
        assert schedule is not None
        schedule.validate()
        self.state.progress.val_runs += 1
        self.handlers.call("on_validation_end", schedule.last_metrics or {})

    # ------------------------------------------------------------------ epoch end
    def on_epoch_completed(self, engine: Engine) -> None:
        """The decision at an epoch's end (the last EPOCH_COMPLETED handler): count the epoch, let the
        handlers report, and end the run or go on."""
        self._epoch_end_decision(engine)
        self.state.stage = Stage.BETWEEN

    def _epoch_end_decision(self, engine: Engine) -> None:
        state, plan = self.state, self.plan
        p = state.progress
        if engine.should_terminate and state.end_after_epoch is None:
            # terminate() called by another EPOCH_COMPLETED handler (an evaluator run with Ignite's EarlyStopping)
            state.end_after_epoch = TERMINATED
        ended_early = state.epoch_ended_early or state.end_after_epoch is not None
        empty = p.batch_in_epoch == 0 and not ended_early
        if plan.train_batches is None and not ended_early and not empty:
            # loader of unknown length, now exhausted: the pending optimizer step and the validation at exhaustion
            if p.batch_in_epoch % self.accumulate != 0:
                p.global_step += 1
            if plan.validation is not None and plan.validation.due_at_exhaustion(p):
                self.validate_now()
        if empty and one_shot(engine.state.dataloader):
            # a one-shot generator/iterator is exhausted after one pass: end the run, do not count empty epochs
            message = empty_one_shot_message(p.epoch)
            warnings.warn(message, UserWarning, stacklevel=2)
            self.finish(StopRequest(StopReason.DATA_EXHAUSTED, message, "data"), terminate=True)
            return
        # (an empty epoch of a re-iterable counts, as in Lightning: the next one may have batches)
        remeasure = empty and engine.state.epoch_length == 0
        if remeasure:
            # the run's first epoch of an unsized re-iterable gave no batch: Ignite took 0 as the epoch length,
            # which ends its run; let it measure the next epoch again (on a fresh iterator, below)
            engine.state.epoch_length = None
        p.epochs_done += 1
        syncs = self.controller.syncs
        # the handlers report (deferred checks, the time budget, early stopping's epoch-end check); one sync
        # makes this boundary a decision point for every stop source (early stopping's check syncs itself)
        self.handlers.call("on_agreement", engine)
        self.handlers.call("on_epoch_end", engine)
        if self.controller.syncs == syncs:
            self.sync()
        request = state.end_after_epoch or hard_limit_reached(p, plan.run_limits)
        if request is None and self.controller.should_stop(p.epochs_done, p.global_step):
            request = self.controller.pending
        if request is not None:
            self.finish(request, terminate=True)
            return
        if plan.run_limits.max_epochs == -1 and engine.state.max_epochs is not None:
            wanted = ignite_max_epochs_ahead(engine.state.epoch, engine.state.max_epochs, p.epochs_done,
                                             self.clock.elapsed(), plan.time_budget_seconds)
            if wanted is not None:
                engine.state.max_epochs = wanted
        if remeasure or (plan.fresh_iterator_each_epoch and not state.epoch_ended_early):
            # Lightning's limit_train_batches: every epoch takes the first N batches of a fresh iterator
            # (Ignite's epoch_length alone would continue the old one).
            self.position.new_iterator(engine)

    def finish(self, request: StopRequest, *, terminate: bool) -> None:
        """Record why the run ends (and end it, with ``terminate``)."""
        self.position.end_run()
        self.controller.finish(request.reason, request.message, request.source)
        if terminate and not engine_is_done(self.trainer):
            self.trainer.terminate()

    def on_completed(self, engine: Engine) -> None:
        self.clock.pause()
        if self.controller.final is None:
            p, lim = self.state.progress, self.plan.run_limits
            if engine.should_terminate:
                self.controller.finish(TERMINATED.reason, TERMINATED.message, TERMINATED.source)
            elif lim.max_epochs != -1 and p.epochs_done >= lim.max_epochs:
                self.controller.finish(StopReason.MAX_EPOCHS, f"max_epochs={lim.max_epochs} reached", "max_epochs")
            else:
                self.controller.finish(StopReason.DATA_EXHAUSTED, "the training data ran out before the limits "
                                       "were reached", "data")
        self.handlers.call("on_train_end", engine)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The loop's checkpoint as plain data (``torch.load(weights_only=True)`` reads it back):
        ``{"version": ..., "loop": <the loop's own state>, "<handler name>": <its state_dict()>, ...}``
        (see :mod:`ignite_speed.loop.state_io`)."""
        return loop_state_dict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (also a state saved by ignite-speed 0.1.0); the next
        ``trainer.run()`` continues where the saved run stood."""
        self.setup.loaded(load_loop_state(self, state))

    def load_own_state(self, state: LoopState, controller: dict[str, Any], clock: dict[str, Any],
                       position: dict[str, Any], local_requests: list[dict[str, str]]) -> None:
        """Restore the loop's own parts (:func:`~ignite_speed.loop.state_io.load_loop_state` parses them)."""
        self.state = state
        self.controller.load_state_dict(controller)
        self.clock.load_state_dict(clock)
        self.position.load_state_dict(position)
        for request in local_requests:
            self.controller.request(request["reason"], request["message"], request["source"])
