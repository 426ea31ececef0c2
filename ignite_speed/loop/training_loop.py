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
from typing import Any

from ignite.engine import Engine, Events

from .._compat import event_handlers, has_event
from .agreement import StopAgreement
from .clock import TrainingClock
from .decisions import LoopDecisions
from .plan import RunPlan
from .position import DataPosition, replay_open_window
from .progress import Progress
from .registry import HandlerRegistry
from .resume import torch_rng_state
from .run_setup import RunSetup
from .run_timer import RunTimer
from .state import LoopState, Stage
from .state_io import load_loop_state, loop_state_dict
from .step_events import StepEvents
from .stop import StopController, StopReason
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
        timer: where the time of ``trainer.run`` goes (:class:`~ignite_speed.loop.run_timer.RunTimer`).
        handlers: the registered handlers (:class:`~ignite_speed.loop.registry.HandlerRegistry`).
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
        self.agreement = StopAgreement()  # when the ranks agree on stop requests (see agreement.py)
        self.setup = RunSetup(self)
        self._resume: bool | None = None  # a loaded run resumes at the next STARTED (True: a decision pending)
        # the per-batch fast path: the epoch batch index of the next planned validation, whether a clock
        # schedules it, max_steps as a number (set at the start of a run and after each due batch)
        self._next_val: float = 0
        self.time_schedule = False  # validation on a clock, in a single process: asked after every batch
        self._max_steps: float = math.inf
        self._train_batches: int | None = None  # the plan's, read per batch
        self._batch_checks = self.handlers.hooks["on_batch_end"]  # (updated in place as handlers register)
        self.decisions = LoopDecisions(self)
        if not has_event(trainer, StepEvents.OPTIMIZER_STEP):
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
        """End the current epoch now (from an ``ITERATION_STARTED`` or ``ITERATION_COMPLETED`` handler)."""
        self.decisions.end_epoch_now()

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

    # ------------------------------------------------------------------ per-run handlers
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
        """The last EPOCH_STARTED handler: the epoch's data iterator; after a resume inside an accumulation
        window, the window's batches replayed (their gradients are in no checkpoint)."""
        resumed_mid_epoch = self.position.resume_mid_epoch
        restarted = self.position.on_epoch_data(engine)  # (True: a resume under another layout's fresh epoch)
        replay = self.position.take_replay()
        window = self.parts.accumulation
        if (resumed_mid_epoch or restarted) and window is not None:
            # the step's own window counter follows the loop's position (Ignite's iteration % epoch_length is
            # wrong once an epoch ended early)
            window.resume(self.state.progress.batch_in_epoch - replay)
        if replay:
            replay_open_window(engine, self.position, replay, window, self.state.window_rng, self.accumulate,
                               self.parts.model)
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
            self.decisions.terminated_by_others(engine)
            return
        p, controller = state.progress, self.controller
        if self.accumulate > 1 and state.window_batches == 0:
            # a window of accumulated gradients starts with the next batch: the generator state that its
            # forward passes draw from, for a resume inside it (replay_window)
            state.window_rng = torch_rng_state()
        for check in self._batch_checks:
            check(engine)
        if p.batch_in_epoch < self._next_val and p.total_batches < self.agreement.next_at \
                and not controller.unsynced and controller.pending is None and not self.time_schedule \
                and p.global_step < self._max_steps:
            return  # the common batch: nothing planned, nothing requested
        self._next_val = self.decisions.due_batch(engine, replay, self._next_val)

    def on_epoch_completed(self, engine: Engine) -> None:
        """The last EPOCH_COMPLETED handler: the epoch-end decision (:class:`~.decisions.LoopDecisions`)."""
        self.decisions.epoch_end(engine)
        self.state.stage = Stage.BETWEEN

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
        self.clock.pause()
        self.decisions.completed(engine)

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
