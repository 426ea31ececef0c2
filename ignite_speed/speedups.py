"""``attach_speedups``: Lightning-style loop controls on the user's own Ignite engines.

:func:`attach_speedups` parses the flags once (:class:`~ignite_speed.config.SpeedConfig`) and attaches the
handlers of :mod:`ignite_speed.handlers` that the config enables; :class:`Speedups` is a thin facade over
them and the trainer's :class:`~ignite_speed.loop.TrainingLoop` (stop reason, progress, ``test``,
``predict``, ``extend``, ``request_stop``, one checkpointable state). The user keeps calling
``trainer.run(train_loader)``.

See docs/loop_limits.rst for how ``max_epochs``/``epoch_length`` passed to ``run()`` combine with the config.
"""

from __future__ import annotations

import argparse
import datetime
import math
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from ignite.engine import Engine, State

from .config.pruning import RAY_TUNE
from .config.slices import kwargs_of
from .config.speed_config import EffectiveLimits, SpeedConfig
from .data.batched_fetch import with_batched_fetch
from .data.loaders import data_length, sequential_copy
from .distributed._dist import get_world_size
from .handlers.autoresume import AutoResume
from .handlers.base import LoopHandler
from .handlers.early_stopping import EarlyStopping, refuse_unseen_monitor
from .handlers.limits import LoopLimits, TrainBatchLimit
from .handlers.nan_guard import NonFiniteLossGuard
from .handlers.preemption import PreemptionGuard, exit_code_of
from .handlers.time_budget import TimeBudget, TrainingClock
from .handlers.validation import ValidationSchedule, run_evaluator
from .loop.progress import Progress
from .loop.stop import StopController, StopReason
from .loop.trainer_parts import TrainerParts
from .loop.training_loop import TrainingLoop
from .report.record import RunReport, run_report

if TYPE_CHECKING:  # pragma: no cover
    from .report.advice import Advice, RunFacts
    from .report.projection import FullRun, Projection

if TYPE_CHECKING:  # pragma: no cover  (precision imports torch.amp machinery: loaded only where used)
    import torch

    from .step.precision import Precision

__all__ = ["Speedups", "SpeedupHandlers", "attach_speedups", "run_facts", "full_run_plan", "EXTEND_REFUSED"]

_H = TypeVar("_H", bound=LoopHandler)


# The flags extend refuses (they cannot act on a continuing run), with what to do instead.
_STEP = (
    "applied by the training step that create_trainer built (or by your own step); build a new trainer "
    "with it (create_trainer(..., {name}=...)) and attach_speedups again"
)
_JOB = (
    "the job's processes and devices are set when it launches; relaunch the job with the new value and resume "
    "from its checkpoint (allow_resume_changes=True resumes under another setup)"
)
EXTEND_REFUSED: dict[str, str] = {
    **{
        name: _STEP.format(name=name)
        for name in ("precision", "amp_backend", "amp_level", "gradient_clip_val", "gradient_clip_algorithm")
    },
    "accumulate_grad_batches": _STEP.format(name="accumulate_grad_batches") + " (the step and global_step count "
    "optimizer steps with the value the run started with; a change in a continuing run "
    "would make them disagree)",
    **{
        name: _JOB
        for name in (
            "accelerator",
            "devices",
            "num_nodes",
            "strategy",
            "node_rank",
            "master_addr",
            "master_port",
            "deepspeed_config",
        )
    },
    "fast_dev_run": "a fast_dev_run is a short debug run, not the start of a longer one; to train, attach_speedups "
    "without fast_dev_run to a new trainer (or speedups.extend(max_epochs=...) after a run without it)",
    "num_sanity_val_steps": "the sanity check runs before the first batch of a new run; the run extend continues "
    "has none (give it to attach_speedups)",
    "autoresume": "it acts when the first run of a fresh process starts; the run extend continues is in memory "
    "(give it to attach_speedups)",
    "pruning": "a trial reports to its search from its first validation run on; a continued run is the same trial "
    "(give pruning to attach_speedups when the trial starts)",
}
# what fast_dev_run overrides: refused under it (the run would not follow them)
_FAST_DEV_RUN_OVERRIDES = frozenset(
    {
        "max_epochs",
        "min_epochs",
        "max_steps",
        "min_steps",
        "limit_train_batches",
        "limit_val_batches",
        "limit_test_batches",
        "limit_predict_batches",
        "val_check_interval",
        "check_val_every_n_epoch",
        "val_time_fraction",
        "early_stopping",
    }
)
# validation flags: refused when nothing validates (no evaluator)
_VALIDATION_ONLY_FLAGS = frozenset(
    {"limit_val_batches", "val_check_interval", "check_val_every_n_epoch", "val_time_fraction"}
)


