"""``SpeedConfig``: every flag of ignite-speed, parsed and validated once.

Flag names and defaults follow PyTorch Lightning 2.x, so a Lightning config migrates unchanged;
Lightning 1.x spellings are mapped with a warning (:mod:`.legacy`). The rest of the package only ever
sees the typed values stored here (``timedelta``, :class:`~ignite_speed.config.BatchLimit`, canonical
strings). Each flag is checked by its validator in :mod:`.flags`, :mod:`.precision` or :mod:`.devices`,
the same ones the standalone handlers use.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .checks import check_bool
from .devices import ACCELERATORS, STRATEGIES, validate_device_flags
from .durations import parse_batch_limit
from .early_stopping import EarlyStoppingOptions, early_stopping_flag_options
from .effective import (
    EffectiveLimits,
    fast_dev_run_limit,
    resolve_max_epochs,
)
from .flags import (
    BATCH_LIMIT_FLAGS,
    DEFAULT_PREEMPTION_SIGNALS,
    MaxTimeFlags,
    validate_allow_resume_changes,
    validate_autoresume,
    validate_ckpt_path,
    validate_fast_dev_run,
    validate_loop_limits,
    validate_max_time_flags,
    validate_overfit_batches,
    validate_preemption_signals,
    validate_profile,
    validate_validation_schedule,
)
from .legacy import map_legacy, unknown_flags_message
from .limits import EPOCHS, STEPS, Limit
from .precision import (
    PRECISION_VALUES,
    parse_precision,
    validate_accumulate_grad_batches,
    validate_amp_flags,
    validate_gradient_clip_algorithm,
    validate_gradient_clip_val,
)
from .pruning import validate_pruning_flag
from .slices import LoopLimitsFlags, TrainBatchFlags, ValidationFlags
from .sources import flags_from_source

# EffectiveLimits and the constants stay importable from here, where they were defined before the split
__all__ = ["SpeedConfig", "EffectiveLimits", "PRECISION_VALUES", "STRATEGIES", "ACCELERATORS"]


@dataclass(frozen=True)
class SpeedConfig:
    """One typed, validated config for every ignite-speed flag (Lightning 2.x names and defaults).

    Build it from keyword arguments, or with :meth:`from_any` from a mapping, another ``SpeedConfig``,
    an ``argparse.Namespace``, a dataclass, or an OmegaConf ``DictConfig``. Values are parsed on
    construction: durations become :class:`datetime.timedelta`, batch limits
    :class:`~ignite_speed.config.BatchLimit`, precision a canonical string. Bad values raise
    ``ValueError``/``TypeError`` naming the flag, the value and what is accepted.
    """

    # loop limits
    max_epochs: int | None = None
    min_epochs: int | None = None
    max_steps: int = -1
    min_steps: int | None = None
    max_time: Any = None  # -> datetime.timedelta | None
    max_time_mode: str = "step"  # "step", "epoch" or "fit" (see TimeBudget)
    max_time_reserve: Any = None  # -> datetime.timedelta | None: held back from max_time for the final save/test
    # data limits
    limit_train_batches: Any = None  # -> BatchLimit
    limit_val_batches: Any = None
    limit_test_batches: Any = None
    limit_predict_batches: Any = None
    overfit_batches: Any = 0.0
    fast_dev_run: Any = False  # -> int (0 = off)
    batched_fetch: bool = True  # read TensorDataset batches with one index per tensor (same batches)
    # validation scheduling
    val_check_interval: Any = None  # -> BatchLimit | timedelta
    check_val_every_n_epoch: int | None = 1
    num_sanity_val_steps: int = 2
    val_time_fraction: float | None = None  # ignite-speed's own: the most of the training clock validation takes
    # stop sources
    early_stopping: Mapping[str, Any] | None = None
    terminate_on_nan: bool = False
    preemption_signals: Any = DEFAULT_PREEMPTION_SIGNALS  # -> tuple of names; () turns PreemptionGuard off
    pruning: Mapping[str, Any] | None = None  # report to a search's trial, stop when pruned (handlers.Pruning)
    autoresume: bool = False  # continue from the newest checkpoint of the trainer's Checkpoint (AutoResume)
    profile: bool = False  # split training time into data, step and handlers (speedups.report().profile)
    allow_resume_changes: bool = False  # resume under another setup (world size, ...) at the next epoch boundary
    # precision
    precision: Any = "32-true"
    amp_backend: str = "native"
    amp_level: str | None = None
    accumulate_grad_batches: int = 1
    gradient_clip_val: float | None = None
    gradient_clip_algorithm: str = "norm"
    # devices and distribution
    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    strategy: Any = "auto"
    node_rank: int | None = None
    master_addr: str | None = None
    master_port: int | None = None
    deepspeed_config: Any = None
    # which flags the user set explicitly (filled in by the constructor; not a flag)
    explicit: frozenset = field(default=frozenset(), compare=False, repr=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def flag_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.name != "explicit"]

    @classmethod
    def from_any(cls, source: Any = None, **overrides: Any) -> SpeedConfig:
        """Build a config from ``source`` (None, mapping, ``SpeedConfig``, ``argparse.Namespace``,
        dataclass instance or OmegaConf ``DictConfig``) plus keyword ``overrides``."""
        if isinstance(source, SpeedConfig):  # the flags its user set, so that defaults stay unset
            flags = {name: getattr(source, name) for name in source.explicit}
        else:
            flags = flags_from_source(source)
        return cls(**{**flags, **overrides})

    def __init__(self, **flags: Any) -> None:
        known = self.flag_names()
        flags = _map_ckpt_path(map_legacy(dict(flags)))
        unknown = [key for key in flags if key not in known]
        if unknown:  # all of them in one error (a migrated Trainer(...) call often has several)
            raise ValueError(unknown_flags_message(unknown, known))
        defaults = {f.name: f.default for f in dataclasses.fields(type(self)) if f.name != "explicit"}
        values = {**defaults, **flags}
        for name, value in values.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "explicit", frozenset(flags))
        self._validate()

    def replace(self, **overrides: Any) -> SpeedConfig:
        """A copy with some flags changed (validated again)."""
        return SpeedConfig.from_any(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """The flags the user set, as given after parsing (plain data where possible)."""
        return {name: getattr(self, name) for name in self.flag_names()}

    # ------------------------------------------------------------------ validation
    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def _validate(self) -> None:
        """Parse every flag in place. The order is part of the behaviour: of several bad flags, the first
        one checked is reported."""
        self._validate_loop_flags()
        self._validate_data_flags()
        self._validate_schedule_flags()
        self._validate_stop_flags()
        # called here rather than in a helper: its legacy-spelling warning's stacklevel counts on this depth
        self._set("precision", parse_precision(self.precision))
        self._validate_optimizer_step_flags()
        self._validate_device_flags()

    def _validate_loop_flags(self) -> None:
        validate_loop_limits(self.max_epochs, self.min_epochs, self.max_steps, self.min_steps)  # kept as given
        max_time = validate_max_time_flags(self.max_time, self.max_time_mode, self.max_time_reserve)
        self._set("max_time", max_time.max_time)
        self._set("max_time_reserve", max_time.reserve)

    def _validate_data_flags(self) -> None:
        for name in BATCH_LIMIT_FLAGS:
            self._set(name, parse_batch_limit(getattr(self, name), name))
        self._set("overfit_batches", validate_overfit_batches(self.overfit_batches))
        self._set("fast_dev_run", validate_fast_dev_run(self.fast_dev_run))

    def _validate_schedule_flags(self) -> None:
        # limit_val_batches is parsed already (with the other limits): the family returns it unchanged
        schedule = validate_validation_schedule(
            self.val_check_interval,
            self.check_val_every_n_epoch,
            self.num_sanity_val_steps,
            self.limit_val_batches,
            self.val_time_fraction,
        )
        self._set("val_check_interval", schedule.val_check_interval)
        self._set("val_time_fraction", schedule.val_time_fraction)

    def _validate_stop_flags(self) -> None:
        es = early_stopping_flag_options(self.early_stopping)  # the flag's one validation
        self._set("early_stopping", None if es is None else es.kwargs(self.early_stopping))
        self._set("_early_stopping_options", es)
        check_bool(self.terminate_on_nan, "terminate_on_nan")
        self._set("preemption_signals", validate_preemption_signals(self.preemption_signals))
        validate_autoresume(self.autoresume)
        self._set("pruning", validate_pruning_flag(self.pruning))
        validate_allow_resume_changes(self.allow_resume_changes)
        check_bool(self.batched_fetch, "batched_fetch")
        validate_profile(self.profile)

    def _validate_optimizer_step_flags(self) -> None:
        validate_amp_flags(self.amp_backend, self.amp_level, self.precision)
        validate_accumulate_grad_batches(self.accumulate_grad_batches)
        self._set("gradient_clip_val", validate_gradient_clip_val(self.gradient_clip_val))
        self._set("gradient_clip_algorithm", validate_gradient_clip_algorithm(self.gradient_clip_algorithm))

    def _validate_device_flags(self) -> None:
        devices = validate_device_flags(
            self.accelerator,
            self.devices,
            self.num_nodes,
            self.strategy,
            self.node_rank,
            self.master_addr,
            self.master_port,
            self.deepspeed_config,
        )
        self._set("accelerator", devices.accelerator)
        self._set("devices", devices.devices)
        self._set("strategy", devices.strategy)

    @property
    def early_stopping_options(self) -> EarlyStoppingOptions | None:
        """The ``early_stopping`` flag as :class:`~ignite_speed.handlers.EarlyStopping`'s typed options
        (``None``: off), built when the flag was validated."""
        options: EarlyStoppingOptions | None = self.__dict__.get("_early_stopping_options")
        return options

    # ------------------------------------------------------------------ the handlers' slices
    def loop_limits_flags(self) -> LoopLimitsFlags:
        """The slice :class:`~ignite_speed.handlers.LoopLimits` is built from."""
        return LoopLimitsFlags(self.max_epochs, self.min_epochs, self.max_steps, self.min_steps, self.fast_dev_run)

    def max_time_flags(self) -> MaxTimeFlags | None:
        """The slice :class:`~ignite_speed.handlers.TimeBudget` is built from (``None``: no ``max_time``)."""
        return None if self.max_time is None else MaxTimeFlags(self.max_time, self.max_time_mode, self.max_time_reserve)

    def train_batch_flags(self) -> TrainBatchFlags:
        """The slice :class:`~ignite_speed.handlers.TrainBatchLimit` is built from."""
        return TrainBatchFlags(self.limit_train_batches, self.overfit_batches, self.fast_dev_run)

    def validation_flags(self) -> ValidationFlags:
        """The slice :class:`~ignite_speed.handlers.ValidationSchedule` is built from."""
        return ValidationFlags(
            self.val_check_interval,
            self.check_val_every_n_epoch,
            self.num_sanity_val_steps,
            self.limit_val_batches,
            self.val_time_fraction,
            self.overfit_batches,
            self.fast_dev_run,
        )

    # ------------------------------------------------------------------ resolution
    def effective(self) -> EffectiveLimits:
        """Apply ``fast_dev_run`` and ``overfit_batches`` overrides and Lightning's defaults (the slices' rules)."""
        fast_dev_run: int = self.fast_dev_run
        train = self.train_batch_flags()
        val = self.validation_flags().resolved()
        loop = self.loop_limits_flags().resolved()
        test, predict = self.limit_test_batches, self.limit_predict_batches
        if fast_dev_run:  # n batches of every loader
            test = predict = fast_dev_run_limit(fast_dev_run)
            max_epochs, max_epochs_defaulted = 1, False
        else:
            max_epochs, max_epochs_defaulted = resolve_max_epochs(
                loop.max_epochs, loop.max_steps, self.max_time is not None
            )
        return EffectiveLimits(
            max_epochs=Limit(max_epochs, EPOCHS),
            max_steps=Limit(loop.max_steps, STEPS),
            min_epochs=loop.min_epochs,
            min_steps=loop.min_steps,
            max_time=self.max_time,
            limit_train_batches=train.limit,
            limit_val_batches=val.limit_val_batches,
            limit_test_batches=test,
            limit_predict_batches=predict,
            val_check_interval=val.val_check_interval,
            check_val_every_n_epoch=val.check_val_every_n_epoch,
            num_sanity_val_steps=val.num_sanity_val_steps,
            overfit=train.overfit,
            fast_dev_run=fast_dev_run,
            early_stopping_enabled=self.early_stopping is not None and not fast_dev_run,
            max_epochs_defaulted=max_epochs_defaulted,
            val_time_fraction=val.val_time_fraction,
        )


def _map_ckpt_path(flags: dict[str, Any]) -> dict[str, Any]:
    """Lightning's ``trainer.fit(..., ckpt_path="last")`` is ``autoresume=True`` (``None`` is dropped; other
    values are refused by :func:`~ignite_speed.config.flags.validate_ckpt_path` with the fix)."""
    if "ckpt_path" in flags:
        value = flags.pop("ckpt_path")
        if validate_ckpt_path(value):
            if flags.get("autoresume", True) is not True:
                raise ValueError(
                    f"ckpt_path='last' (autoresume=True) conflicts with autoresume="
                    f"{flags['autoresume']!r}; give one of them"
                )
            flags["autoresume"] = True
    return flags
