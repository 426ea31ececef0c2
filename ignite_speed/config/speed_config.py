"""``SpeedConfig``: every flag of ignite-speed, parsed and validated once.

Flag names and defaults follow PyTorch Lightning 2.x, so a Lightning config migrates unchanged;
Lightning 1.x spellings are mapped with a warning. The rest of the package only ever sees the typed
values stored here (``timedelta``, :class:`~ignite_speed.config.BatchLimit`, canonical strings).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import difflib
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .durations import BatchLimit, format_value, parse_batch_limit, parse_duration

__all__ = ["SpeedConfig", "EffectiveLimits", "PRECISION_VALUES", "STRATEGIES", "ACCELERATORS"]

UNLIMITED = -1

PRECISION_VALUES = ("64-true", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true")
_PRECISION_ALIASES: dict[Any, str] = {64: "64-true", "64": "64-true", 32: "32-true", "32": "32-true"}
_PRECISION_LEGACY: dict[Any, str] = {16: "16-mixed", "16": "16-mixed", "bf16": "bf16-mixed"}

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu", "xla")
STRATEGIES = (
    "auto", "single_device", "ddp", "ddp_spawn", "ddp_fork", "ddp_notebook",
    "ddp_find_unused_parameters_true", "ddp_find_unused_parameters_false",
    "zero", "fsdp", "fsdp_cpu_offload", "ddp_sharded",
    "deepspeed", "deepspeed_stage_1", "deepspeed_stage_2", "deepspeed_stage_2_offload",
    "deepspeed_stage_3", "deepspeed_stage_3_offload",
    "xla", "single_xla", "single_tpu",
)
_GPU_ONLY_STRATEGIES = ("fsdp_cpu_offload",)

# Lightning 1.x spellings of the backend passed through ``accelerator`` / ``distributed_backend``.
_LEGACY_BACKENDS = {"ddp": "ddp", "ddp_spawn": "ddp_spawn", "ddp_cpu": "ddp", "ddp_sharded": "ddp_sharded",
                    "ddp_sharded_spawn": "ddp_sharded", "deepspeed": "deepspeed", "fsdp": "fsdp"}
_REMOVED_BACKENDS = ("dp", "ddp2", "horovod")


def _type_name(value: Any) -> str:
    return type(value).__name__


def _check_int(value: Any, flag: str, *, minimum: int | None = None, allow_none: bool = False,
               accepted: str | None = None) -> int | None:
    accepted = accepted or (f"an int >= {minimum}" if minimum is not None else "an int")
    if value is None:
        if allow_none:
            return None
        raise TypeError(f"{flag}=None is not allowed; accepted: {accepted}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{flag}={format_value(value)} has type {_type_name(value)}; accepted: {accepted}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{flag}={value!r} is out of range; accepted: {accepted}")
    return value


def _check_bool(value: Any, flag: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{flag}={format_value(value)} has type {_type_name(value)}; accepted: True or False")
    return value


def parse_precision(value: Any) -> str:
    """Canonical Lightning 2.x precision string for ``value`` (legacy aliases mapped, with a warning)."""
    flag = "precision"
    if value is None:
        return "32-true"
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        if isinstance(value, float) and value.is_integer() and int(value) in (16, 32, 64):
            raise TypeError(
                f"precision={value!r} is a float; write it as the int {int(value)} or as the string "
                f'"{int(value)}-..." form; accepted: {list(PRECISION_VALUES)} or the legacy 16, 32, 64, "bf16"'
            )
        raise TypeError(f"precision={format_value(value)} has type {_type_name(value)}; "
                        f"accepted: {list(PRECISION_VALUES)} or the legacy 16, 32, 64, \"16\", \"32\", \"64\", \"bf16\"")
    if value in PRECISION_VALUES:
        return str(value)
    if value in _PRECISION_ALIASES:
        return _PRECISION_ALIASES[value]
    if value in _PRECISION_LEGACY:
        canonical = _PRECISION_LEGACY[value]
        warnings.warn(f"precision={value!r} is a legacy spelling; using precision={canonical!r}", UserWarning,
                      stacklevel=4)
        return canonical
    raise ValueError(f"{flag}={value!r} is not a known precision; accepted: {list(PRECISION_VALUES)} "
                     f"or the legacy 16, 32, 64, \"16\", \"32\", \"64\", \"bf16\"")


def parse_devices(value: Any) -> int | list[int] | str:
    """``devices``: ``"auto"``, an int >= 1, ``-1`` (all), a list of indices, or a string of them."""
    flag = "devices"
    accepted = '"auto", an int >= 1, -1 (all GPUs), a list of device indices, or a string such as "2" or "0,1"'
    if value is None or value == "auto":
        return "auto"
    if isinstance(value, bool):
        raise TypeError(f"{flag}={value!r} has type bool; accepted: {accepted}")
    if isinstance(value, str):
        text = value.strip()
        try:
            if "," in text:
                return parse_devices([int(p) for p in text.split(",") if p.strip()])
            return parse_devices(int(text))
        except ValueError:
            raise ValueError(f"{flag}={value!r} is not understood; accepted: {accepted}") from None
    if isinstance(value, int):
        if value == 0:
            raise ValueError(f"{flag}=0 selects no device; accepted: {accepted}")
        if value < -1:
            raise ValueError(f"{flag}={value!r} is out of range; accepted: {accepted}")
        return value
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"{flag}={value!r} selects no device; accepted: {accepted}")
        for idx in value:
            if isinstance(idx, bool) or not isinstance(idx, int) or idx < 0:
                raise ValueError(f"{flag}={format_value(value)} holds {idx!r}, not a device index >= 0")
        if len(set(value)) != len(value):
            raise ValueError(f"{flag}={list(value)!r} names a device twice")
        return list(value)
    raise TypeError(f"{flag}={format_value(value)} has type {_type_name(value)}; accepted: {accepted}")


# Lightning 2.6 ``Trainer.__init__`` flags that ignite-speed does not handle (it handles the loop-control,
# data-limit, precision and distribution flags), with what to use in Ignite instead. ``plugins`` is here
# for its values other than the 1.x strategy names, which are mapped (see _map_legacy).
_LIGHTNING_OUT_OF_SCOPE: dict[str, str] = {
    "logger": "attach an Ignite logger handler (ignite.handlers TensorboardLogger, WandBLogger, MLflowLogger, "
              "...) to the trainer and evaluator",
    "callbacks": "attach Ignite event handlers (trainer.add_event_handler); early stopping is the early_stopping "
                 "flag, the Timer is max_time, ModelCheckpoint is ignite.handlers.Checkpoint",
    "log_every_n_steps": "attach your logging handler to Events.ITERATION_COMPLETED(every=n)",
    "enable_checkpointing": "attach ignite.handlers.Checkpoint (ignite_speed.distributed.checkpoint_objects "
                            "gives its to_save entries for any strategy)",
    "enable_progress_bar": "attach ignite.handlers.ProgressBar() to the trainer",
    "enable_model_summary": "print(model), or a summary tool such as torchinfo",
    "deterministic": "call torch.use_deterministic_algorithms(True) and seed with ignite.utils.manual_seed",
    "benchmark": "set torch.backends.cudnn.benchmark yourself",
    "inference_mode": "run your evaluator's step under torch.inference_mode() or torch.no_grad()",
    "use_distributed_sampler": "shard the data with ignite_speed.distributed.prepare_dataloader (or a "
                               "DistributedSampler of your own)",
    "profiler": "attach ignite.handlers.BasicTimeProfiler or HandlersTimeProfiler, or use torch.profiler",
    "detect_anomaly": "call torch.autograd.set_detect_anomaly(True)",
    "barebones": "ignite-speed adds no logging, checkpointing or progress bar, so there is nothing to turn off",
    "plugins": "only the Lightning 1.x strategy names 'ddp_sharded', 'deepspeed' and 'fsdp' are understood "
               "(mapped to strategy=); precision is the precision flag, other plugins have no counterpart",
    "sync_batchnorm": "convert the model with torch.nn.SyncBatchNorm.convert_sync_batchnorm(model) before "
                      "wrapping it",
    "reload_dataloaders_every_n_epochs": "call trainer.set_data(new_loader) in an "
                                         "Events.EPOCH_STARTED(every=n) handler",
    "default_root_dir": "give the directory to your Checkpoint / logger handlers",
    "enable_autolog_hparams": "log the hyperparameters with your logger handler",
    "model_registry": "upload your checkpoints with your own code",
}


def _unknown_flag_message(key: str, known: list[str]) -> str:
    if key in _LIGHTNING_OUT_OF_SCOPE:
        return (f"{key!r} is a Lightning Trainer flag outside ignite-speed's scope (ignite-speed handles the loop "
                f"limits, validation scheduling, data limits, early stopping, precision and distribution flags); "
                f"in Ignite: {_LIGHTNING_OUT_OF_SCOPE[key]}")
    return f"unknown ignite-speed flag {key!r}{_did_you_mean(key, known)} (known flags: {', '.join(known)})"


def _did_you_mean(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


@dataclass(frozen=True)
class EffectiveLimits:
    """The limits that govern a run once ``fast_dev_run`` and ``overfit_batches`` are applied."""

    max_epochs: int  # -1 = unlimited
    max_steps: int  # -1 = unlimited
    min_epochs: int
    min_steps: int
    max_time: datetime.timedelta | None
    limit_train_batches: BatchLimit
    limit_val_batches: BatchLimit
    limit_test_batches: BatchLimit
    limit_predict_batches: BatchLimit
    val_check_interval: BatchLimit | datetime.timedelta
    check_val_every_n_epoch: int | None
    num_sanity_val_steps: int  # -1 = all
    overfit: bool
    fast_dev_run: int  # 0 = off
    early_stopping_enabled: bool
    max_epochs_defaulted: bool  # True when 1000 was chosen because nothing bounds the run


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
    # stop sources
    early_stopping: Mapping[str, Any] | None = None
    terminate_on_nan: bool = False
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
        return cls(**{**_to_mapping(source), **overrides})

    def __init__(self, **flags: Any) -> None:
        known = self.flag_names()
        flags = _map_legacy(dict(flags), known)
        for key in flags:
            if key not in known:
                raise ValueError(_unknown_flag_message(key, known))
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
        s = self._set
        max_epochs = _check_int(self.max_epochs, "max_epochs", allow_none=True,
                                accepted="None, -1 (no limit) or an int >= 0")
        if max_epochs is not None and max_epochs < -1:
            raise ValueError(f"max_epochs={max_epochs!r} is out of range; accepted: None, -1 (no limit) or an int >= 0")
        max_steps = _check_int(self.max_steps, "max_steps", accepted="-1 (no limit) or an int >= 0")
        if max_steps is not None and max_steps < -1:
            raise ValueError(f"max_steps={max_steps!r} is out of range; accepted: -1 (no limit) or an int >= 0")
        _check_int(self.min_epochs, "min_epochs", minimum=0, allow_none=True)
        _check_int(self.min_steps, "min_steps", minimum=0, allow_none=True)
        s("max_time", parse_duration(self.max_time, "max_time"))
        self._validate_max_time_flags()

        for name in ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches"):
            s(name, parse_batch_limit(getattr(self, name), name))
        s("overfit_batches", parse_batch_limit(self.overfit_batches, "overfit_batches",
                                               default=BatchLimit("fraction", 0.0)))
        s("fast_dev_run", _parse_fast_dev_run(self.fast_dev_run))

        cven = self.check_val_every_n_epoch
        if cven is not None:
            if isinstance(cven, bool) or not isinstance(cven, int):
                raise TypeError(f"check_val_every_n_epoch={format_value(cven)} has type {_type_name(cven)}; "
                                f"accepted: an int >= 1, or None to count val_check_interval across epochs")
            if cven < 1:
                raise ValueError(f"check_val_every_n_epoch={cven!r} is out of range; accepted: an int >= 1, or None "
                                 f"to count val_check_interval across epochs")
        vci_raw = self.val_check_interval
        if isinstance(vci_raw, (str, dict, datetime.timedelta)):
            s("val_check_interval", parse_duration(vci_raw, "val_check_interval"))
        else:
            is_fraction = isinstance(vci_raw, float) or (isinstance(vci_raw, BatchLimit) and vci_raw.kind == "fraction")
            if is_fraction and cven is None:
                raise ValueError(
                    f"val_check_interval={vci_raw!r} is a fraction of an epoch, which needs epochs: with "
                    f"check_val_every_n_epoch=None give val_check_interval as an int number of batches "
                    f"(or a duration), or set check_val_every_n_epoch to an int >= 1")
            vci = parse_batch_limit(vci_raw, "val_check_interval")
            if vci.kind == "count" and vci.value == 0:
                # Lightning 2.6 accepts it and fails with ZeroDivisionError at the first training batch
                raise ValueError(
                    f"val_check_interval={format_value(vci_raw)} would validate every 0 batches; accepted: an int "
                    f">= 1 (validate every n training batches), a float in [0.0, 1.0] (a fraction of the epoch; "
                    f"0.0 validates after every batch, as in Lightning), None (once per epoch), or a duration")
            s("val_check_interval", vci)

        nsvs = _check_int(self.num_sanity_val_steps, "num_sanity_val_steps",
                          accepted="-1 (all batches), 0 (off) or an int >= 1")
        if nsvs is not None and nsvs < -1:
            raise ValueError(f"num_sanity_val_steps={nsvs!r} is out of range; accepted: -1 (all batches), "
                             f"0 (off) or an int >= 1")

        es = self.early_stopping
        if es is not None:
            if not isinstance(es, Mapping):
                raise TypeError(f"early_stopping={format_value(es)} has type {_type_name(es)}; accepted: None or a "
                                f"dict of EarlyStopping keyword arguments (monitor, patience, mode, ...)")
            from .early_stopping import validate_early_stopping_kwargs

            s("early_stopping", validate_early_stopping_kwargs(dict(es)))
        _check_bool(self.terminate_on_nan, "terminate_on_nan")
        _check_bool(self.batched_fetch, "batched_fetch")

        s("precision", parse_precision(self.precision))
        if self.amp_backend not in ("native", "apex"):
            raise ValueError(f"amp_backend={format_value(self.amp_backend)} is not known; accepted: 'native' or 'apex'")
        if self.amp_level is not None:
            if self.amp_backend != "apex":
                raise ValueError(f"amp_level={self.amp_level!r} only applies with amp_backend='apex'")
            if self.amp_level not in ("O0", "O1", "O2", "O3"):
                raise ValueError(f"amp_level={format_value(self.amp_level)} is not known; accepted: 'O0', 'O1', "
                                 f"'O2', 'O3'")
        if self.amp_backend == "apex" and self.precision not in ("16-mixed",):
            raise ValueError(f"amp_backend='apex' needs precision=16 (\"16-mixed\"), got precision={self.precision!r}")
        _check_int(self.accumulate_grad_batches, "accumulate_grad_batches", minimum=1)
        gcv = self.gradient_clip_val
        if gcv is not None:
            if isinstance(gcv, bool) or not isinstance(gcv, (int, float)):
                raise TypeError(f"gradient_clip_val={format_value(gcv)} has type {_type_name(gcv)}; "
                                f"accepted: None or a finite number >= 0")
            if not math.isfinite(gcv) or gcv < 0:
                raise ValueError(f"gradient_clip_val={gcv!r} is out of range; accepted: None or a finite number >= 0")
            s("gradient_clip_val", float(gcv))
        algo = "norm" if self.gradient_clip_algorithm is None else self.gradient_clip_algorithm
        if algo not in ("norm", "value"):
            raise ValueError(f"gradient_clip_algorithm={format_value(algo)} is not known; accepted: 'norm' or 'value'")
        s("gradient_clip_algorithm", algo)

        self._validate_devices()

    def _validate_max_time_flags(self) -> None:
        """``max_time_mode`` and ``max_time_reserve`` (after ``max_time`` is parsed)."""
        mode, max_time = self.max_time_mode, self.max_time
        modes = "'step' (check after every batch), 'epoch' (at epoch ends) or 'fit' (stop at the last epoch " \
                "boundary after which another epoch would not fit)"
        if not isinstance(mode, str):
            raise TypeError(f"max_time_mode={format_value(mode)} has type {_type_name(mode)}; accepted: {modes}")
        if mode not in ("step", "epoch", "fit"):
            raise ValueError(f"max_time_mode={mode!r} is not known{_did_you_mean(mode, ['step', 'epoch', 'fit'])}; "
                             f"accepted: {modes}")
        if mode != "step" and max_time is None:
            raise ValueError(f"max_time_mode={mode!r} needs max_time: set max_time (a duration), or leave "
                             f"max_time_mode unset")
        reserve = parse_duration(self.max_time_reserve, "max_time_reserve")
        if reserve is not None and reserve > datetime.timedelta(0):
            if max_time is None:
                raise ValueError(f"max_time_reserve={format_value(self.max_time_reserve)} needs max_time: it is held "
                                 f"back from max_time; set max_time, or leave max_time_reserve unset")
            if reserve >= max_time:
                raise ValueError(f"max_time_reserve={reserve} is not less than max_time={max_time}; accepted: a "
                                 f"duration shorter than max_time (training plans against max_time - "
                                 f"max_time_reserve)")
        self._set("max_time_reserve", reserve)

    def _validate_devices(self) -> None:
        s = self._set
        acc = self.accelerator
        if not isinstance(acc, str):
            raise TypeError(f"accelerator={format_value(acc)} has type {_type_name(acc)}; accepted: {list(ACCELERATORS)}")
        acc = acc.lower()
        if acc in _LEGACY_BACKENDS or acc in _REMOVED_BACKENDS:
            raise ValueError(f"accelerator={acc!r} is a distributed strategy, not an accelerator; use "
                             f"strategy={_LEGACY_BACKENDS.get(acc, acc)!r}" +
                             (" (removed in Lightning 2.x; use 'ddp')" if acc in _REMOVED_BACKENDS else ""))
        if acc not in ACCELERATORS:
            raise ValueError(f"accelerator={acc!r} is not known; accepted: {list(ACCELERATORS)}")
        s("accelerator", {"cuda": "gpu", "xla": "tpu"}.get(acc, acc))
        s("devices", parse_devices(self.devices))
        _check_int(self.num_nodes, "num_nodes", minimum=1)
        strategy = self.strategy
        if not isinstance(strategy, str):
            raise TypeError(f"strategy={format_value(strategy)} has type {_type_name(strategy)}; "
                            f"accepted: {list(STRATEGIES)}")
        strategy = strategy.lower()
        if strategy in _REMOVED_BACKENDS:
            raise ValueError(f"strategy={strategy!r} was removed in Lightning 2.x and is not supported; use 'ddp'")
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy={strategy!r} is not known{_did_you_mean(strategy, list(STRATEGIES))}; "
                             f"accepted: {list(STRATEGIES)}")
        s("strategy", strategy)
        if self.accelerator == "cpu":
            if isinstance(self.devices, list) or self.devices == -1:
                raise TypeError(f"devices={self.devices!r} with accelerator='cpu': on CPU give the number of "
                                f"processes as an int >= 1 (or 'auto')")
            if strategy in _GPU_ONLY_STRATEGIES:
                raise ValueError(f"strategy={strategy!r} needs accelerator='gpu'; on CPU use strategy='fsdp' "
                                 f"(torch FSDP2), 'zero' or 'ddp'")
        if strategy in ("xla", "single_xla", "single_tpu") and self.accelerator not in ("tpu", "auto"):
            raise ValueError(f"strategy={strategy!r} needs accelerator='tpu' (or 'xla'), got "
                             f"accelerator={self.accelerator!r}")
        _check_int(self.node_rank, "node_rank", minimum=0, allow_none=True)
        if self.node_rank is not None and self.node_rank >= self.num_nodes:
            raise ValueError(f"node_rank={self.node_rank!r} must be < num_nodes={self.num_nodes!r}")
        if self.master_addr is not None and not isinstance(self.master_addr, str):
            raise TypeError(f"master_addr={format_value(self.master_addr)} must be a host name string")
        port = _check_int(self.master_port, "master_port", minimum=1, allow_none=True)
        if port is not None and port > 65535:
            raise ValueError(f"master_port={port!r} is out of range; accepted: 1..65535")
        ds = self.deepspeed_config
        if ds is not None and not isinstance(ds, (Mapping, str)):
            raise TypeError(f"deepspeed_config={format_value(ds)} must be a dict or the path of a JSON file")

    # ------------------------------------------------------------------ resolution
    def effective(self) -> EffectiveLimits:
        """Apply ``fast_dev_run`` and ``overfit_batches`` overrides and Lightning's defaults."""
        fdr: int = self.fast_dev_run
        overfit = not self.overfit_batches.is_zero
        train, val = self.limit_train_batches, self.limit_val_batches
        test, predict = self.limit_test_batches, self.limit_predict_batches
        if overfit:
            train = val = dataclasses.replace(self.overfit_batches, source="overfit_batches")
        max_steps = self.max_steps
        max_epochs_defaulted = False
        if fdr:
            n = BatchLimit("count", fdr, source="fast_dev_run")
            if not overfit:
                train = val = n
            test = predict = n
            max_steps, max_epochs, min_epochs, min_steps = fdr, 1, 0, 0
            vci: BatchLimit | datetime.timedelta = BatchLimit.all()
            cven: int | None = 1
            nsvs = 0
        else:
            if self.max_epochs is not None:
                max_epochs = self.max_epochs
            elif max_steps == -1 and self.max_time is None:
                max_epochs, max_epochs_defaulted = 1000, True
            else:
                max_epochs = UNLIMITED
            min_steps = self.min_steps or 0
            if self.min_epochs is None:
                min_epochs = 1 if self.min_steps is not None else 0
            else:
                min_epochs = self.min_epochs
            vci = self.val_check_interval
            cven = self.check_val_every_n_epoch
            nsvs = self.num_sanity_val_steps
        return EffectiveLimits(
            max_epochs=max_epochs, max_steps=max_steps, min_epochs=min_epochs, min_steps=min_steps,
            max_time=self.max_time, limit_train_batches=train, limit_val_batches=val,
            limit_test_batches=test, limit_predict_batches=predict, val_check_interval=vci,
            check_val_every_n_epoch=cven, num_sanity_val_steps=nsvs, overfit=overfit, fast_dev_run=fdr,
            early_stopping_enabled=self.early_stopping is not None and not fdr,
            max_epochs_defaulted=max_epochs_defaulted,
        )