class SpeedupHandlers:
    """The handlers a config enables on one trainer: the composition of :func:`attach_speedups`. Each is built by
    its constructor from its slice of the config (``cfg.loop_limits_flags()``, ...: ignite_speed.config.slices);
    :meth:`rebuild` replaces those whose slice changed (``Speedups.extend``), carrying their state over.

    Attributes (each None when the config does not enable it): ``limits`` (:class:`~ignite_speed.handlers.LoopLimits`),
    ``train_batches``, ``validation``, ``time_budget``, ``early_stopping``, ``nan_guard``, ``preemption``,
    ``autoresume``.
    """

    def __init__(self, loop: TrainingLoop, evaluator: Engine | None, val_data: Any, model: Any) -> None:
        self.loop, self.trainer, self.evaluator, self.val_data, self.model = (
            loop,
            loop.trainer,
            evaluator,
            val_data,
            model,
        )
        self.limits: LoopLimits | None = None
        self.train_batches: TrainBatchLimit | None = None
        self.validation: ValidationSchedule | None = None
        self.time_budget: TimeBudget | None = None
        self.early_stopping: EarlyStopping | None = None
        self.nan_guard: NonFiniteLossGuard | None = None
        self.preemption: PreemptionGuard | None = None
        self.autoresume: AutoResume | None = None

    def build(self, cfg: SpeedConfig) -> None:
        evaluator, val_data = self.evaluator, self.val_data
        if cfg.val_time_fraction is not None and (evaluator is None or val_data is None):
            raise ValueError(
                f"val_time_fraction={cfg.val_time_fraction!r} budgets validation, but attach_speedups "
                f"got no {'evaluator' if evaluator is None else 'val_data'}, so nothing validates; "
                f"accepted: pass the evaluator and val_data, or leave val_time_fraction unset (None)"
            )
        self.limits = self._replace(None, LoopLimits(**kwargs_of(cfg.loop_limits_flags())))
        self.train_batches = self._train_batches(None, cfg)
        # with an evaluator but no val_data nothing validates, and a fast_dev_run still limits the evaluator's runs
        self.validation = (
            None
            if evaluator is None
            else self._validation(
                None,
                ValidationSchedule(
                    evaluator, () if val_data is None else val_data, **kwargs_of(cfg.validation_flags())
                ),
            )
        )
        self.time_budget = self._time_budget(None, cfg)
        self._early_stopping(cfg)
        self.nan_guard = self._replace(None, NonFiniteLossGuard()) if cfg.terminate_on_nan else None
        self.preemption = self._preemption(None, cfg)
        self.autoresume = self._replace(None, AutoResume()) if cfg.autoresume else None

    def rebuild(self, old: SpeedConfig, new: SpeedConfig) -> None:
        """Replace every handler whose slice changed from ``old`` to ``new`` (state carried over)."""
        if old.loop_limits_flags() != new.loop_limits_flags():
            self.limits = self._replace(self.limits, LoopLimits(**kwargs_of(new.loop_limits_flags())))
        if old.train_batch_flags() != new.train_batch_flags():
            self.train_batches = self._train_batches(self.train_batches, new)
            # asked for: the continued run takes the new batches per epoch as allow_resume_changes does (from the
            # next epoch boundary; an interrupted epoch ends at its last batch)
            self.loop.setup.extended_layout = True
        if old.max_time_flags() != new.max_time_flags():
            self.time_budget = self._time_budget(self.time_budget, new)
        schedule = self.validation
        if schedule is not None and old.validation_flags() != new.validation_flags():
            self.validation = self._validation(
                schedule, ValidationSchedule(schedule.evaluator, schedule.val_data, **kwargs_of(new.validation_flags()))
            )
        if old.early_stopping != new.early_stopping:
            self._early_stopping(new)
        if old.terminate_on_nan != new.terminate_on_nan:
            self.nan_guard = self._replace(self.nan_guard, NonFiniteLossGuard() if new.terminate_on_nan else None)
        if old.preemption_signals != new.preemption_signals:
            self.preemption = self._preemption(self.preemption, new)

    def _replace(self, old: Any, new: _H | None) -> _H | None:
        """Attach ``new`` in place of ``old`` (either may be None); ``new`` carries on ``old``'s state."""
        if old is not None:
            old.detach()
            self.loop.handlers.remove(old)
        if new is None:
            return None
        if old is not None:
            new.load_state_dict(old.state_dict())  # an extended run keeps its measurements and records
        return new.attach(self.trainer)

    def _validation(self, old: ValidationSchedule | None, new: ValidationSchedule) -> ValidationSchedule | None:
        new.model = self.model  # (each run gives the trained model its modules' modes back)
        return self._replace(old, new)

    def _train_batches(self, old: TrainBatchLimit | None, cfg: SpeedConfig) -> TrainBatchLimit | None:
        flags = cfg.train_batch_flags()
        return self._replace(old, None if flags.is_all else TrainBatchLimit(**kwargs_of(flags)))

    def _time_budget(self, old: TimeBudget | None, cfg: SpeedConfig) -> TimeBudget | None:
        flags = cfg.max_time_flags()
        return self._replace(old, None if flags is None else TimeBudget(flags.max_time, flags.mode, flags.reserve))

    def _preemption(self, old: PreemptionGuard | None, cfg: SpeedConfig) -> PreemptionGuard | None:
        return self._replace(old, PreemptionGuard(cfg.preemption_signals) if cfg.preemption_signals else None)

    def _early_stopping(self, cfg: SpeedConfig) -> None:
        # judged on the schedule's runs (its placement resolved by the handler at each run's start); without
        # validation the monitor must be a trainer metric (refused at attach). The best score carries over to a
        # rebuilt one with the same monitor and mode. The same options keep the attached one (extend rebuilding
        # back after a refusal); a refused one is refused before the old one is taken off.
        old, options = self.early_stopping, cfg.early_stopping_options
        if not cfg.effective().early_stopping_enabled:
            options = None
        if old is not None and options == old.options:
            return
        evaluator = self.evaluator if self.validation is not None else None
        es = None if options is None else EarlyStopping(evaluator, options=options, model=self.model)
        if es is not None:
            refuse_unseen_monitor(es.monitor, self.trainer, self.validation, has_evaluator=evaluator is not None)
        self.early_stopping = None
        if old is not None:
            old.detach()
            self.loop.handlers.remove(old)
        if es is None:
            return
        self.early_stopping = es = es.attach(self.trainer)
        if old is not None and (es.monitor, es.mode) == (old.monitor, old.mode):
            es.best_score = old.best_score


