"""Setting up one ``trainer.run()`` of a :class:`~ignite_speed.loop.TrainingLoop`.

:class:`RunSetup` stands between the user's ``trainer.run(...)`` call and Ignite's own ``run``: it makes
the run's :class:`~ignite_speed.loop.plan.RunPlan` (the handlers fill in what they govern), refuses a run
that cannot continue, prepares the data, runs the sanity check, and after ``load_state_dict`` puts the
trainer where the saved run stood and, at its first event, makes the decision the saved run had pending.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

from ignite.engine import Engine, Events, State

from .._logging import logger
from ..config.limits import UNLIMITED
from ..data.batched_fetch import with_batched_fetch
from ..data.loaders import data_length, for_ignite, sequential_copy
from ..distributed import _dist
from .layout import RunLayout, layout_refusal, layout_warning
from .plan import RunLimits, RunPlan
from .resume import restore_rng, set_epoch_position
from .state import Stage
from .stop import RankFailureError, StopReason
from .trainer_events import keep_decisions_last
from .view import LoopView

__all__ = ["RunSetup"]


class RunSetup:
    """What happens between the user's ``trainer.run(...)`` call and Ignite's own ``run``."""

    def __init__(self, loop: LoopView) -> None:
        self.loop = loop
        self._loaded = False  # a state was loaded that no run() has used yet
        self._loaded_rng: dict[str, Any] | None = None  # ... with the generator states it was saved with
        self.source: str | None = None  # the file the loaded state came from, when known (autoresume)
        self.allow_resume_changes = self.extended_layout = False  # another layout (layout.py); 2nd: once, by extend
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
    def run(self, original: Callable[..., State], data: Any, max_epochs: int | None, epoch_length: int | None,
            **kwargs: Any) -> State:
        loop = self.loop
        loop.handlers.call("before_run")  # (autoresume loads a checkpoint here)
        t = loop.trainer
        # A brand-new engine, or one the user reset with ``trainer.state.max_epochs = None`` (Ignite's restart).
        new_run = t.state.max_epochs is None and getattr(t.state, "max_iters", None) is None
        plan = self.plan_for(max_epochs, kwargs.pop("max_iters", None), new_run)
        self._check_continuable(new_run)
        data = self._prepare_data(plan, data, epoch_length, new_run)
        loop.begin_run(plan)
        loop.handlers.call("on_run_start", plan)
        if new_run and plan.validation is not None:
            loop.timer.timed("sanity_check", plan.validation.sanity_check)
        lim = plan.run_limits
        if plan.train_batches == 0 or lim.max_epochs == 0 or lim.max_steps == 0:  # (a Limit is its int value)
            what = ("limit_train_batches gives 0 batches" if plan.train_batches == 0
                    else "max_epochs=0" if lim.max_epochs == 0 else "max_steps=0")
            loop.controller.finish(StopReason.NO_TRAINING, f"no training: {what}", "limits")
            return t.state
        pending = self._position_for_resume(new_run)
        run_kwargs = self._ignite_run_kwargs(plan, kwargs, new_run, pending)
        keep_decisions_last(loop)
        return self._run_ignite(original, data, run_kwargs, rehearse=new_run and bool(plan.fast_dev_run))

    def plan_for(self, max_epochs: int | None, max_iters: int | None, new_run: bool) -> RunPlan:
        """The plan of a run with these ``run()`` arguments, as the handlers set it."""
        loop = self.loop
        plan = RunPlan(new_run=new_run, max_epochs_arg=max_epochs, max_iters_arg=max_iters,
                       accumulate=loop.accumulate)
        loop.handlers.call("plan_run", plan)
        if plan.limits is None:
            # No LoopLimits: Ignite's own arguments govern (run(data) trains 1 epoch, or continues a resumed run).
            if max_epochs is None:
                state_max = loop.trainer.state.max_epochs
                max_epochs = UNLIMITED if max_iters is not None else (1 if new_run or state_max is None else int(state_max))
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
                f"checkpoint written with it")
        elif loop.controller.final is not None:
            final = loop.controller.final
            raise RuntimeError(
                f"this training run already finished ({final.reason.value}: {final.message}); ignite-speed does not "
                f"train on silently. To continue it, call speedups.extend(...) with the limit to raise (e.g. "
                f"speedups.extend(max_epochs=20)); to start a new run, set trainer.state.max_epochs = None")

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
            full_length is None or plan.train_batches < full_length)
        saved = self.loop.position.layout
        self._saved_batches = None if saved is None else saved.train_batches
        self.changes, self.extended_layout = _check_layout(self.loop, plan, plan.train_data, data_length(data), None if new_run
                                                           else saved, self.source, self.allow_resume_changes or self.extended_layout), False
        if self.changes:
            t.state.epoch_length = plan.train_batches  # (Ignite's own, for the rest of the run)
        elif not new_run and t.state.epoch_length is not None and plan.train_batches is not None \
                and t.state.epoch_length != plan.train_batches:
            raise ValueError(
                f"the resumed run trained {t.state.epoch_length} batches per epoch, but limit_train_batches now gives "
                f"{plan.train_batches}; resume with the same data and limit_train_batches")
        return data

    def _ignite_run_kwargs(self, plan: RunPlan, kwargs: dict[str, Any], new_run: bool, pending: bool) -> dict[str, Any]:
        t = self.loop.trainer
        run_kwargs: dict[str, Any] = dict(kwargs)
        run_kwargs["max_epochs"] = self._ignite_max_epochs(plan)
        if pending and t.state.epoch_length:
            # the interrupted run's pending decision comes first; Ignite must not see the run as done (it
            # would start over), the decision ends it if it is
            run_kwargs["max_epochs"] = max(run_kwargs["max_epochs"],
                                           t.state.iteration // t.state.epoch_length + 1, t.state.epoch + 1)
        if self.changes and t.state.epoch_length:
            # another epoch length: Ignite's iteration >= epoch_length * max_epochs must not end the run before
            # the loop's own limits do (the loop ends it at its max_epochs)
            run_kwargs["max_epochs"] += -(-t.state.iteration // t.state.epoch_length)
        if new_run or t.state.epoch_length is None:
            run_kwargs["epoch_length"] = plan.train_batches
        elif not pending and not self.changes and t.state.iteration >= t.state.epoch_length * run_kwargs["max_epochs"]:
            raise ValueError(f"nothing left to train: the run already reached max_epochs={run_kwargs['max_epochs']}; "
                             f"raise it with speedups.extend(max_epochs=...)")
        return run_kwargs

    def _run_ignite(self, original: Callable[..., State], data: Any, run_kwargs: dict[str, Any], *,
                    rehearse: bool) -> State:
        loop = self.loop
        rehearsal = None
        if rehearse:
            from .checkpoint_rehearsal import CheckpointRehearsal

            rehearsal = CheckpointRehearsal(loop.trainer)
        loop.timer.begin_call(loop)  # [run profile] checkpoint saves (and with profile=True the batches) timed
        try:
            state = original(data, **run_kwargs)
        except Exception as exc:
            if rehearsal is not None:
                rehearsal.finish(rehearse=False)
            _signal_rank_failure(loop, exc)
            raise
        finally:
            loop.timer.end_call(loop)
            loop.clock.pause()
            loop.handlers.call("on_run_exit")
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
        self._loaded = False
        source, self.source = self.source, None
        of = "" if source is None else f" ({source})"
        loop = self.loop
        t, state = loop.trainer, loop.state
        p = state.progress
        if new_run:
            raise ValueError(
                f"speedups state was loaded (total_batches={p.total_batches}), but the trainer has no state to "
                f"resume: load the trainer's checkpoint too, e.g. Checkpoint.load_objects(to_load={{'trainer': "
                f"trainer, 'speedups': speedups, ...}}, checkpoint=...)")
        if t.state.iteration != p.total_batches:
            raise ValueError(
                f"the trainer's state (iteration={t.state.iteration}) and the speedups state (total_batches="
                f"{p.total_batches}) are from different points of training{of}; save and load them together (one "
                f"Checkpoint with both)")
        completed = p.epochs_done + (1 if state.stage is Stage.EPOCH_PENDING else 0)
        max_epochs = loop.plan.run_limits.max_epochs
        if not max_epochs.unlimited and completed > max_epochs:
            raise ValueError(f"the checkpoint{of} has {completed} epochs done, but max_epochs={max_epochs}: resume with "
                             f"max_epochs >= {completed} (as saved), or start a new run"
                             + ("" if source is None else " (move that file out of its folder, or set autoresume=False)"))
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


def _end_interrupted_epoch(loop: LoopView, engine: Engine) -> None:
    """A resume under another layout (``allow_resume_changes``), from a checkpoint inside an epoch: the epoch
    ends at the checkpoint's batch, as if ``end_epoch()`` had been called after it (a decision pending on that
    batch is not made; the epoch-end decision is, with the app's ``EPOCH_COMPLETED`` handlers)."""
    p = loop.state.progress
    loop.state.end_epoch_early()
    loop.state.window_batches = 0  # (the open window's gradients are in no checkpoint: no optimizer step)
    engine.state.epoch = p.epoch + 1
    engine.fire_event(Events.EPOCH_COMPLETED)
    set_epoch_position(loop.trainer, p.epoch + 1, 0)


