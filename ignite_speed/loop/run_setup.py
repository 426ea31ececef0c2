"""Setting up one ``trainer.run()`` of a :class:`~ignite_speed.loop.TrainingLoop`, and its saved state.

:class:`RunSetup` resolves the run's limits from the attached handlers (and the arguments passed to
``run``), the training batches per epoch, the validation plan, the sanity check, and, after
``load_state_dict``, where the saved run stood. ``loop_state_dict`` / ``load_loop_state`` turn the
whole loop (counters, stop controller, clock, data position, the concerns' state) into plain data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ignite.engine import Engine, State

from .._logging import logger
from ..config.durations import BatchLimit
from ..data.batched_fetch import with_batched_fetch
from ..data.loaders import data_length, for_ignite, sequential_copy
from ..distributed import _dist
from .position import Stage
from .progress import Progress
from .resume import capture_rng, restore_rng
from .stop import RankFailureError, StopController, StopReason, StopRequest
from .trainer_events import keep_decisions_last

if TYPE_CHECKING:  # pragma: no cover
    from .training_loop import TrainingLoop

__all__ = ["RunLimits", "RunSetup", "loop_state_dict", "load_loop_state"]

STATE_VERSION = 2
_PENDING = (Stage.BATCH_PENDING, Stage.EPOCH_PENDING)  # stages whose decision a resumed run replays
_READABLE_VERSIONS = (1, 2)


@dataclass(frozen=True)
class RunLimits:
    """The hard limits of one ``trainer.run()`` (-1: none)."""

    max_epochs: int = -1
    max_steps: int = -1
    max_epochs_defaulted: bool = False  # 1000 was chosen because nothing else bounds the run


class RunSetup:
    """What happens between the user's ``trainer.run(...)`` call and Ignite's own ``run``."""

    def __init__(self, loop: TrainingLoop) -> None:
        self.loop = loop
        self.loaded: dict[str, Any] | None = None  # a loaded state that no run() has used yet

    def run(self, original: Callable[..., State], data: Any, max_epochs: int | None, epoch_length: int | None,
            **kwargs: Any) -> State:
        loop = self.loop
        t = loop.trainer
        # A brand-new engine, or one the user reset with ``trainer.state.max_epochs = None`` (Ignite's restart).
        new_run = t.state.max_epochs is None and getattr(t.state, "max_iters", None) is None
        lim = self._limits_for_run(max_epochs, kwargs, new_run)
        if new_run:
            if loop.progress.total_batches or loop.controller.final is not None:
                self._reset_for_new_run()
        elif self.loaded is None and loop.progress.total_batches != t.state.iteration:
            # Ignite's state came from a checkpoint (Checkpoint.load_objects), the loop's did not: its counters,
            # stop record and data position would be those of another point of training
            raise RuntimeError(
                f"the trainer was restored to iteration {t.state.iteration} (epoch {t.state.epoch}), but ignite-speed's "
                f"state was not (it stands at iteration {loop.progress.total_batches}): add the Speedups object (or any "
                f"attached ignite-speed handler) to Checkpoint(to_save={{'trainer': trainer, 'speedups': speedups, ...}}) "
                f"and to Checkpoint.load_objects(to_load=...), then resume from a checkpoint written with it")
        elif loop.controller.final is not None:
            final = loop.controller.final
            raise RuntimeError(
                f"this training run already finished ({final.reason.value}: {final.message}); ignite-speed does not "
                f"train on silently. To continue it, call speedups.extend(...) with the limit to raise (e.g. "
                f"speedups.extend(max_epochs=20)); to start a new run, set trainer.state.max_epochs = None")
        loop.run_limits = lim
        loop.world_size = _dist.get_world_size()
        loop.is_rank_zero = _dist.get_rank() == 0

        data = for_ignite(data)
        full_length = epoch_length if epoch_length is not None else data_length(data)
        batch_limit = loop.get("train_batches")
        train_limit = self._train_limit()
        if batch_limit is not None and batch_limit.overfit:
            data = sequential_copy(data, "train")
        if loop.batched_fetch:
            data = with_batched_fetch(data)
        loop.train_batches = train_limit.resolve(full_length, "limit_train_batches")
        loop.fresh_iterator_each_epoch = loop.train_batches is not None and (
            full_length is None or loop.train_batches < full_length)
        if not new_run and t.state.epoch_length is not None and loop.train_batches is not None \
                and t.state.epoch_length != loop.train_batches:
            raise ValueError(
                f"the resumed run trained {t.state.epoch_length} batches per epoch, but limit_train_batches now gives "
                f"{loop.train_batches}; resume with the same data and limit_train_batches")

        schedule, es = loop.get("validation"), loop.get("early_stopping")
        if schedule is not None:
            schedule.prepare_run(loop.train_batches, train_limit)
        if es is not None:
            es.prepare_run(t, schedule)
        limits = loop.get("limits")
        if limits is not None and new_run:
            limits.warn_if_defaulted(lim)
        if new_run and schedule is not None:
            schedule.sanity_check()

        if loop.train_batches == 0 or lim.max_epochs == 0 or lim.max_steps == 0:
            what = ("limit_train_batches gives 0 batches" if loop.train_batches == 0
                    else "max_epochs=0" if lim.max_epochs == 0 else "max_steps=0")
            loop.controller.finish(StopReason.NO_TRAINING, f"no training: {what}", "limits")
            return t.state

        pending = self._position_for_resume(new_run)
        run_kwargs: dict[str, Any] = dict(kwargs)
        run_kwargs["max_epochs"] = self._ignite_max_epochs(lim)
        if pending and t.state.epoch_length:
            # the interrupted run's pending decision comes first; Ignite must not see the run as done (it
            # would start over), the decision ends it if it is
            run_kwargs["max_epochs"] = max(run_kwargs["max_epochs"],
                                           t.state.iteration // t.state.epoch_length + 1, t.state.epoch + 1)
        if new_run or t.state.epoch_length is None:
            run_kwargs["epoch_length"] = loop.train_batches
        elif not pending and t.state.iteration >= t.state.epoch_length * run_kwargs["max_epochs"]:
            raise ValueError(f"nothing left to train: the run already reached max_epochs={run_kwargs['max_epochs']}; "
                             f"raise it with speedups.extend(max_epochs=...)")
        keep_decisions_last(loop)
        rehearsal = None
        if new_run and limits is not None and limits.fast_dev_run:
            from .checkpoint_rehearsal import CheckpointRehearsal

            rehearsal = CheckpointRehearsal(t)
        try:
            state = original(data, **run_kwargs)
        except Exception as exc:
            if rehearsal is not None:
                rehearsal.finish(rehearse=False)
            self._signal_rank_failure(exc)
            raise
        finally:
            loop.clock.pause()
        if rehearsal is not None:
            rehearsal.finish()
            self.loaded, loop.replay = None, None  # the loop's own state was loaded back and restored too
        return state

    def _limits_for_run(self, max_epochs: int | None, kwargs: dict[str, Any], new_run: bool) -> RunLimits:
        loop = self.loop
        max_iters = kwargs.pop("max_iters", None)
        limits = loop.get("limits")
        if limits is not None:
            return limits.for_run(max_epochs, max_iters, has_time_budget=loop.get("time_budget") is not None,
                                  accumulate=loop.accumulate)
        # No LoopLimits: Ignite's own arguments govern (run(data) trains 1 epoch, or continues a resumed run).
        if max_epochs is None:
            state_max = loop.trainer.state.max_epochs
            max_epochs = -1 if max_iters is not None else (1 if new_run or state_max is None else int(state_max))
        return RunLimits(max_epochs=max_epochs, max_steps=-1 if max_iters is None else int(max_iters))

    def estimated_stepping_batches(self, data: Any) -> int | float:
        """Lightning's ``Trainer.estimated_stepping_batches`` for a run on ``data``: optimizer steps of the
        whole run under the attached limits (``math.inf`` when nothing bounds it)."""
        loop = self.loop
        lim = self._limits_for_run(None, {}, new_run=True)  # (plain Ignite's run(data): one epoch)
        if lim.max_epochs == -1:
            return math.inf if lim.max_steps == -1 else lim.max_steps
        batches = self._train_limit().resolve(data_length(for_ignite(data)), "limit_train_batches")
        if batches is None:  # unsized: Lightning returns max_steps (-1 without one, which no schedule takes)
            return math.inf if lim.max_steps == -1 else lim.max_steps
        steps = math.ceil(batches / loop.accumulate) * max(lim.max_epochs, 1)
        return min(steps, lim.max_steps) if lim.max_steps != -1 else steps

    def _train_limit(self) -> BatchLimit:
        batch_limit = self.loop.get("train_batches")
        return batch_limit.limit if batch_limit is not None else BatchLimit.all()

    def _ignite_max_epochs(self, lim: RunLimits) -> int:
        loop = self.loop
        if lim.max_epochs != -1:
            return int(lim.max_epochs)
        if lim.max_steps != -1 and loop.train_batches:
            steps_per_epoch = math.ceil(loop.train_batches / loop.accumulate)
            return max(loop.trainer.state.epoch, math.ceil(lim.max_steps / steps_per_epoch))
        # No limit on epochs: Ignite gets one more than it has done, raised at each epoch end (its state and a
        # ProgressBar then show a sensible number, not 2**31 - 1).
        return int(loop.trainer.state.epoch) + 1

    def _reset_for_new_run(self) -> None:
        loop = self.loop
        loop.stage = Stage.BETWEEN
        loop.position.reset()
        loop.progress = Progress()
        loop.controller.reset_run()
        loop.clock.reset()
        schedule, es = loop.get("validation"), loop.get("early_stopping")
        if schedule is not None:
            schedule.reset()
        if es is not None:
            es.reset()

    def _signal_rank_failure(self, exc: Exception) -> None:
        """This rank's training raised: tell the other ranks at their next stop sync (they would otherwise
        wait in it until the process group times out, 30 minutes by default). No cost while all goes well."""
        loop = self.loop
        if loop.world_size <= 1 or isinstance(exc, RankFailureError) or _dist.is_collective_error(exc):
            return  # alone, told by another rank, or the process group itself failed: nobody to tell
        rank = _dist.get_rank()
        message = f"rank {rank} failed at iteration {loop.trainer.state.iteration}: {type(exc).__name__}: {exc}"
        try:
            loop.controller.signal_failure(message, f"rank {rank}", loop.world_size, loop.rank_failure_timeout)
        except Exception as sync_exc:  # the original exception is what the user must see: only log this one
            logger.warning("rank %d could not tell the other ranks that it failed (%s); they stop when the process "
                           "group times out", rank, sync_exc)

    # ------------------------------------------------------------------ resume
    def _position_for_resume(self, new_run: bool) -> bool:
        """After ``load_state_dict``: put the trainer where the saved run stood (Ignite's own
        ``epoch = iteration // epoch_length`` is wrong once an epoch ended early, and it restarts an
        interrupted epoch from batch 0). Returns whether a decision of the saved run is pending."""
        loaded, self.loaded = self.loaded, None
        if loaded is None:
            return False
        loop = self.loop
        t, p = loop.trainer, loop.progress
        if new_run:
            raise ValueError(
                f"speedups state was loaded (total_batches={p.total_batches}), but the trainer has no state to "
                f"resume: load the trainer's checkpoint too, e.g. Checkpoint.load_objects(to_load={{'trainer': "
                f"trainer, 'speedups': speedups, ...}}, checkpoint=...)")
        if t.state.iteration != p.total_batches:
            raise ValueError(
                f"the trainer's state (iteration={t.state.iteration}) and the speedups state (total_batches="
                f"{p.total_batches}) are from different points of training; save and load them together (one "
                f"Checkpoint with both)")
        completed = p.epochs_done + (1 if loop.stage is Stage.EPOCH_PENDING else 0)
        max_epochs = loop.run_limits.max_epochs
        if max_epochs != -1 and completed > max_epochs:
            raise ValueError(f"the checkpoint has {completed} epochs done, but max_epochs={max_epochs}: resume with "
                             f"max_epochs >= {completed} (as saved), or start a new run")
        loop.replay = loaded
        loop.position.resume_iterator = True
        loop.position.resume_mid_epoch = loop.stage in (Stage.IN_EPOCH, Stage.BATCH_PENDING)
        loop.position.replay = loop.window_batches if loop.position.resume_mid_epoch and loop.accumulate > 1 else 0
        if loop.stage is Stage.BETWEEN:
            loop.position_at(p.epochs_done, 0)
        else:
            loop.position_at(p.epoch, p.batch_in_epoch if loop.position.resume_mid_epoch else 0)
        return loop.stage in (Stage.BATCH_PENDING, Stage.EPOCH_PENDING)

    def complete_pending(self, engine: Engine, saved: dict[str, Any]) -> None:
        """First thing in a resumed run: restore the generators and make the decision the saved run had
        pending when its checkpoint was written (handlers of that event that ran before the checkpoint
        are not run again, as with plain Ignite; the events the decision leads to are fired)."""
        from ignite.engine import Events

        loop = self.loop
        p = loop.progress
        if saved.get("rng") is not None:
            restore_rng(saved["rng"], engine.state.dataloader)
        es = loop.get("early_stopping")
        if es is not None:
            es.count_earlier_validations(p.val_runs)
        if loop.stage is Stage.BATCH_PENDING:
            loop._on_iteration_decide(engine, replay=True)
            if loop.epoch_ended_early or loop.end_after_epoch is not None or loop.is_last_batch():
                if not loop.is_last_batch():
                    loop.position.new_iterator(engine)  # terminate_epoch() made the interrupted run a fresh iterator
                loop.position.resume_mid_epoch = False
                loop.position.replay = 0
                engine.state.epoch = p.epoch + 1
                engine.fire_event(Events.EPOCH_COMPLETED)
                loop.position_at(p.epoch + 1, 0)
        elif loop.stage is Stage.EPOCH_PENDING:
            engine.state.epoch = p.epoch + 1
            loop._on_epoch_completed(engine)
        if es is not None:
            es.end_replay()


# ---------------------------------------------------------------------------------------------- state


def _local_requests(loop: TrainingLoop) -> list[dict[str, str]]:
    """Stop requests not yet synced, with the non-finite-loss check of a batch whose decision is pending."""
    local = {r.reason: r for r in loop.controller.local_requests()}
    guard = loop.get("nan_guard")
    if loop.stage is Stage.BATCH_PENDING and guard is not None:
        probe = StopController()
        guard.check(loop.trainer, probe)
        for request in probe.local_requests():
            local.setdefault(request.reason, request)
    return [r.to_dict() for r in local.values()]


def loop_state_dict(loop: TrainingLoop) -> dict[str, Any]:
    """All loop state as plain data (``torch.load(weights_only=True)`` can read it back).

    Besides counters, stop controller, clock and early stopping it holds what an exact resume needs:
    where the run stands (``stage``), the random-generator states now and when the current data iterator
    was created, and how many batches that iterator gave.
    """
    schedule, es = loop.get("validation"), loop.get("early_stopping")
    state: dict[str, Any] = {
        "version": STATE_VERSION,
        "progress": loop.progress.state_dict(),
        "controller": loop.controller.state_dict(),
        "clock": loop.clock.state_dict(),
        "last_val_end": float(schedule.last_val_end) if schedule is not None else 0.0,
        "stage": loop.stage.value,
        "local_requests": _local_requests(loop),
        "end_after_epoch": loop.end_after_epoch.to_dict() if loop.end_after_epoch else None,
        "epoch_ended_early": bool(loop.epoch_ended_early),
        "rng": capture_rng(getattr(loop.trainer.state, "dataloader", None)),
        **loop.position.state_dict(),
        # an open accumulation window: its batches are replayed on resume, from the generator states it began with
        "window_batches": int(loop.window_batches),
        "window_rng": loop.window_rng if loop.window_batches and loop.stage is not Stage.BETWEEN else None,
        "monitor_value": es.monitor_value_now(loop.trainer) if es is not None and loop.stage in _PENDING else None,
    }
    if es is not None:
        state["early_stopping"] = es.state_dict()
    # [concerns' own parts] e.g. the TimeBudget's epoch measurements, the ValidationSchedule's run record
    state["concerns"] = {name: h.loop_state() for name, h in loop.concerns.items() if hasattr(h, "loop_state")}
    return state


def load_loop_state(loop: TrainingLoop, state: dict[str, Any]) -> None:
    """Restore :func:`loop_state_dict` output; the next ``trainer.run()`` continues where the saved run stood."""
    if not isinstance(state, dict):
        raise TypeError(f"speedups state has type {type(state).__name__}; accepted: a dict from state_dict()")
    version = state.get("version")
    if version not in _READABLE_VERSIONS:
        raise ValueError(f"speedups state has version {version!r}; this ignite-speed reads versions "
                         f"{list(_READABLE_VERSIONS)}")
    loop.progress.load_state_dict(state["progress"])
    loop.controller.load_state_dict(state["controller"])
    loop.clock.load_state_dict(state["clock"])
    schedule, es = loop.get("validation"), loop.get("early_stopping")
    if schedule is not None:
        schedule.last_val_end = float(state.get("last_val_end", 0.0))
    if es is not None:
        if state.get("early_stopping") is not None:
            es.load_state_dict(state["early_stopping"])
        if state.get("monitor_value") is not None and state.get("stage") in {s.value for s in _PENDING}:
            es.restore_monitor_value(float(state["monitor_value"]))
    loop.stage = Stage(str(state.get("stage", Stage.BETWEEN.value)))
    loop.end_after_epoch = StopRequest.from_dict(state.get("end_after_epoch"))
    loop.epoch_ended_early = bool(state.get("epoch_ended_early", False))
    for request in state.get("local_requests") or []:
        loop.controller.request(request["reason"], request["message"], request["source"])
    loop.position.load_state_dict(state)
    loop.window_batches = int(state.get("window_batches", 0))
    loop.window_rng = state.get("window_rng")
    for name, part in (state.get("concerns") or {}).items():  # [concerns' own parts]
        handler = loop.get(name)
        if handler is not None and hasattr(handler, "load_loop_state"):
            handler.load_loop_state(part)
    loop.setup.loaded = state