class Speedups:
    """The speed-up controls attached to one trainer (returned by :func:`attach_speedups`).

    Attributes:
        cfg: the validated :class:`~ignite_speed.config.SpeedConfig`.
        loop: the trainer's :class:`~ignite_speed.loop.TrainingLoop`, which the attached handlers share.
        rank_failure_timeout: when ``trainer.run`` raises on one rank of a distributed run, how long that
            rank waits for the others to reach their next stop sync, where they learn of the failure and
            raise :class:`~ignite_speed.loop.RankFailureError` (see docs/reliability.rst, "Rank faults").
        handlers: the handlers the config enables (``SpeedupHandlers`` of ``ignite_speed.speedups``).
    """

    rank_failure_timeout: datetime.timedelta = datetime.timedelta(seconds=30)

    def __init__(
        self,
        trainer: Engine,
        evaluator: Engine | None,
        cfg: SpeedConfig,
        *,
        val_data: Any = None,
        model: torch.nn.Module | None = None,
        precision: Precision | None = None,
    ) -> None:
        if TrainerParts.of(trainer).speedups is not None:
            raise RuntimeError("attach_speedups: this trainer already has speedups attached; attach once per trainer")
        if TrainingLoop.of(trainer) is not None:
            raise RuntimeError(
                "attach_speedups: handlers of ignite_speed.handlers are already attached to this "
                "trainer; use attach_speedups or the handlers, not both"
            )
        self.trainer = trainer
        self.evaluator = evaluator
        self.cfg = cfg
        self.val_data = val_data
        self.model = model
        self._precision = precision
        self.limits: EffectiveLimits = cfg.effective()
        self.loop = TrainingLoop.of_or_attach(trainer)
        self.projection: Projection | None = None  # set at the end of a fast_dev_run
        self.loop.timer.listeners.append(lambda: _project_fast_dev_run(self))
        self.handlers = SpeedupHandlers(self.loop, evaluator, val_data, model)
        try:
            self._configure_loop()
            self.handlers.build(cfg)
            self.loop.parts.speedups = self
        except BaseException:
            self.loop.detach()  # a refused config leaves the trainer as it was: a corrected call can attach
            raise
        if self.loop.parts.precision is None and precision is None:
            _warn_step_flags_unapplied(cfg)

    def _configure_loop(self) -> None:
        cfg = self.cfg
        self.loop.configure(
            accumulate=cfg.accumulate_grad_batches,
            batched_fetch=cfg.batched_fetch,
            rank_failure_timeout=type(self).rank_failure_timeout,
        )
        self.loop.timer.fine, self.loop.setup.allow_resume_changes = _split_training(cfg), cfg.allow_resume_changes

    # ------------------------------------------------------------------ public API
    @property
    def controller(self) -> StopController:
        """The trainer's :class:`~ignite_speed.loop.StopController`."""
        return self.loop.controller

    @property
    def progress(self) -> Progress:
        """Loop counters with Lightning's meanings (:class:`~ignite_speed.loop.Progress`)."""
        return self.loop.progress

    @property
    def clock(self) -> TrainingClock:
        return self.loop.clock

    @property
    def early_stopping(self) -> EarlyStopping | None:
        """The :class:`~ignite_speed.handlers.EarlyStopping` built from the config, or None."""
        return self.handlers.early_stopping

    @property
    def time_budget(self) -> TimeBudget | None:
        """The :class:`~ignite_speed.handlers.TimeBudget` of ``max_time``, or None."""
        return self.handlers.time_budget

    @property
    def nan_guard(self) -> NonFiniteLossGuard | None:
        return self.handlers.nan_guard

    @property
    def preemption(self) -> PreemptionGuard | None:
        """The :class:`~ignite_speed.handlers.PreemptionGuard` of ``preemption_signals``, or None."""
        return self.handlers.preemption

    @property
    def autoresume(self) -> AutoResume | None:
        """The :class:`~ignite_speed.handlers.AutoResume` of ``autoresume``, or None."""
        return self.handlers.autoresume

    @property
    def stop_reason(self) -> StopReason:
        """Why the last run ended (``StopReason.NOT_STOPPED`` while it runs or before it ran)."""
        return self.controller.stop_reason

    @property
    def stop_message(self) -> str | None:
        return self.controller.stop_message

    @property
    def exit_code(self) -> int:
        """What the training script exits with (``sys.exit(speedups.exit_code)``): ``PREEMPTED_EXIT_CODE``
        (75) when the last run ended with ``PREEMPTED`` (a job script requeues on it), else 0."""
        return exit_code_of(self.stop_reason)

    @property
    def global_step(self) -> int:
        return self.progress.global_step

    @property
    def precision(self) -> Precision | None:
        return self._precision if self._precision is not None else self.loop.parts.precision

    def request_stop(self, message: str = "stop requested by user code") -> None:
        """Ask training to stop (Lightning's ``trainer.should_stop = True``).

        Takes effect at the next decision point (the end of the current batch when called from a
        training-batch handler), after ``min_epochs``/``min_steps``, on every rank.
        """
        self.loop.request_stop(message)

    def end_epoch(self) -> None:
        """End the current epoch now (Lightning's ``on_train_batch_start`` returning -1).

        Call it from an ``ITERATION_STARTED`` handler to skip the current batch's step too, or from an
        ``ITERATION_COMPLETED`` handler registered before :func:`attach_speedups` to end the epoch after
        the batch. The epoch's remaining batches and its pending validation are skipped; epoch-end
        handlers still run and the next epoch starts normally.
        """
        self.loop.end_epoch()

    def extend(self, **flags: Any) -> None:
        """Let the next ``trainer.run()`` continue a run that already finished, with raised limits.

        ``flags`` are config flags to change first (``max_epochs=20``, ``val_check_interval``, ...). Every handler
        whose flags changed is rebuilt, keeping its measurements, and acts on the next run; a flag that cannot act
        on a continuing run (``EXTEND_REFUSED``; under ``fast_dev_run``, what it overrides) is refused here with
        what to do instead, and nothing changes.
        Without calling it, running a finished trainer again raises instead of silently training on."""
        final = self.controller.final
        old = self.cfg
        new = old.replace(**flags) if flags else old
        changed = [name for name in SpeedConfig.flag_names() if getattr(new, name) != getattr(old, name)]
        for name in changed:
            reason = EXTEND_REFUSED.get(name)
            if reason is None and name in _FAST_DEV_RUN_OVERRIDES and new.fast_dev_run:
                reason = (
                    f"fast_dev_run={new.fast_dev_run} overrides it (a short debug run); to train, attach_speedups "
                    f"without fast_dev_run to a new trainer"
                )
            if reason is None and name in _VALIDATION_ONLY_FLAGS and self.handlers.validation is None:
                reason = (
                    "nothing validates: attach_speedups got no evaluator; attach the evaluator and val_data "
                    "to a new trainer's attach_speedups to validate"
                )
            if (
                reason is None
                and name == "val_time_fraction"
                and new.val_time_fraction is not None
                and self.val_data is None
            ):
                reason = (
                    "it budgets validation, but attach_speedups got no val_data, so nothing validates; accepted: "
                    "attach the evaluator and val_data to a new trainer's attach_speedups, or val_time_fraction=None"
                )
            if reason is not None:
                raise ValueError(
                    f"speedups.extend({name}={getattr(new, name)!r}): {name} cannot change in a "
                    f"continuing run (it is {getattr(old, name)!r}): {reason}"
                )
        if changed:
            limits, layout = self.limits, self.loop.setup.extended_layout
            self.cfg, self.limits = new, new.effective()
            try:
                self._configure_loop()
                self.handlers.rebuild(old, new)
            except BaseException:  # refused while rebuilding: the handlers, config and loop as they were
                self.cfg, self.limits = old, limits
                self._configure_loop()
                self.handlers.rebuild(new, old)
                self.loop.setup.extended_layout = layout
                raise
        es = self.early_stopping
        if es is not None and final is not None and final.reason is StopReason.EARLY_STOPPING:
            es.rearm()
        self.controller.reset_run()

    def test(self, engine: Engine, data: Any) -> State:
        """Run ``engine`` on ``data`` under ``limit_test_batches`` (or ``fast_dev_run``)."""
        return self._run_limited(engine, data, self.limits.limit_test_batches, "limit_test_batches")

    def predict(self, engine: Engine, data: Any) -> State:
        """Run ``engine`` on ``data`` under ``limit_predict_batches`` (or ``fast_dev_run``)."""
        return self._run_limited(engine, data, self.limits.limit_predict_batches, "limit_predict_batches")

    def estimated_stepping_batches(self, train_data: Any) -> int | float:
        """Optimizer steps that ``trainer.run(train_data)`` will take, with Lightning's
        ``Trainer.estimated_stepping_batches`` rule (``limit_train_batches``, ``overfit_batches``,
        ``fast_dev_run``, ``accumulate_grad_batches``, ``max_steps``, ``max_epochs``; ``math.inf`` when
        ``max_epochs=-1`` and no ``max_steps``): size an LR schedule such as ``OneCycleLR`` with it."""
        return self.loop.estimated_stepping_batches(train_data)

    def validate(self) -> None:
        """Run the evaluator once now on ``val_data`` under ``limit_val_batches``."""
        if self.evaluator is None or self.val_data is None:
            raise RuntimeError("validate() needs an evaluator and val_data passed to attach_speedups")
        loader = sequential_copy(self.val_data, "val") if self.limits.overfit else self.val_data
        self._run_limited(self.evaluator, loader, self.limits.limit_val_batches, "limit_val_batches")

    def _run_limited(self, engine: Engine, data: Any, limit: Any, flag: str) -> State:
        n = limit.resolve(data_length(data), flag)
        if n != 0:
            _run_under_precision(
                engine, with_batched_fetch(data) if self.cfg.batched_fetch else data, n, self.precision
            )
        return engine.state

    # ------------------------------------------------------------------ the run's record (ignite_speed.report / .plot)
    def report(self, monitor: str | None = None, mode: str | None = None) -> RunReport:
        """The run's record as plain data (:class:`~ignite_speed.report.RunReport`): stop reason, counts, ``profile``,
        every validation run's monitored metric (default: early stopping's), the best, a fast_dev_run's ``projection``."""
        return run_report(self.loop, monitor, mode, projection=self.projection)

    def advise(self, monitor: str | None = None, mode: str | None = None) -> Advice:
        """Ranked findings worth changing to make the run faster (:func:`~ignite_speed.report.advice.advise`)."""
        return _advise(self.report(monitor, mode), run_facts(self))

    def plot(self, path: Any, x: str = "step", monitor: str | None = None, mode: str | None = None) -> Any:
        """Draw the monitored metric per validation run against ``x`` (``"step"`` or ``"time"``) to ``path`` (any format
        matplotlib writes), with the best point, the thresholds, the stop, ``max_time`` and the profile; returns ``path``."""
        from .report.plot import plot_report

        return plot_report(self.report(monitor, mode), path, x=x)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """All speed-up state as plain data (``torch.load(weights_only=True)`` can read it back): the loop's
        (:meth:`TrainingLoop.state_dict <ignite_speed.loop.TrainingLoop.state_dict>`: its own part and each
        handler's) and the precision's."""
        state = self.loop.state_dict()
        precision = self.precision
        if precision is not None and hasattr(precision, "state_dict"):
            state["precision"] = precision.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output. The next ``trainer.run()`` continues exactly where the saved
        run stood; load the trainer's state too (``Checkpoint.load_objects`` with both)."""
        self.loop.load_state_dict(state)
        precision = self.precision
        if precision is not None and state.get("precision") is not None:
            precision.load_state_dict(state["precision"])


