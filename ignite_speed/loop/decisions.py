"""The loop's decisions where something is due: after a batch at which a validation, an agreement, a stop
or ``max_steps`` can happen, at an epoch's end, and when the run ends. The common batch never gets here
(:meth:`~ignite_speed.loop.TrainingLoop.on_iteration_decide` returns after a few comparisons)."""

from __future__ import annotations

import warnings

from ignite.engine import Engine, Events

from .._compat import engine_is_done
from .epoch_end import TERMINATED, empty_one_shot_message, hard_limit_reached, ignite_max_epochs_ahead, one_shot
from .resume import torch_rng_state
from .stop import StopReason, StopRequest
from .view import LoopView

__all__ = ["LoopDecisions"]


class LoopDecisions:
    """The decisions of one loop (it holds one; they change the loop's state through its methods)."""

    def __init__(self, loop: LoopView) -> None:
        self.loop = loop

    # ------------------------------------------------------------------ after a due batch
    def due_batch(self, engine: Engine, replay: bool, next_val: float) -> float:
        """Decide after a batch at which something can be due; returns the epoch batch index of the next
        planned validation (``next_val`` unchanged when this batch did not reach it)."""
        loop = self.loop
        p, controller, schedule, agreement = loop.state.progress, loop.controller, loop.plan.validation, loop.agreement
        time_due = False
        if p.total_batches >= agreement.next_at:
            loop.handlers.call("on_agreement", engine)
            time_due = agreement.agree(controller, p.total_batches, loop.plan.world_size, self.time_due_here)
        elif controller.has_local_request and loop.plan.world_size <= 1:
            controller.sync(1)
        if loop.time_schedule:
            time_due = self.time_due_here()
        stopping = controller.pending is not None and controller.should_stop(p.epochs_done, p.global_step)
        preempted = stopping and controller.pending is not None and controller.pending.reason is StopReason.PREEMPTED
        if preempted and not replay and not loop.is_last_batch():
            assert controller.pending is not None
            self.stop_now(controller.pending)
            loop.state.leave_decision_pending()  # (the resumed run decides for this batch)
            return next_val
        # (a preempted run does not validate at its stop: the resumed run validates where it is due)
        if schedule is not None and schedule.due_after_batch(p, loop.is_last_batch(), stopping and not preempted,
                                                             time_due):
            self.validate_now()
            if engine.should_terminate:  # e.g. Ignite's EarlyStopping on the evaluator
                self.terminated_by_others(engine)
                return next_val
            if controller.has_local_request and loop.plan.world_size <= 1:
                controller.sync(1)  # a signal during the validation run: act on it at this batch, not the next
            stopping = controller.should_stop(p.epochs_done, p.global_step)
            pending = controller.pending
            preempted = stopping and pending is not None and pending.reason is StopReason.PREEMPTED
        if schedule is not None and p.batch_in_epoch >= next_val:
            next_val = schedule.next_due(p, loop.plan.train_batches)
        max_steps = loop.plan.run_limits.max_steps
        if max_steps.reached(p.global_step):
            self.end_training(StopRequest(StopReason.MAX_STEPS, f"max_steps={max_steps} reached", "max_steps"),
                              replay)
        elif preempted and not replay and not loop.is_last_batch():  # (a signal during this batch's validation)
            assert controller.pending is not None
            self.stop_now(controller.pending)
        elif stopping:
            assert controller.pending is not None
            self.end_training(controller.pending, replay)
        return next_val

    def end_epoch_now(self) -> None:
        """The user's ``end_epoch()``: the epoch's remaining batches and its pending validation are skipped."""
        loop = self.loop
        event = loop.trainer.last_event_name
        if event == Events.ITERATION_STARTED:
            loop.state.count_fetched_batch()  # fetched, not trained: no optimizer step
            loop.position.count()
        elif event != Events.ITERATION_COMPLETED:
            raise RuntimeError(f"end_epoch() must be called from an ITERATION_STARTED or ITERATION_COMPLETED "
                               f"handler of the trainer; it was called during {event}")
        loop.state.end_epoch_early()
        loop.trainer.terminate_epoch()

    def time_due_here(self) -> bool:
        """Whether this rank's clock says a time-based validation is due (rank 0's decides when distributed)."""
        loop = self.loop
        schedule = loop.plan.validation
        return schedule is not None and schedule.time_based and loop.plan.is_rank_zero and \
            schedule.time_due(loop.clock.elapsed())

    def terminated_by_others(self, engine: Engine) -> None:
        """Another handler (Ignite's ``EarlyStopping`` or ``TerminateOnNan``, user code) called
        ``trainer.terminate()`` during this batch: end the run as a stop request would, with the partial
        epoch ending and counting (so that ``Speedups.extend`` continues it exactly), whatever the minimums."""
        engine.should_terminate = False
        self.end_training(TERMINATED)

    def stop_now(self, request: StopRequest) -> None:
        """End the run after this batch, inside its epoch (a preemption): the epoch neither ends nor counts, so
        that a checkpoint written now resumes at the next batch of the same epoch, exactly. The data position
        is kept for that checkpoint (:meth:`completed` lets it go)."""
        self.loop.controller.finish(request.reason, request.message, request.source)
        self.loop.trainer.terminate()

    def end_training(self, request: StopRequest, replay: bool = False) -> None:
        loop = self.loop
        loop.state.end_after(request)
        if not replay and not loop.is_last_batch():
            loop.trainer.terminate_epoch()

    def validate_now(self) -> None:
        loop = self.loop
        schedule = loop.plan.validation
        assert schedule is not None
        loop.timer.timed("validation", schedule.validate)
        loop.state.note_window_draws(torch_rng_state)
        loop.state.progress.val_runs += 1
        loop.handlers.call("on_validation_end", schedule.last_metrics or {})

    # ------------------------------------------------------------------ epoch end
    def epoch_end(self, engine: Engine) -> None:
        """The decision at an epoch's end: count the epoch, let the handlers report, and end the run or go on."""
        loop = self.loop
        state, plan = loop.state, loop.plan
        p = state.progress
        if engine.should_terminate and state.end_after_epoch is None:
            # terminate() called by another EPOCH_COMPLETED handler (an evaluator run with Ignite's EarlyStopping)
            state.end_after(TERMINATED)
        ended_early = state.epoch_ended_early or state.end_after_epoch is not None
        empty = p.batch_in_epoch == 0 and not ended_early
        if plan.train_batches is None and not ended_early and not empty:
            # loader of unknown length, now exhausted: the pending optimizer step and the validation at exhaustion
            if p.batch_in_epoch % loop.accumulate != 0:
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
        self._handlers_report(engine)
        request = state.end_after_epoch or hard_limit_reached(p, plan.run_limits)
        if request is None and loop.controller.should_stop(p.epochs_done, p.global_step):
            request = loop.controller.pending
        if request is not None:
            self.finish(request, terminate=True)
            return
        if plan.run_limits.max_epochs.unlimited and engine.state.max_epochs is not None:
            wanted = ignite_max_epochs_ahead(engine.state.epoch, engine.state.max_epochs, p.epochs_done,
                                             loop.clock.elapsed(), plan.time_budget_seconds)
            if wanted is not None:
                engine.state.max_epochs = wanted
        if remeasure or (plan.fresh_iterator_each_epoch and not state.epoch_ended_early):
            # Lightning's limit_train_batches: every epoch takes the first N batches of a fresh iterator
            # (Ignite's epoch_length alone would continue the old one).
            loop.position.new_iterator(engine)

    def _handlers_report(self, engine: Engine) -> None:
        # the handlers report (deferred checks, the time budget, early stopping's epoch-end check); one sync
        # makes this boundary a decision point for every stop source (early stopping's check syncs itself)
        loop = self.loop
        syncs = loop.controller.syncs
        loop.handlers.call("on_agreement", engine)
        loop.handlers.call("on_epoch_end", engine)
        if loop.controller.syncs == syncs:
            loop.sync()

    # ------------------------------------------------------------------ the run's end
    def finish(self, request: StopRequest, *, terminate: bool) -> None:
        """Record why the run ends (and end it, with ``terminate``)."""
        loop = self.loop
        loop.position.end_run()
        loop.controller.finish(request.reason, request.message, request.source)
        if terminate and not engine_is_done(loop.trainer):
            loop.trainer.terminate()

    def completed(self, engine: Engine) -> None:
        """Ignite's ``COMPLETED``: record the reason when no decision did (Ignite's own limits, the data)."""
        loop = self.loop
        controller = loop.controller
        if controller.final is None:
            p, lim = loop.state.progress, loop.plan.run_limits
            if engine.should_terminate:
                controller.finish(TERMINATED.reason, TERMINATED.message, TERMINATED.source)
            elif lim.max_epochs.reached(p.epochs_done):
                controller.finish(StopReason.MAX_EPOCHS, f"max_epochs={lim.max_epochs} reached", "max_epochs")
            else:
                controller.finish(StopReason.DATA_EXHAUSTED, "the training data ran out before the limits "
                                  "were reached", "data")
        loop.handlers.call("on_train_end", engine)
        if controller.stop_reason is StopReason.PREEMPTED:
            loop.position.end_run()  # (stop_now kept it for the handlers' last save)