def _parse_fast_dev_run(value: Any) -> int:
    accepted = "False/0 (off), True (1 batch) or an int >= 1 (number of batches)"
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise TypeError(f"fast_dev_run={format_value(value)} has type {_type_name(value)}; accepted: {accepted}")
    if value < 0:
        raise ValueError(f"fast_dev_run={value!r} is negative; accepted: {accepted}")
    return value


def _to_mapping(source: Any) -> dict[str, Any]:
    if source is None:
        return {}
    if isinstance(source, SpeedConfig):
        return {name: getattr(source, name) for name in source.explicit}
    if isinstance(source, argparse.Namespace):
        return dict(vars(source))
    module = type(source).__module__ or ""
    if module.startswith("omegaconf"):
        from omegaconf import OmegaConf  # only when the user already handed us an OmegaConf object

        return dict(OmegaConf.to_container(source, resolve=True))  # type: ignore[arg-type]
    if dataclasses.is_dataclass(source) and not isinstance(source, type):
        return {f.name: getattr(source, f.name) for f in dataclasses.fields(source)}
    if isinstance(source, Mapping):
        return dict(source)
    raise TypeError(f"cannot build a SpeedConfig from {type(source).__name__}; accepted: None, a dict, a SpeedConfig, "
                    f"an argparse.Namespace, a dataclass instance or an OmegaConf DictConfig")