def _split_training(cfg: SpeedConfig) -> bool:
    """Time training batch by batch: ``profile=True``, and a ``fast_dev_run`` (its projection needs the split)."""
    return bool(cfg.profile or cfg.fast_dev_run)


def _advise(report: RunReport, facts: RunFacts) -> Advice:
    from .report.advice import advise

    return advise(report, facts)


def run_facts(speedups: Speedups) -> RunFacts:
    """What :meth:`Speedups.advise` knows of a run besides its report: the loader, the config, the device."""
    import torch

    from .data.batched_fetch import batched_fetch_refusal
    from .report.advice import RunFacts, cpu_count

    data, cfg, lim = speedups.loop.plan.train_data, speedups.cfg, speedups.limits
    is_loader = isinstance(data, torch.utils.data.DataLoader)
    schedule = speedups.handlers.validation
    on_gpu = torch.cuda.is_available() and (
        speedups.model is None or any(p.is_cuda for p in speedups.model.parameters())
    )
    es = speedups.early_stopping
    return RunFacts(
        loader_kind="DataLoader" if is_loader else type(data).__name__,
        num_workers=data.num_workers if is_loader else None,
        pin_memory=data.pin_memory if is_loader else None,
        persistent_workers=data.persistent_workers if is_loader else None,
        batched_fetch=cfg.batched_fetch,
        batched_fetch_refusal=batched_fetch_refusal(data) if is_loader and cfg.batched_fetch else None,
        cpus=cpu_count(),
        val_check_interval=_flag_text(lim.val_check_interval),
        check_val_every_n_epoch=lim.check_val_every_n_epoch,
        limit_val_batches=_flag_text(lim.limit_val_batches),
        val_batches=None if schedule is None else schedule.batches,
        num_sanity_val_steps=lim.num_sanity_val_steps,
        precision=str(cfg.precision),
        on_gpu=on_gpu,
        bf16=on_gpu and torch.cuda.is_bf16_supported(),
        early_stopping=None if es is None else int(es.patience),
        in_memory=_in_memory(data),
        step_returns_number=_is_number(getattr(speedups.trainer.state, "output", None)),
    )


