"""``attach_speedups``: Lightning-style loop controls on the user's own Ignite engines.

The user keeps calling ``trainer.run(train_loader)``. Attaching wraps that one method on the trainer
instance (to learn the arguments the user passed and to run the sanity check first) and adds a few
handlers:

* ``ITERATION_COMPLETED`` (first): count batches and optimizer steps;
* ``ITERATION_COMPLETED`` (last, after the user's handlers): time budget, non-finite loss, syncing stop
  requests across ranks, the validation decision, ending the epoch or the run;
* ``EPOCH_COMPLETED`` (last): epoch-end early-stopping checks and the stop decision;
* ``EPOCH_STARTED`` (last): the epoch's data iterator (a fresh one under ``limit_train_batches``; after a
  resume, the interrupted one fast-forwarded);
* ``STARTED`` / ``COMPLETED``: clocks, a decision left pending by a checkpoint, the final reason.

See docs/loop_limits.rst for how ``max_epochs``/``epoch_length`` passed to ``run()`` combine with the config.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import math
import warnings
from collections.abc import Callable
from typing import Any

from ignite.engine import Engine, Events, State

from . import _dist
from ._compat import engine_is_done, engine_run_original, move_handler
from .config import EffectiveLimits, SpeedConfig
from .data import data_length, sequential_copy
from .progress import Progress
from .resume import capture_rng, recreate_iterator, restore_rng, set_epoch_position
from .stop import RankFailureError, StopController, StopReason, StopRequest
from .time_budget import TrainingClock
from .validation import ValSchedule, resolve_val_schedule, run_evaluator, run_sanity_check

__all__ = ["Speedups", "attach_speedups"]

from ._logging import logger

_STATE_VERSION = 2
_READABLE_VERSIONS = (1, 2)
# Where a run stands when its state is saved (Checkpoint runs inside the trainer's handlers, before
# ignite-speed's own decisions of the same event; the resumed run completes what is pending):
_BETWEEN = "between"  # between epochs (or the run is done): nothing pending
_IN_EPOCH = "in_epoch"  # inside an epoch, the last batch fully decided
_BATCH_PENDING = "batch_pending"  # after a batch's ITERATION_COMPLETED handlers, before its decision
_EPOCH_PENDING = "epoch_pending"  # inside EPOCH_COMPLETED, before the epoch-end decision
_ATTR = "_ignite_speed_speedups"
# Ignite needs a number of epochs; "no limit" (-1) becomes this, which no run reaches.
_UNBOUNDED_EPOCHS = 2**31 - 1


class Speedups:
    """The speed-up controls attached to one trainer (returned by :func:`attach_speedups`).

    Attributes:
        cfg: the validated :class:`~ignite_speed.config.SpeedConfig`.
        progress: loop counters with Lightning's meanings (:class:`~ignite_speed.progress.Progress`).
        controller: the :class:`~ignite_speed.stop.StopController` that decides why training ends.
        early_stopping: the :class:`~ignite_speed.early_stopping.EarlyStopping` built from the config, or None.
        rank_failure_timeout: when ``trainer.run`` raises on one rank of a distributed run, how long that
            rank waits for the others to reach their next stop sync, where they learn of the failure and
            raise :class:`~ignite_speed.stop.RankFailureError` (see docs/reliability.rst, "Rank faults").
    """

    rank_failure_timeout: datetime.timedelta = datetime.timedelta(seconds=30)

    def __init__(self, trainer: Engine, evaluator: Engine | None, cfg: SpeedConfig, *, val_data: Any = None,
                 model: Any = None, precision: Any = None) -> None:
        if getattr(trainer, _ATTR, None) is not None:
            raise RuntimeError("attach_speedups: this trainer already has speedups attached; attach once per trainer")
        self.trainer = trainer
        self.evaluator = evaluator
        self.cfg = cfg
        self.val_data = val_data
        self.model = model
        self.limits: EffectiveLimits = cfg.effective()
        self.progress = Progress()
        self.controller = StopController(self.limits.min_epochs, self.limits.min_steps)
        self.controller.bind(trainer)
        self.clock = TrainingClock()
        self._precision = precision
        self.early_stopping: Any = None
        if self.limits.early_stopping_enabled:
            from .early_stopping import EarlyStopping

            self.early_stopping = EarlyStopping(**dict(cfg.early_stopping or {}))
            self.early_stopping.bind(self.controller, model=model)
        self.nan_guard: Any = None
        if cfg.terminate_on_nan:
            from .nan_guard import NonFiniteLossGuard

            self.nan_guard = NonFiniteLossGuard()
        # resolved for the current run by _run()
        self._run_limits = self.limits
        self._budget_seconds: float | None = None
        self._accumulate = cfg.accumulate_grad_batches
        self._train_batches: int | None = None
        self._fresh_iterator_each_epoch = False
        self._val_batches: int | None = 0
        self._val_loader: Any = None
        self._schedule: ValSchedule | None = None
        self._world_size = 1
        self._is_rank_zero = True
        # per epoch / per batch flags
        self._epoch_ended_early = False
        self._end_after_epoch: StopRequest | None = None
        self._last_val_end = 0.0
        # exact resume: where the run stands, the current data iterator, what a checkpoint loaded
        self._stage = _BETWEEN
        self._iter_rng: dict[str, Any] | None = None  # generator states when the current iterator was created
        self._iter_fetched = 0  # batches drawn from the current iterator
        self._need_iterator = True  # the next EPOCH_STARTED creates the iterator (first epoch of a run())
        self._loaded: dict[str, Any] | None = None  # a loaded state that no run() has used yet
        self._replay: dict[str, Any] | None = None  # ... handed from run() to the STARTED handler
        self._resume_iterator = False  # the next EPOCH_STARTED rebuilds the interrupted run's iterator
        self._resume_mid_epoch = False
        self._validate_up_front()
        self._attach()

    # ------------------------------------------------------------------ public API
    @property
    def stop_reason(self) -> StopReason:
        """Why the last run ended (``StopReason.NOT_STOPPED`` while it runs or before it ran)."""
        return self.controller.stop_reason

    @property
    def stop_message(self) -> str | None:
        return self.controller.stop_message

    @property
    def global_step(self) -> int:
        return self.progress.global_step

    @property
    def precision(self) -> Any:
        return self._precision if self._precision is not None else getattr(self.trainer, "speed_precision", None)

    def request_stop(self, message: str = "stop requested by user code") -> None:
        """Ask training to stop (Lightning's ``trainer.should_stop = True``).

        Takes effect at the next decision point (the end of the current batch when called from a
        training-batch handler), after ``min_epochs``/``min_steps``, on every rank.
        """
        self.controller.request(StopReason.USER_REQUEST, message, "user")

    def end_epoch(self) -> None:
        """End the current epoch now (Lightning's ``on_train_batch_start`` returning -1).

        Call it from an ``ITERATION_STARTED`` handler to skip the current batch's step too, or from an
        ``ITERATION_COMPLETED`` handler registered before :func:`attach_speedups` to end the epoch after
        the batch. The epoch's remaining batches and its pending validation are skipped; epoch-end
        handlers still run and the next epoch starts normally.
        """
        event = self.trainer.last_event_name
        if event == Events.ITERATION_STARTED:
            self._count_fetched_batch()  # fetched, not trained: no optimizer step
        elif event != Events.ITERATION_COMPLETED:
            raise RuntimeError(f"end_epoch() must be called from an ITERATION_STARTED or ITERATION_COMPLETED "
                               f"handler of the trainer; it was called during {event}")
        self._epoch_ended_early = True
        self.trainer.terminate_epoch()

    def extend(self, **limits: Any) -> None:
        """Let the next ``trainer.run()`` continue a run that already finished, with raised limits.

        ``limits`` are config flags to change first (e.g. ``max_epochs=20``, ``max_steps``, ``max_time``,
        early-stopping settings). Without calling it, running a finished trainer again raises instead of
        silently training on.
        """
        final = self.controller.final
        if limits:
            self.cfg = self.cfg.replace(**limits)
            self.limits = self.cfg.effective()
            self._accumulate = self.cfg.accumulate_grad_batches
            self.controller.min_epochs, self.controller.min_steps = self.limits.min_epochs, self.limits.min_steps
        if self.early_stopping is not None and final is not None and final.reason is StopReason.EARLY_STOPPING:
            self._rearm_early_stopping(rebuild="early_stopping" in limits)
        self.controller.reset_run()

    def _rearm_early_stopping(self, *, rebuild: bool) -> None:
        """After an early stop: a fresh patience, the best score kept; new ``early_stopping`` settings
        given to :meth:`extend` rebuild it."""
        es = old = self.early_stopping
        if rebuild and self.cfg.early_stopping is not None:
            from .early_stopping import EarlyStopping

            es = self.early_stopping = EarlyStopping(**dict(self.cfg.early_stopping))
            es.bind(self.controller, model=self.model)
            if (es.monitor, es.mode) == (old.monitor, old.mode):
                es.best_score = old.best_score
        es.rearm()

    def test(self, engine: Engine, data: Any) -> State:
        """Run ``engine`` on ``data`` under ``limit_test_batches`` (or ``fast_dev_run``)."""
        return self._run_limited(engine, data, self.limits.limit_test_batches, "limit_test_batches")

    def predict(self, engine: Engine, data: Any) -> State:
        """Run ``engine`` on ``data`` under ``limit_predict_batches`` (or ``fast_dev_run``)."""
        return self._run_limited(engine, data, self.limits.limit_predict_batches, "limit_predict_batches")

    def validate(self) -> None:
        """Run the evaluator once now on ``val_data`` under ``limit_val_batches``."""
        if self.evaluator is None or self.val_data is None:
            raise RuntimeError("validate() needs an evaluator and val_data passed to attach_speedups")
        loader = sequential_copy(self.val_data, "val") if self.limits.overfit else self.val_data
        n = self.limits.limit_val_batches.resolve(data_length(loader), "limit_val_batches")
        if n != 0:
            run_evaluator(self.evaluator, loader, n)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """All speed-up state as plain data (``torch.load(weights_only=True)`` can read it back).

        Besides counters, stop controller, clock and early stopping it holds what an exact resume needs:
        where the run stands (``stage``: Ignite's ``Checkpoint`` runs before ignite-speed's decisions of
        the same event, which the resumed run then makes), the random-generator states now and when the
        current data iterator was created, and how many batches that iterator gave.
        """
        state: dict[str, Any] = {
            "version": _STATE_VERSION,
            "progress": self.progress.state_dict(),
            "controller": self.controller.state_dict(),
            "clock": self.clock.state_dict(),
            "last_val_end": float(self._last_val_end),
            "stage": self._stage,
            "local_requests": self._local_requests(),
            "end_after_epoch": self._end_after_epoch.to_dict() if self._end_after_epoch else None,
            "epoch_ended_early": bool(self._epoch_ended_early),
            "rng": capture_rng(getattr(self.trainer.state, "dataloader", None)),
            "iterator_rng": self._iter_rng,
            "iterator_fetched": int(self._iter_fetched),
            "monitor_value": self._monitor_value(),
        }
        if self.early_stopping is not None:
            state["early_stopping"] = self.early_stopping.state_dict()
        precision = self.precision
        if precision is not None and hasattr(precision, "state_dict"):
            state["precision"] = precision.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output. The next ``trainer.run()`` continues exactly where the saved
        run stood; load the trainer's state too (``Checkpoint.load_objects`` with both)."""
        if not isinstance(state, dict):
            raise TypeError(f"speedups state has type {type(state).__name__}; accepted: a dict from state_dict()")
        version = state.get("version")
        if version not in _READABLE_VERSIONS:
            raise ValueError(f"speedups state has version {version!r}; this ignite-speed reads versions "
                             f"{list(_READABLE_VERSIONS)}")
        self.progress.load_state_dict(state["progress"])
        self.controller.load_state_dict(state["controller"])
        self.clock.load_state_dict(state["clock"])
        self._last_val_end = float(state.get("last_val_end", 0.0))
        if self.early_stopping is not None and state.get("early_stopping") is not None:
            self.early_stopping.load_state_dict(state["early_stopping"])
        precision = self.precision
        if precision is not None and state.get("precision") is not None:
            precision.load_state_dict(state["precision"])
        self._stage = str(state.get("stage", _BETWEEN))
        self._end_after_epoch = StopRequest.from_dict(state.get("end_after_epoch"))
        self._epoch_ended_early = bool(state.get("epoch_ended_early", False))
        for request in state.get("local_requests") or []:
            self.controller.request(request["reason"], request["message"], request["source"])
        self._iter_rng = state.get("iterator_rng")
        self._iter_fetched = int(state.get("iterator_fetched", 0))
        self._loaded = state

    def _local_requests(self) -> list[dict[str, str]]:
        """Stop requests not yet synced, with the non-finite-loss check of a batch whose decision is pending."""
        local = {r.reason: r for r in self.controller.local_requests()}
        if self._stage == _BATCH_PENDING and self.nan_guard is not None:
            probe = StopController()
            self.nan_guard.check(self.trainer, probe)
            for request in probe.local_requests():
                local.setdefault(request.reason, request)
        return [r.to_dict() for r in local.values()]

    def _monitor_value(self) -> float | None:
        """The early-stopping monitor of the last validation run (an epoch-end check replayed after a
        resume reads it; evaluator metrics are in no checkpoint)."""
        es, evaluator = self.early_stopping, self.evaluator
        if es is None or evaluator is None or not self.progress.val_runs:
            return None
        value = (getattr(evaluator.state, "metrics", None) or {}).get(es.monitor)
        try:
            return None if value is None else float(value)
        except (TypeError, ValueError, RuntimeError):
            return None

    # ------------------------------------------------------------------ set-up
    def _validate_up_front(self) -> None:
        """Refuse, at attach time, what can already be known to be wrong."""
        lim = self.limits
        if self.val_data is not None and not lim.limit_val_batches.is_zero:
            lim.limit_val_batches.resolve(data_length(self.val_data), "limit_val_batches")
        if self.early_stopping is not None:
            self.early_stopping.setup(val_check_interval=lim.val_check_interval,
                                      check_val_every_n_epoch=lim.check_val_every_n_epoch,
                                      validation_enabled=self._validation_configured(),
                                      trainer=self.trainer, evaluator=self.evaluator)

    def _validation_configured(self) -> bool:
        return (self.evaluator is not None and self.val_data is not None
                and not self.limits.limit_val_batches.is_zero and data_length(self.val_data) != 0)

    def _attach(self) -> None:
        t = self.trainer
        t.add_event_handler(Events.STARTED, self._on_started)
        t.add_event_handler(Events.EPOCH_STARTED, self._on_epoch_started)
        t.add_event_handler(Events.EPOCH_STARTED, self._on_epoch_data)
        t.add_event_handler(Events.DATALOADER_STOP_ITERATION, self._on_iterator_renewed)
        t.add_event_handler(Events.TERMINATE_SINGLE_EPOCH, self._on_iterator_renewed)
        t.add_event_handler(Events.EPOCH_COMPLETED, self._on_epoch_pending)
        t.add_event_handler(Events.ITERATION_COMPLETED, self._on_iteration_counted)
        move_handler(t, Events.ITERATION_COMPLETED, self._on_iteration_counted, first=True)
        t.add_event_handler(Events.ITERATION_COMPLETED, self._on_iteration_decide)
        t.add_event_handler(Events.EPOCH_COMPLETED, self._on_epoch_completed)
        t.add_event_handler(Events.COMPLETED, self._on_completed)
        original = engine_run_original(t)

        @functools.wraps(original)
        def run(data: Any = None, max_epochs: int | None = None, epoch_length: int | None = None,
                **kwargs: Any) -> State:
            return self._run(original, data, max_epochs, epoch_length, **kwargs)

        t.run = run  # type: ignore[method-assign,assignment]
        setattr(t, _ATTR, self)

    def _keep_decisions_last(self) -> None:
        # Handlers the user attached after us must still run before the decisions of the same event.
        move_handler(self.trainer, Events.ITERATION_COMPLETED, self._on_iteration_decide, first=False)
        move_handler(self.trainer, Events.EPOCH_COMPLETED, self._on_epoch_completed, first=False)
        move_handler(self.trainer, Events.ITERATION_COMPLETED, self._on_iteration_counted, first=True)
        move_handler(self.trainer, Events.EPOCH_COMPLETED, self._on_epoch_pending, first=True)
        move_handler(self.trainer, Events.EPOCH_STARTED, self._on_epoch_data, first=False)

    # ------------------------------------------------------------------ the run
    def _limits_for_run(self, max_epochs: int | None, kwargs: dict[str, Any]) -> EffectiveLimits:
        lim = self.limits
        explicit = self.cfg.explicit
        max_iters = kwargs.pop("max_iters", None)
        if max_epochs is not None:
            if isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < 0:
                raise ValueError(f"trainer.run(max_epochs={max_epochs!r}): accepted: an int >= 0")
            if lim.fast_dev_run:
                warnings.warn(f"fast_dev_run={lim.fast_dev_run} runs 1 epoch; max_epochs={max_epochs} given to run() "
                              f"is not used", UserWarning, stacklevel=4)
            elif "max_epochs" in explicit and self.cfg.max_epochs != max_epochs:
                raise ValueError(f"trainer.run(max_epochs={max_epochs}) conflicts with the config's "
                                 f"max_epochs={self.cfg.max_epochs}; give max_epochs in one place only")
            else:
                lim = dataclasses.replace(lim, max_epochs=max_epochs, max_epochs_defaulted=False)
        if max_iters is not None:
            if lim.fast_dev_run or ("max_steps" in explicit and self.cfg.max_steps != max_iters) or \
                    self.cfg.accumulate_grad_batches != 1:
                raise ValueError(f"trainer.run(max_iters={max_iters}) conflicts with the config (max_steps="
                                 f"{self.cfg.max_steps}, accumulate_grad_batches={self.cfg.accumulate_grad_batches}); "
                                 f"set max_steps in the config instead")
            lim = dataclasses.replace(lim, max_steps=int(max_iters))
            if max_epochs is None and "max_epochs" not in explicit:
                lim = dataclasses.replace(lim, max_epochs=-1, max_epochs_defaulted=False)
        return lim

    def _run(self, original: Callable[..., State], data: Any, max_epochs: int | None, epoch_length: int | None,
             **kwargs: Any) -> State:
        t = self.trainer
        lim = self._limits_for_run(max_epochs, kwargs)
        # A brand-new engine, or one the user reset with ``trainer.state.max_epochs = None`` (Ignite's restart).
        new_run = t.state.max_epochs is None and getattr(t.state, "max_iters", None) is None
        if new_run:
            if self.progress.total_batches or self.controller.final is not None:
                self._reset_for_new_run()
        elif self.controller.final is not None:
            final = self.controller.final
            raise RuntimeError(
                f"this training run already finished ({final.reason.value}: {final.message}); ignite-speed does not "
                f"train on silently. To continue it, call speedups.extend(...) with the limit to raise (e.g. "
                f"speedups.extend(max_epochs=20)); to start a new run, set trainer.state.max_epochs = None")
        self._run_limits = lim
        self._budget_seconds = lim.max_time.total_seconds() if lim.max_time is not None else None
        self._world_size = _dist.get_world_size()
        self._is_rank_zero = _dist.get_rank() == 0

        full_length = epoch_length if epoch_length is not None else data_length(data)
        if lim.overfit:
            data = sequential_copy(data, "train")
        self._train_batches = lim.limit_train_batches.resolve(full_length, "limit_train_batches")
        self._fresh_iterator_each_epoch = self._train_batches is not None and (
            full_length is None or self._train_batches < full_length)
        if not new_run and t.state.epoch_length is not None and self._train_batches is not None \
                and t.state.epoch_length != self._train_batches:
            raise ValueError(
                f"the resumed run trained {t.state.epoch_length} batches per epoch, but limit_train_batches now gives "
                f"{self._train_batches}; resume with the same data and limit_train_batches")

        self._resolve_validation(lim)
        if lim.max_epochs_defaulted and new_run:
            warnings.warn("max_epochs was not set and nothing else bounds the run: training stops after 1000 epochs "
                          "(set max_epochs=-1 for no limit)", UserWarning, stacklevel=3)
        if new_run and self._schedule is not None and self._schedule.enabled and lim.num_sanity_val_steps != 0:
            n = self._val_batches if lim.num_sanity_val_steps == -1 else (
                lim.num_sanity_val_steps if self._val_batches is None
                else min(lim.num_sanity_val_steps, self._val_batches))
            assert self.evaluator is not None
            run_sanity_check(self.evaluator, self._val_loader, n)

        if self._train_batches == 0 or lim.max_epochs == 0 or lim.max_steps == 0:
            what = ("limit_train_batches gives 0 batches" if self._train_batches == 0
                    else "max_epochs=0" if lim.max_epochs == 0 else "max_steps=0")
            self.controller.finish(StopReason.NO_TRAINING, f"no training: {what}", "limits")
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
            run_kwargs["epoch_length"] = self._train_batches
        elif not pending and t.state.iteration >= t.state.epoch_length * run_kwargs["max_epochs"]:
            raise ValueError(f"nothing left to train: the run already reached max_epochs={run_kwargs['max_epochs']}; "
                             f"raise it with speedups.extend(max_epochs=...)")
        self._keep_decisions_last()
        try:
            return original(data, **run_kwargs)
        except Exception as exc:
            self._signal_rank_failure(exc)
            raise
        finally:
            self.clock.pause()

    def _signal_rank_failure(self, exc: Exception) -> None:
        """This rank's training raised: tell the other ranks at their next stop sync (they would otherwise
        wait in it until the process group times out, 30 minutes by default). No cost while all goes well."""
        if self._world_size <= 1 or isinstance(exc, RankFailureError) or _dist.is_collective_error(exc):
            return  # alone, told by another rank, or the process group itself failed: nobody to tell
        rank = _dist.get_rank()
        message = f"rank {rank} failed at iteration {self.trainer.state.iteration}: {type(exc).__name__}: {exc}"
        try:
            self.controller.signal_failure(message, f"rank {rank}", self._world_size, self.rank_failure_timeout)
        except Exception as sync_exc:  # the original exception is what the user must see: only log this one
            logger.warning("rank %d could not tell the other ranks that it failed (%s); they stop when the process "
                           "group times out", rank, sync_exc)

    def _position_for_resume(self, new_run: bool) -> bool:
        """After ``load_state_dict``: put the trainer where the saved run stood (Ignite's own
        ``epoch = iteration // epoch_length`` is wrong once an epoch ended early, and it restarts an
        interrupted epoch from batch 0). Returns whether a decision of the saved run is pending."""
        loaded, self._loaded = self._loaded, None
        if loaded is None:
            return False
        t, p = self.trainer, self.progress
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
        self._replay = loaded
        self._resume_iterator = True
        self._resume_mid_epoch = self._stage in (_IN_EPOCH, _BATCH_PENDING)
        if self._stage == _BETWEEN:
            set_epoch_position(t, p.epochs_done, 0)
        else:
            set_epoch_position(t, p.epoch, p.batch_in_epoch if self._resume_mid_epoch else 0)
        return self._stage in (_BATCH_PENDING, _EPOCH_PENDING)

    def _ignite_max_epochs(self, lim: EffectiveLimits) -> int:
        if lim.max_epochs != -1:
            return lim.max_epochs
        if lim.max_steps != -1 and self._train_batches:
            steps_per_epoch = math.ceil(self._train_batches / self._accumulate)
            return max(self.trainer.state.epoch, math.ceil(lim.max_steps / steps_per_epoch))
        return _UNBOUNDED_EPOCHS

    def _resolve_validation(self, lim: EffectiveLimits) -> None:
        enabled = self.evaluator is not None and self.val_data is not None and not lim.limit_val_batches.is_zero
        self._val_loader = None
        self._val_batches = 0
        if enabled:
            self._val_loader = sequential_copy(self.val_data, "val") if lim.overfit else self.val_data
            self._val_batches = lim.limit_val_batches.resolve(data_length(self._val_loader), "limit_val_batches")
            enabled = self._val_batches != 0
        self._schedule = resolve_val_schedule(lim.val_check_interval, lim.check_val_every_n_epoch,
                                              train_batches=self._train_batches,
                                              train_limit=lim.limit_train_batches, enabled=enabled)
        if self.early_stopping is not None:
            self.early_stopping.setup(val_check_interval=lim.val_check_interval,
                                      check_val_every_n_epoch=lim.check_val_every_n_epoch,
                                      validation_enabled=enabled, trainer=self.trainer, evaluator=self.evaluator)

    def _reset_for_new_run(self) -> None:
        self._stage, self._iter_rng, self._iter_fetched = _BETWEEN, None, 0
        self.progress = Progress()
        self.controller.reset_run()
        self.clock.reset()
        self._last_val_end = 0.0
        if self.early_stopping is not None:
            self.early_stopping.reset()

    def _run_limited(self, engine: Engine, data: Any, limit: Any, flag: str) -> State:
        n = limit.resolve(data_length(data), flag)
        if n == 0:
            return engine.state
        run_evaluator(engine, data, n)
        return engine.state

    # ------------------------------------------------------------------ handlers
    def _on_started(self, engine: Engine) -> None:
        self.clock.start()
        self._need_iterator = True
        replay, self._replay = self._replay, None
        if replay is not None:
            self._complete_pending(engine, replay)
            if engine.should_terminate:
                return
        else:
            self._end_after_epoch = None
            self._epoch_ended_early = False
        self._check_time()
        self._sync()
        if self.controller.should_stop(self.progress.epochs_done, self.progress.global_step):
            self.controller.finish()
            engine.terminate()

    def _complete_pending(self, engine: Engine, saved: dict[str, Any]) -> None:
        """First thing in a resumed run: restore the generators and make the decision the saved run had
        pending when its checkpoint was written (handlers of that event that ran before the checkpoint
        are not run again, as with plain Ignite; the events the decision leads to are fired)."""
        p = self.progress
        if saved.get("rng") is not None:
            restore_rng(saved["rng"], engine.state.dataloader)
        if self.early_stopping is not None:
            self.early_stopping.count_earlier_validations(p.val_runs)
            if saved.get("monitor_value") is not None and self.evaluator is not None:
                self.evaluator.state.metrics[self.early_stopping.monitor] = float(saved["monitor_value"])
        if self._stage == _BATCH_PENDING:
            self._on_iteration_decide(engine, replay=True)
            if self._epoch_ended_early or self._end_after_epoch is not None or self._is_last_batch():
                if not self._is_last_batch():
                    self._new_iterator(engine)  # terminate_epoch() made the interrupted run a fresh iterator
                self._resume_mid_epoch = False
                engine.state.epoch = p.epoch + 1
                engine.fire_event(Events.EPOCH_COMPLETED)
                set_epoch_position(engine, p.epoch + 1, 0)
        elif self._stage == _EPOCH_PENDING:
            engine.state.epoch = p.epoch + 1
            self._on_epoch_completed(engine)

    def _new_iterator(self, engine: Engine) -> None:
        data = engine.state.dataloader
        self._iter_rng = capture_rng(data)
        engine.set_data(data)  # type: ignore[arg-type]
        self._iter_fetched = 0

    def _on_iterator_renewed(self, engine: Engine, *_: Any, **__: Any) -> None:
        # Ignite makes a new iterator right after DATALOADER_STOP_ITERATION and TERMINATE_SINGLE_EPOCH
        self._iter_rng = capture_rng(engine.state.dataloader)
        self._iter_fetched = 0

    def _on_epoch_data(self, engine: Engine) -> None:
        """The last EPOCH_STARTED handler: the data iterator of the epoch (after a resume, the
        interrupted run's, fast-forwarded past the batches it had consumed)."""
        if self._resume_iterator:
            self._resume_iterator = False
            self._resume_mid_epoch = False
            self._need_iterator = False
            length = data_length(engine.state.dataloader)
            exhausted = length is not None and self._iter_fetched >= length
            if self._iter_rng is not None and not exhausted:
                recreate_iterator(engine, self._iter_rng, self._iter_fetched)
                return
        if self._need_iterator:
            self._need_iterator = False
            self._new_iterator(engine)

    def _on_epoch_pending(self, engine: Engine) -> None:
        self._stage = _EPOCH_PENDING

    def _on_epoch_started(self, engine: Engine) -> None:
        self._stage = _IN_EPOCH
        if self._resume_mid_epoch:
            return  # a resumed epoch: its counters and flags come from the checkpoint
        p = self.progress
        p.epoch = engine.state.epoch - 1
        p.batch_in_epoch = 0
        self._epoch_ended_early = False
        self._end_after_epoch = None

    def _is_last_batch(self) -> bool:
        return self._train_batches is not None and self.progress.batch_in_epoch >= self._train_batches

    def _count_fetched_batch(self) -> None:
        p = self.progress
        p.batch_in_epoch += 1
        p.total_batches += 1
        self._iter_fetched += 1

    def _on_iteration_counted(self, engine: Engine) -> None:
        # the hot path: kept to a few attribute updates (see benchmarks/overhead.py)
        self._count_fetched_batch()
        self._stage = _BATCH_PENDING
        if self.progress.batch_in_epoch % self._accumulate == 0 or self._is_last_batch():
            self.progress.global_step += 1

    def _check_time(self) -> None:
        budget = self._run_limits.max_time
        if budget is not None and self._is_rank_zero and self.clock.elapsed() >= budget.total_seconds():
            self.controller.request(StopReason.MAX_TIME, f"max_time={budget} reached after "
                                    f"{self.clock.elapsed():.3f} s of training", "max_time")

    def _sync(self, extra: list[int] | None = None) -> None:
        if self._world_size > 1 or self.controller.has_local_request:
            self.controller.sync(self._world_size, extra or [])
        else:
            self.controller.last_extra = list(extra or [])

    def _on_iteration_decide(self, engine: Engine, replay: bool = False) -> None:
        # the hot path: no work beyond a few comparisons unless something is due
        self._stage = _IN_EPOCH
        if self._epoch_ended_early:
            return
        p, controller, schedule = self.progress, self.controller, self._schedule
        assert schedule is not None
        if self.nan_guard is not None:
            self.nan_guard.check(engine, controller)
        if self._budget_seconds is not None and self._is_rank_zero and self.clock.elapsed() >= self._budget_seconds:
            self._check_time()
        if schedule.interval_seconds is not None and schedule.enabled:
            due = self._is_rank_zero and self.clock.elapsed() - self._last_val_end >= schedule.interval_seconds
            self._sync([int(due)])
            time_due = bool(controller.last_extra and controller.last_extra[0])
        else:
            if self._world_size > 1 or controller.has_local_request:
                controller.sync(self._world_size)
            time_due = False
        stopping = controller.pending is not None and controller.should_stop(p.epochs_done, p.global_step)
        is_last = self._train_batches is not None and p.batch_in_epoch >= self._train_batches
        # (a loader of unknown length is validated "at exhaustion" in _on_epoch_completed)
        if schedule.after_batch(p, is_last, False, stopping, math.inf if time_due else 0.0):
            self._validate_now()
            stopping = controller.should_stop(p.epochs_done, p.global_step)
        max_steps = self._run_limits.max_steps
        if max_steps != -1 and p.global_step >= max_steps:
            self._end_training(StopRequest(StopReason.MAX_STEPS, f"max_steps={max_steps} reached", "max_steps"),
                               replay)
        elif stopping:
            assert controller.pending is not None
            self._end_training(controller.pending, replay)

    def _end_training(self, request: StopRequest, replay: bool = False) -> None:
        self._end_after_epoch = request
        if not replay and not self._is_last_batch():
            self.trainer.terminate_epoch()

    def _validate_now(self) -> None:
        assert self.evaluator is not None
        run_evaluator(self.evaluator, self._val_loader, self._val_batches)
        self.progress.val_runs += 1
        self._last_val_end = self.clock.elapsed()
        if self.early_stopping is not None:
            self.early_stopping.on_validation_end(self.trainer, self.evaluator, self.progress)

    def _on_epoch_completed(self, engine: Engine) -> None:
        self._epoch_end_decision(engine)
        self._stage = _BETWEEN

    def _epoch_end_decision(self, engine: Engine) -> None:
        p, lim, schedule = self.progress, self._run_limits, self._schedule
        assert schedule is not None
        ended_early = self._epoch_ended_early or self._end_after_epoch is not None
        if self._train_batches is None and not ended_early:
            # loader of unknown length, now exhausted: the pending optimizer step and the validation at exhaustion
            if p.batch_in_epoch % self._accumulate != 0:
                p.global_step += 1
            if schedule.enabled and schedule.check_batch == math.inf and schedule.is_val_epoch(p.epoch):
                self._validate_now()
        if p.batch_in_epoch == 0 and not ended_early:
            # a one-shot generator/iterator is exhausted after one pass: end the run, do not count empty epochs
            message = (f"the training data gave no batches in epoch {p.epoch} (0-based): a one-shot generator or "
                       f"iterator is exhausted after one pass; pass a re-iterable (a DataLoader or a list) to train "
                       f"more epochs")
            warnings.warn(message, UserWarning, stacklevel=2)
            self._finish(StopRequest(StopReason.DATA_EXHAUSTED, message, "data"), terminate=True)
            return
        p.epochs_done += 1
        if self.early_stopping is not None:
            self.early_stopping.on_train_epoch_end(engine, self.evaluator, p)
        else:
            self._sync()
        request = self._end_after_epoch
        if request is not None:
            self._finish(request, terminate=True)
        elif lim.max_steps != -1 and p.global_step >= lim.max_steps:
            self._finish(StopRequest(StopReason.MAX_STEPS, f"max_steps={lim.max_steps} reached", "max_steps"),
                         terminate=True)
        elif lim.max_epochs != -1 and p.epochs_done >= lim.max_epochs:
            # terminate() too: after epochs ended early Ignite counts iterations and would run more epochs
            self._finish(StopRequest(StopReason.MAX_EPOCHS, f"max_epochs={lim.max_epochs} reached", "max_epochs"),
                         terminate=True)
        elif self.controller.should_stop(p.epochs_done, p.global_step):
            assert self.controller.pending is not None
            self._finish(self.controller.pending, terminate=True)
        else:
            if lim.max_epochs == -1 and engine.state.max_epochs is not None and \
                    engine.state.epoch >= engine.state.max_epochs:
                # max_steps not reached after the epochs estimated from it (epochs ended early): one more
                engine.state.max_epochs = engine.state.epoch + 1
            if self._fresh_iterator_each_epoch and not self._epoch_ended_early:
                # Lightning's limit_train_batches: every epoch takes the first N batches of a fresh iterator
                # (Ignite's epoch_length alone would continue the old one).
                self._new_iterator(engine)

    def _finish(self, request: StopRequest, *, terminate: bool) -> None:
        self._iter_rng = None  # the run ends: Ignite drops its iterator, a continuation starts a fresh one
        self.controller.finish(request.reason, request.message, request.source)
        if terminate and not engine_is_done(self.trainer):
            self.trainer.terminate()

    def _on_completed(self, engine: Engine) -> None:
        self.clock.pause()
        if self.controller.final is None:
            p, lim = self.progress, self._run_limits
            if engine.should_terminate:
                self.controller.finish(StopReason.USER_REQUEST, "trainer.terminate() was called", "user")
            elif lim.max_epochs != -1 and p.epochs_done >= lim.max_epochs:
                self.controller.finish(StopReason.MAX_EPOCHS, f"max_epochs={lim.max_epochs} reached", "max_epochs")
            else:
                self.controller.finish(StopReason.DATA_EXHAUSTED, "the training data ran out before the limits "
                                       "were reached", "data")
        if self.early_stopping is not None:
            self.early_stopping.on_train_end(engine)


def attach_speedups(trainer: Engine, evaluator: Engine | None = None, cfg: Any = None, *, val_data: Any = None,
                    model: Any = None, precision: Any = None, **overrides: Any) -> Speedups:
    """Attach Lightning-style speed controls to ``trainer`` (and its ``evaluator``).

    Args:
        trainer: the user's training :class:`~ignite.engine.Engine`; keep calling ``trainer.run(data)``.
        evaluator: the validation engine, run by the validation schedule on ``val_data``.
        cfg: a mapping, :class:`~ignite_speed.config.SpeedConfig`, ``argparse.Namespace``, dataclass or
            OmegaConf ``DictConfig`` of flags (Lightning 2.x names).
        val_data: the validation loader.
        model: the model (needed by ``early_stopping={"restore_best_weights": True}``).
        precision: a :class:`~ignite_speed.precision.Precision` used inside a custom step, so that its
            state is saved with the speedups (``create_trainer`` registers its own).
        **overrides: flags that override ``cfg``.

    Returns:
        the :class:`Speedups` object: ``stop_reason``, ``stop_message``, ``progress``, ``test()``,
        ``request_stop()``, ``end_epoch()``, ``state_dict()`` / ``load_state_dict()``.
    """
    config = SpeedConfig.from_any(cfg, **overrides)
    if evaluator is not None and not isinstance(evaluator, Engine):
        raise TypeError(f"evaluator={type(evaluator).__name__} is not an ignite Engine; accepted: an Engine or None")
    if not isinstance(trainer, Engine):
        raise TypeError(f"trainer={type(trainer).__name__} is not an ignite Engine")
    if val_data is not None and evaluator is None:
        raise ValueError("val_data was given without an evaluator; pass the evaluator Engine that runs validation")
    return Speedups(trainer, evaluator, config, val_data=val_data, model=model, precision=precision)