def _check_layout(loop: LoopView, plan: RunPlan, data: Any, data_length: int | None, saved: RunLayout | None,
                  source: str | None, allow: bool) -> list[tuple[str, Any, Any]]:
    """Record this run's layout; against the ``saved`` one (a continued run's), the changes, refused unless
    ``allow`` (``allow_resume_changes``)."""
    layout = RunLayout.of(world_size=plan.world_size, data=data, data_length=data_length,
                          train_batches=plan.train_batches, accumulate=loop.accumulate, limit=plan.train_limit)
    changes = [] if saved is None else saved.changes(layout)
    if changes and not allow:
        raise ValueError(layout_refusal(changes, source))
    loop.position.layout = layout
    return changes


def _signal_rank_failure(loop: LoopView, exc: Exception) -> None:
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
        logger.warning("rank %d could not tell the other ranks that it failed (%s); they stop when the process "
                       "group times out", rank, sync_exc)


def _warn_layout_change(loop: LoopView, changes: list[tuple[str, Any, Any]], mid_epoch: bool,
                        saved_batches: int | None) -> None:
    state = loop.state
    p = state.progress
    at = p.epoch if mid_epoch else p.epochs_done + (state.stage is Stage.EPOCH_PENDING)
    text = layout_warning(changes, at, p.batch_in_epoch if mid_epoch else 0, saved_batches,
                          state.window_batches if mid_epoch else 0)
    warnings.warn(text, UserWarning, stacklevel=5)