def _in_memory(data: Any) -> bool:
    """The training data is held in memory: a TensorDataset's loader, a list or tuple, a tensor."""
    import torch

    if isinstance(data, torch.utils.data.DataLoader):
        return isinstance(data.dataset, torch.utils.data.TensorDataset)
    return isinstance(data, (list, tuple, torch.Tensor))


def _is_number(output: Any) -> bool:
    """A Python number, or a dict/tuple/list holding one (what ``.item()`` returns)."""
    if isinstance(output, dict):
        return any(_is_number(v) for v in output.values())
    if isinstance(output, (list, tuple)):
        return any(_is_number(v) for v in output)
    return isinstance(output, (int, float)) and not isinstance(output, bool)


def _project_fast_dev_run(speedups: Speedups) -> None:
    """After a ``fast_dev_run``: project the full run from its measurements and tell it (rank 0)."""
    loop = speedups.loop
    if not speedups.limits.fast_dev_run or loop.timer.batches == 0:
        return
    from .report.profile import run_profile
    from .report.projection import project

    profile = run_profile(loop)
    run = full_run_plan(speedups, profile.batch_seconds or 0.0)
    if run is None:
        return
    warm: dict[str, Any] = _rehearse(speedups) if profile.fine else {}
    schedule = speedups.handlers.validation
    measured = profile.val_runs * (schedule.batches or 0) if schedule is not None else 0
    if schedule is not None and schedule.step_seconds is not None:
        warm["val_steps_measured"] = schedule.step_seconds
    speedups.projection = project(profile, measured, run, **warm)
    if loop.plan.is_rank_zero:
        _tell_fast_dev_run(speedups.limits.fast_dev_run, loop.plan.debug_limited, speedups.projection)