def _warn_legacy(old: str, new: str) -> None:
    warnings.warn(f"{old} is a Lightning 1.x flag; mapped to {new}", FutureWarning, stacklevel=5)


def _map_legacy(flags: dict[str, Any], known: list[str]) -> dict[str, Any]:
    """Map Lightning 1.x spellings (gpus=, tpu_cores=, num_processes=, accelerator='ddp', plugins=,
    distributed_backend=) onto the 2.x flags, with a warning each."""
    def put(key: str, value: Any, old: str) -> None:
        if key == "devices":
            try:  # refuse a bad legacy value under its own name (the 2.x flag alone would be named later)
                parse_devices(value)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"{old} (a Lightning 1.x flag, mapped to devices): {exc}") from None
        if key in flags and flags[key] != value and key not in ("accelerator",):
            raise ValueError(f"{old} conflicts with {key}={flags[key]!r}; give only the Lightning 2.x flag {key}")
        flags[key] = value

    if "gpus" in flags:
        gpus = flags.pop("gpus")
        if gpus not in (None, 0, "0", [], ""):
            put("accelerator", "gpu", f"gpus={gpus!r}")
            put("devices", gpus, f"gpus={gpus!r}")
            _warn_legacy(f"gpus={gpus!r}", f"accelerator='gpu', devices={gpus!r}")
    if "tpu_cores" in flags:
        cores = flags.pop("tpu_cores")
        if cores is not None:
            if isinstance(cores, (list, tuple)):
                if any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in cores):
                    raise ValueError(f"tpu_cores={cores!r}: a list names 1-based core numbers (Lightning 1.x)")
                devices: Any = [c - 1 for c in cores]
            else:
                devices = cores
            put("accelerator", "tpu", f"tpu_cores={cores!r}")
            put("devices", devices, f"tpu_cores={cores!r}")
            _warn_legacy(f"tpu_cores={cores!r}", f"accelerator='tpu', devices={devices!r}")
    nproc_given = False
    if "num_processes" in flags:
        nproc = flags.pop("num_processes")
        if nproc is not None:
            # a number of CPU processes: not -1 or a list of indices, which devices= would take (GPUs)
            accepted = "an int >= 1 (the number of CPU processes; a Lightning 1.x flag, mapped to devices)"
            if isinstance(nproc, bool) or not isinstance(nproc, int):
                raise TypeError(f"num_processes={format_value(nproc)} has type {_type_name(nproc)}; "
                                f"accepted: {accepted}")
            if nproc < 1:
                raise ValueError(f"num_processes={nproc!r} is out of range; accepted: {accepted}")
            nproc_given = True
            put("devices", nproc, f"num_processes={nproc!r}")
            _warn_legacy(f"num_processes={nproc!r}", f"accelerator='cpu', devices={nproc!r}")
    for key in ("distributed_backend", "accelerator"):
        value = flags.get(key)
        if isinstance(value, str) and value.lower() in _LEGACY_BACKENDS:
            flags.pop(key)
            strategy = _LEGACY_BACKENDS[value.lower()]
            put("strategy", strategy, f"{key}={value!r}")
            if value.lower() == "ddp_cpu":
                flags["accelerator"] = "cpu"
            _warn_legacy(f"{key}={value!r}", f"strategy={strategy!r}")
        elif key == "distributed_backend" and key in flags:
            raise ValueError(f"distributed_backend={value!r} is not known; accepted (Lightning 1.x): "
                             f"{sorted(_LEGACY_BACKENDS)}; in 2.x use strategy=")
    if nproc_given and str(flags.get("accelerator", "auto")).lower() == "auto":
        flags["accelerator"] = "cpu"
    if "plugins" in flags:
        plugins = flags.pop("plugins")
        scope = "plugins is a Lightning Trainer flag mostly outside ignite-speed's scope: "
        if plugins is not None and not isinstance(plugins, (str, list, tuple)):
            raise TypeError(f"plugins={format_value(plugins)} has type {_type_name(plugins)}; {scope}accepted: a "
                            f"Lightning 1.x strategy name or a list of them ('ddp_sharded', 'deepspeed', 'fsdp'), "
                            f"mapped to strategy=; precision is the precision flag, other plugins have no "
                            f"counterpart")
        names = [plugins] if isinstance(plugins, str) else list(plugins or [])
        for name in names:
            if not isinstance(name, str) or name.lower() not in ("ddp_sharded", "deepspeed", "fsdp"):
                raise ValueError(f"plugins={format_value(plugins)}: {scope}{_LIGHTNING_OUT_OF_SCOPE['plugins']}")
            put("strategy", name.lower(), f"plugins={plugins!r}")
            _warn_legacy(f"plugins={plugins!r}", f"strategy={name.lower()!r}")
    return flags
