"""Lightning flags that are not ignite-speed 2.x flags: the Lightning 1.x spellings (``gpus=``,
``tpu_cores=``, ``num_processes=``, ``accelerator='ddp'``, ``distributed_backend=``, ``plugins=``), mapped
onto the 2.x flags with a warning each, and the Lightning ``Trainer`` flags outside ignite-speed's scope,
refused with what to use in Ignite instead."""

from __future__ import annotations

import warnings
from typing import Any

from .checks import check_int, did_you_mean, type_name
from .devices import LEGACY_BACKENDS, parse_devices
from .durations import format_value

__all__ = ["LIGHTNING_OUT_OF_SCOPE", "unknown_flag_message", "unknown_flags_message", "map_legacy"]

# Lightning 2.6 ``Trainer.__init__`` flags that ignite-speed does not handle (it handles the loop-control,
# data-limit, precision and distribution flags), with what to use in Ignite instead. ``plugins`` is here
# for its values other than the 1.x strategy names, which are mapped (see map_legacy).
LIGHTNING_OUT_OF_SCOPE: dict[str, str] = {
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
    "sync_batchnorm": "convert the model with torch.nn.SyncBatchNorm.convert_sync_batchnorm(model) before wrapping it",
    "reload_dataloaders_every_n_epochs": "call trainer.set_data(new_loader) in an "
    "Events.EPOCH_STARTED(every=n) handler",
    "default_root_dir": "give the directory to your Checkpoint / logger handlers",
    "enable_autolog_hparams": "log the hyperparameters with your logger handler",
    "model_registry": "upload your checkpoints with your own code",
}


def unknown_flag_message(key: str, known: list[str]) -> str:
    """Why ``key`` is refused: a Lightning flag outside the scope (and what to use), or a misspelling."""
    if key in LIGHTNING_OUT_OF_SCOPE:
        return (
            f"{key!r} is a Lightning Trainer flag outside ignite-speed's scope (ignite-speed handles the loop "
            f"limits, validation scheduling, data limits, early stopping, precision and distribution flags); "
            f"in Ignite: {LIGHTNING_OUT_OF_SCOPE[key]}"
        )
    return f"unknown ignite-speed flag {key!r}{did_you_mean(key, known)} (known flags: {', '.join(known)})"


def unknown_flags_message(keys: list[str], known: list[str]) -> str:
    """Why ``keys`` are refused, all in one message (a migrated Lightning ``Trainer(...)`` call often has
    several flags outside the scope: one error each would take as many round trips)."""
    if len(keys) == 1:
        return unknown_flag_message(keys[0], known)
    lines = [
        f"{key!r}: a Lightning Trainer flag outside the scope; in Ignite: {LIGHTNING_OUT_OF_SCOPE[key]}"
        if key in LIGHTNING_OUT_OF_SCOPE
        else f"{key!r}: unknown flag{did_you_mean(key, known)}"
        for key in keys
    ]
    known_list = "" if all(key in LIGHTNING_OUT_OF_SCOPE for key in keys) else f"\n(known flags: {', '.join(known)})"
    return (
        f"{len(keys)} flags are refused ({', '.join(map(repr, keys))}): remove or fix them all (ignite-speed "
        f"handles the loop limits, validation scheduling, data limits, early stopping, precision and distribution "
        f"flags)\n  - " + "\n  - ".join(lines) + known_list
    )


def _warn_legacy(old: str, new: str) -> None:
    # stacklevel counts this function, map_legacy, SpeedConfig.__init__ and two callers above it
    warnings.warn(f"{old} is a Lightning 1.x flag; mapped to {new}", FutureWarning, stacklevel=5)


def map_legacy(flags: dict[str, Any]) -> dict[str, Any]:
    """Map Lightning 1.x spellings (gpus=, tpu_cores=, num_processes=, accelerator='ddp', plugins=,
    distributed_backend=) onto the 2.x flags of ``flags`` (changed in place and returned), with a warning
    each. Call it directly from ``SpeedConfig.__init__``: the warnings' stacklevel counts on it."""

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
                if any(isinstance(core, bool) or not isinstance(core, int) or core < 1 for core in cores):
                    raise ValueError(f"tpu_cores={cores!r}: a list names 1-based core numbers (Lightning 1.x)")
                devices: Any = [core - 1 for core in cores]
            else:
                devices = cores
            put("accelerator", "tpu", f"tpu_cores={cores!r}")
            put("devices", devices, f"tpu_cores={cores!r}")
            _warn_legacy(f"tpu_cores={cores!r}", f"accelerator='tpu', devices={devices!r}")
    processes_given = False
    if "num_processes" in flags:
        processes = flags.pop("num_processes")
        if processes is not None:
            # a number of CPU processes: not -1 or a list of indices, which devices= would take (GPUs)
            accepted = "an int >= 1 (the number of CPU processes; a Lightning 1.x flag, mapped to devices)"
            processes = check_int(processes, "num_processes", minimum=1, accepted=accepted)
            processes_given = True
            put("devices", processes, f"num_processes={processes!r}")
            _warn_legacy(f"num_processes={processes!r}", f"accelerator='cpu', devices={processes!r}")
    for key in ("distributed_backend", "accelerator"):
        value = flags.get(key)
        if isinstance(value, str) and value.lower() in LEGACY_BACKENDS:
            flags.pop(key)
            strategy = LEGACY_BACKENDS[value.lower()]
            put("strategy", strategy, f"{key}={value!r}")
            if value.lower() == "ddp_cpu":
                flags["accelerator"] = "cpu"
            _warn_legacy(f"{key}={value!r}", f"strategy={strategy!r}")
        elif key == "distributed_backend" and key in flags:
            raise ValueError(
                f"distributed_backend={value!r} is not known; accepted (Lightning 1.x): "
                f"{sorted(LEGACY_BACKENDS)}; in 2.x use strategy="
            )
    if processes_given and str(flags.get("accelerator", "auto")).lower() == "auto":
        flags["accelerator"] = "cpu"
    if "plugins" in flags:
        plugins = flags.pop("plugins")
        scope = "plugins is a Lightning Trainer flag mostly outside ignite-speed's scope: "
        if plugins is not None and not isinstance(plugins, (str, list, tuple)):
            raise TypeError(
                f"plugins={format_value(plugins)} has type {type_name(plugins)}; {scope}accepted: a "
                f"Lightning 1.x strategy name or a list of them ('ddp_sharded', 'deepspeed', 'fsdp'), "
                f"mapped to strategy=; precision is the precision flag, other plugins have no "
                f"counterpart"
            )
        names = [plugins] if isinstance(plugins, str) else list(plugins or [])
        for name in names:
            if not isinstance(name, str) or name.lower() not in ("ddp_sharded", "deepspeed", "fsdp"):
                raise ValueError(f"plugins={format_value(plugins)}: {scope}{LIGHTNING_OUT_OF_SCOPE['plugins']}")
            put("strategy", name.lower(), f"plugins={plugins!r}")
            _warn_legacy(f"plugins={plugins!r}", f"strategy={name.lower()!r}")
    return flags