def _rehearse(speedups: Speedups) -> dict[str, list[float] | None]:
    """The seconds of each call of rehearsals after the run: ``create_trainer``'s step on the run's last
    batch, warm fetches of the training data, the evaluator's step on its last batch (``None`` where not
    rehearsed: another step, data that cannot be read again, no model to put back, or several processes,
    whose ranks would each rehearse its own number of all-reduces)."""
    from .step.rehearsal import ignite_step_rehearsal, time_evaluator_step, time_fetches

    trainer, time_source = speedups.trainer, speedups.loop.timer.time_source
    if get_world_size() > 1 or trainer.state is None:
        return {}
    parts = TrainerParts.find(trainer)
    warm: dict[str, list[float] | None] = {}
    rehearsal = parts.rehearsal if parts is not None and parts.rehearsal is not None else ignite_step_rehearsal(trainer)
    if rehearsal is not None and trainer.state.batch is not None:
        batch = trainer.state.batch
        warm["warm_step"] = _warned_if_raises("the step", lambda: rehearsal.time(trainer, batch, time_source))
    warm["warm_fetch"] = _warned_if_raises(
        "the data's fetch", lambda: time_fetches(trainer.state.dataloader, time_source)
    )
    evaluator, schedule = speedups.evaluator, speedups.handlers.validation
    if evaluator is not None and schedule is not None:
        model = schedule.trained_model()  # (the model whose modes validation gives back: the same one)
        warm["warm_val_step"] = _warned_if_raises(
            "the validation step", lambda: time_evaluator_step(evaluator, model, time_source)
        )
    return warm


def _warned_if_raises(what: str, rehearse: Callable[[], list[float] | None]) -> list[float] | None:
    try:
        return rehearse()
    except Exception as exc:  # (the run itself succeeded: its projection falls back on its own batches)
        warnings.warn(
            f"fast_dev_run: the rehearsal of {what} that times it warm raised {type(exc).__name__}: {exc}; the "
            f"projection uses the batches of the run (what the rehearsal changed is put back)",
            UserWarning,
            stacklevel=3,
        )
        return None


def _tell_fast_dev_run(n: int, limited: list[str], projection: Projection | None) -> None:
    """The debug run's summary on standard error: an app that never configured logging sees it too (an INFO
    record of the package logger would be dropped there), and a debug run is one the user watches."""
    import sys

    lines = [
        f"ignite-speed: fast_dev_run={n} done ({n} training batch{'es' if n > 1 else ''}, every engine run "
        f"limited to {n} batch{'es' if n > 1 else ''})"
    ]
    if limited:
        lines.append(
            f"  other engines' runs limited to {n} batch{'es' if n > 1 else ''}: runs started by {', '.join(limited)}"
        )
    if projection is not None:
        lines.append(f"  {projection}")
    print("\n".join(lines), file=sys.stderr)


def full_run_plan(speedups: Speedups, batch_seconds: float) -> FullRun | None:
    """The full run that the config (without ``fast_dev_run``) plans for the data of the last run (``None``:
    unknown, with a loader of no length or a run bounded by ``max_time`` alone)."""
    from .report.projection import FullRun

    full, loop = speedups.cfg.replace(fast_dev_run=False).effective(), speedups.loop
    per_epoch = full.limit_train_batches.resolve(loop.plan.data_batches, "limit_train_batches")
    if not per_epoch:
        return None
    total = math.inf if full.max_epochs.unlimited else per_epoch * int(full.max_epochs)
    if not full.max_steps.unlimited:
        accumulate = speedups.cfg.accumulate_grad_batches
        epochs, steps = divmod(int(full.max_steps), math.ceil(per_epoch / accumulate))
        total = min(total, epochs * per_epoch + steps * accumulate)
    if math.isinf(total):
        return None
    batches = int(total)
    val_runs, val_batches, sanity = _planned_validation(speedups, full, per_epoch, batches, batch_seconds)
    max_time = full.max_time.total_seconds() if full.max_time is not None else None
    reserve = speedups.cfg.max_time_reserve
    return FullRun(
        math.ceil(batches / per_epoch),
        per_epoch,
        batches,
        val_runs,
        val_batches,
        sanity,
        max_time,
        reserve.total_seconds() if reserve is not None else 0.0,
        speedups.cfg.max_time_mode,
    )


def _planned_validation(
    speedups: Speedups, full: Any, per_epoch: int, batches: int, batch_seconds: float
) -> tuple[int, int, int]:
    """Validation runs, batches per run and sanity-check batches of the full run."""
    from .handlers.validation import resolve_val_schedule

    schedule = speedups.handlers.validation
    if schedule is None or not schedule.configured:
        return 0, 0, 0
    val_batches = full.limit_val_batches.resolve(data_length(speedups.val_data), "limit_val_batches") or 0
    plan = resolve_val_schedule(
        full.val_check_interval,
        full.check_val_every_n_epoch,
        train_batches=per_epoch,
        train_limit=full.limit_train_batches,
        enabled=val_batches > 0,
    )
    if not plan.enabled:
        return 0, 0, 0
    steps = full.num_sanity_val_steps
    sanity = val_batches if steps == -1 else min(steps, val_batches)
    if plan.interval_seconds is not None:  # on a clock: at the measured pace
        return int(batches * batch_seconds // plan.interval_seconds), val_batches, sanity
    runs = 0
    for epoch in range(math.ceil(batches / per_epoch)):  # the schedule's own count, epoch by epoch
        in_epoch = min(per_epoch, batches - epoch * per_epoch)
        runs += (
            plan.count_due(
                Progress(epoch=epoch, epochs_done=epoch, total_batches=epoch * per_epoch), in_epoch, per_epoch
            )
            or 0
        )
    return runs, val_batches, sanity


def _flag_text(value: Any) -> Any:
    """A flag's value as the user would write it (a ``BatchLimit``'s number, a duration's text)."""
    if isinstance(value, datetime.timedelta):
        return str(value)
    return getattr(value, "value", value)


def _warn_step_flags_unapplied(cfg: SpeedConfig) -> None:
    """Flags of the training step given to attach_speedups for a trainer that create_trainer did not make:
    attach_speedups cannot apply them (the user's process function does the step)."""
    unapplied = [
        f"{name}={getattr(cfg, name)!r}"
        for name in ("precision", "gradient_clip_val")
        if name in cfg.explicit and getattr(cfg, name) not in ("32-true", None, 0, 0.0)
    ]
    if unapplied:
        warnings.warn(
            f"{', '.join(unapplied)} given to attach_speedups is not applied: this trainer was not made "
            f"by ignite_speed.create_trainer, whose step applies it (or use an ignite_speed.Precision in your "
            f"own step and pass it as attach_speedups(..., precision=...)); training runs as your process "
            f"function does",
            UserWarning,
            stacklevel=4,
        )
    if cfg.accumulate_grad_batches > 1:
        warnings.warn(
            f"accumulate_grad_batches={cfg.accumulate_grad_batches} given to attach_speedups for a trainer "
            f"not made by ignite_speed.create_trainer: ignite-speed counts one optimizer step per "
            f"{cfg.accumulate_grad_batches} batches (max_steps, min_steps, global_step), so your process "
            f"function must step the optimizer that way too (create_trainer does)",
            UserWarning,
            stacklevel=4,
        )


def _pruning_handler(cfg: SpeedConfig, evaluator: Engine | None) -> LoopHandler | None:
    """The ``pruning`` flag's handler (none under ``fast_dev_run``: a smoke test is no trial's result). The search
    engine's adapter is imported only here."""
    flag = cfg.pruning
    if flag is None or cfg.fast_dev_run:
        return None
    if evaluator is None:
        raise ValueError(
            f"pruning={{'monitor': {flag['monitor']!r}, ...}} reports the validation runs, but "
            f"attach_speedups got no evaluator; accepted: pass the evaluator and val_data, or "
            f"pruning=None"
        )
    if flag["trial"] == RAY_TUNE:
        from .search.ray_tune import RayTunePruning

        return RayTunePruning(flag["monitor"], to_save=flag.get("to_save") or {}, unit=flag["unit"])
    from .search.optuna_trial import OptunaPruning

    return OptunaPruning(flag["trial"], flag["monitor"], unit=flag["unit"])


def attach_speedups(
    trainer: Engine,
    evaluator: Engine | None = None,
    cfg: SpeedConfig | Mapping[str, Any] | argparse.Namespace | None = None,
    *,
    val_data: Any = None,
    model: torch.nn.Module | None = None,
    precision: Precision | None = None,
    **overrides: Any,
) -> Speedups:
    """Attach Lightning-style speed controls to ``trainer`` (and its ``evaluator``).

    Args:
        trainer: the user's training :class:`~ignite.engine.Engine`; keep calling ``trainer.run(data)``.
        evaluator: the validation engine, run by the validation schedule on ``val_data``.
        cfg: a mapping, :class:`~ignite_speed.config.SpeedConfig`, ``argparse.Namespace``, dataclass or
            OmegaConf ``DictConfig`` of flags (Lightning 2.x names).
        val_data: the validation loader.
        model: the model (needed by ``early_stopping={"restore_best_weights": True}``).
        precision: a :class:`~ignite_speed.step.Precision` used inside a custom step, so that its
            state is saved with the speedups (``create_trainer`` registers its own).
        **overrides: flags that override ``cfg``.

    Returns:
        the :class:`Speedups` object: ``stop_reason``, ``stop_message``, ``progress``, ``test()``,
        ``request_stop()``, ``end_epoch()``, ``state_dict()`` / ``load_state_dict()``.
    """
    config = SpeedConfig.from_any(cfg, **overrides)
    from .distributed._guard import warn_if_not_launched  # (a small module: no optional engine loads)

    warn_if_not_launched(config, "attach_speedups")
    if evaluator is not None and not isinstance(evaluator, Engine):
        raise TypeError(f"evaluator={type(evaluator).__name__} is not an ignite Engine; accepted: an Engine or None")
    if not isinstance(trainer, Engine):
        raise TypeError(f"trainer={type(trainer).__name__} is not an ignite Engine")
    if val_data is not None and evaluator is None:
        raise ValueError("val_data was given without an evaluator; pass the evaluator Engine that runs validation")
    pruning = _pruning_handler(config, evaluator)  # (refused before anything is attached)
    speedups = Speedups(trainer, evaluator, config, val_data=val_data, model=model, precision=precision)
    from .step.evaluation import apply_precision

    applied = None
    try:
        # validation runs under the training precision, as Lightning's
        applied = apply_precision(evaluator, speedups.precision)
        if pruning is not None:
            pruning.attach(trainer)  # (TrainingLoop.of(trainer).handlers has it; StopController says PRUNED)
    except BaseException:  # refused: the trainer and evaluator as they were, so that a corrected call can attach
        if applied is not None:
            applied.detach()
        speedups.loop.parts.speedups = None
        speedups.loop.detach()
        raise
    return speedups


def _run_under_precision(engine: Engine, data: Any, n: int | None, precision: Any) -> None:
    """``speedups.test``/``predict``: the engine runs under the training precision, as Lightning's test and predict
    steps (given back afterwards)."""
    from .step.evaluation import apply_precision

    with apply_precision(engine, precision):
        run_evaluator(engine, data, n)
