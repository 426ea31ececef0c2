"""Per-flag validators for devices and distribution: ``accelerator``, ``devices``, ``num_nodes``,
``strategy``, ``node_rank``, ``master_addr``/``master_port`` and ``deepspeed_config``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .checks import check_int, did_you_mean, type_name
from .durations import format_value

__all__ = [
    "ACCELERATORS",
    "STRATEGIES",
    "STRATEGY_FAMILIES",
    "DDP_STRATEGIES",
    "DEEPSPEED_STRATEGIES",
    "FSDP_STRATEGIES",
    "XLA_STRATEGIES",
    "SINGLE_PROCESS_STRATEGIES",
    "GPU_ONLY_STRATEGIES",
    "PROCESS_GROUP_STRATEGIES",
    "LEGACY_BACKENDS",
    "REMOVED_BACKENDS",
    "DEVICE_TYPES",
    "Accelerators",
    "available_accelerators",
    "resolve_accelerator",
    "check_accelerator_available",
    "DeviceFlags",
    "validate_accelerator",
    "parse_devices",
    "validate_strategy",
    "check_strategy_fits_accelerator",
    "check_devices_fit_accelerator",
    "validate_node_rank",
    "validate_master_address",
    "validate_deepspeed_config",
    "validate_device_flags",
]

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu", "xla")
# accelerator flag -> torch device type
DEVICE_TYPES = {"cpu": "cpu", "gpu": "cuda", "cuda": "cuda", "mps": "mps", "tpu": "xla", "xla": "xla"}

# The strategy table: every accepted name, grouped by what ``prepare`` does with it (the family's key). The
# validators, the launch plan and ``prepare`` all read it from here.
STRATEGY_FAMILIES: dict[str, tuple[str, ...]] = {
    "auto": ("auto",),
    "single_device": ("single_device",),
    "ddp": (
        "ddp",
        "ddp_spawn",
        "ddp_fork",
        "ddp_notebook",
        "ddp_find_unused_parameters_true",
        "ddp_find_unused_parameters_false",
    ),
    "zero": ("zero",),
    "fsdp": ("fsdp", "fsdp_cpu_offload"),
    "ddp_sharded": ("ddp_sharded",),
    "deepspeed": (
        "deepspeed",
        "deepspeed_stage_1",
        "deepspeed_stage_2",
        "deepspeed_stage_2_offload",
        "deepspeed_stage_3",
        "deepspeed_stage_3_offload",
    ),
    "xla": ("xla", "single_xla", "single_tpu"),
}
STRATEGIES = tuple(name for names in STRATEGY_FAMILIES.values() for name in names)
DDP_STRATEGIES = STRATEGY_FAMILIES["ddp"]
DEEPSPEED_STRATEGIES = STRATEGY_FAMILIES["deepspeed"]
FSDP_STRATEGIES = STRATEGY_FAMILIES["fsdp"]
XLA_STRATEGIES = STRATEGY_FAMILIES["xla"]
SINGLE_PROCESS_STRATEGIES = ("single_device", "single_xla", "single_tpu")
GPU_ONLY_STRATEGIES = ("fsdp_cpu_offload",)
# the strategies that run inside a torch.distributed process group
PROCESS_GROUP_STRATEGIES = DDP_STRATEGIES + DEEPSPEED_STRATEGIES + FSDP_STRATEGIES + ("zero", "ddp_sharded")

# Lightning 1.x spellings of the backend passed through ``accelerator`` / ``distributed_backend``.
LEGACY_BACKENDS = {
    "ddp": "ddp",
    "ddp_spawn": "ddp_spawn",
    "ddp_cpu": "ddp",
    "ddp_sharded": "ddp_sharded",
    "ddp_sharded_spawn": "ddp_sharded",
    "deepspeed": "deepspeed",
    "fsdp": "fsdp",
}
REMOVED_BACKENDS = ("dp", "ddp2", "horovod")


@dataclass(frozen=True)
class Accelerators:
    """What a machine offers: the inputs of ``accelerator="auto"`` (pass one to test a machine you lack)."""

    cuda: int = 0  # visible CUDA devices
    mps: bool = False
    tpu: bool = False


def available_accelerators() -> Accelerators:
    """The accelerators of this machine, as Lightning 2.6 detects them (``torch_xla`` is imported only where it
    is installed, to count TPU devices)."""
    import importlib.util

    import torch

    mps = getattr(torch.backends, "mps", None)
    return Accelerators(
        cuda=torch.cuda.device_count(),
        mps=bool(mps is not None and mps.is_available()),
        tpu=importlib.util.find_spec("torch_xla") is not None and _tpu_devices() > 0,
    )


def _tpu_devices() -> int:
    try:  # Lightning's XLAAccelerator.auto_device_count (torch_xla >= 2.1)
        from torch_xla._internal import tpu

        return int(tpu.num_available_devices())
    except Exception:  # an old or broken torch_xla, no TPU runtime: no TPU for "auto"
        return 0


def resolve_accelerator(accelerator: str, available: Accelerators | None = None) -> str:
    """The accelerator a parsed ``accelerator`` flag runs on: the one rule of ``prepare``, the launch plan and
    :class:`~ignite_speed.step.Precision`.

    ``"auto"`` follows Lightning 2.6 (``_select_auto_accelerator``): ``"tpu"`` when torch_xla sees TPU devices,
    else ``"mps"`` when MPS is available, else ``"gpu"`` when a CUDA device is visible, else ``"cpu"``. Other
    values are returned canonical (``"cuda"`` is ``"gpu"``, ``"xla"`` is ``"tpu"``); whether the machine has
    them is :func:`check_accelerator_available`'s question. ``available`` defaults to
    :func:`available_accelerators` (read only for ``"auto"``).
    """
    accelerator = {"cuda": "gpu", "xla": "tpu"}.get(accelerator, accelerator)
    if accelerator != "auto":
        return accelerator
    available = available_accelerators() if available is None else available
    if available.tpu:
        return "tpu"
    if available.mps:
        return "mps"
    return "gpu" if available.cuda > 0 else "cpu"


def check_accelerator_available(accelerator: str, available: Accelerators) -> None:
    """Refuse ``"gpu"`` without a CUDA device and ``"mps"`` without MPS (autocast for an absent device type
    does nothing: never train in fp32 unawares). ``"tpu"`` is checked where torch_xla is imported."""
    if accelerator == "gpu" and available.cuda == 0:
        import torch

        raise ValueError(
            f"accelerator='gpu' but CUDA is not available to torch {torch.__version__} (no CUDA device "
            f"is visible: torch.cuda.device_count() == 0); accepted here: accelerator='cpu' or 'auto'"
        )
    if accelerator == "mps" and not available.mps:
        raise ValueError("accelerator='mps' but MPS is not available; accepted here: accelerator='cpu' or 'auto'")


def validate_accelerator(value: Any) -> str:
    """The canonical accelerator name (``"cuda"`` is ``"gpu"``, ``"xla"`` is ``"tpu"``)."""
    if not isinstance(value, str):
        raise TypeError(
            f"accelerator={format_value(value)} has type {type_name(value)}; accepted: {list(ACCELERATORS)}"
        )
    accelerator = value.lower()
    if accelerator in LEGACY_BACKENDS or accelerator in REMOVED_BACKENDS:
        raise ValueError(
            f"accelerator={accelerator!r} is a distributed strategy, not an accelerator; use "
            f"strategy={LEGACY_BACKENDS.get(accelerator, accelerator)!r}"
            + (" (removed in Lightning 2.x; use 'ddp')" if accelerator in REMOVED_BACKENDS else "")
        )
    if accelerator not in ACCELERATORS:
        raise ValueError(f"accelerator={accelerator!r} is not known; accepted: {list(ACCELERATORS)}")
    return {"cuda": "gpu", "xla": "tpu"}.get(accelerator, accelerator)


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
                return parse_devices([int(part) for part in text.split(",") if part.strip()])
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
        for index in value:
            if isinstance(index, bool) or not isinstance(index, int) or index < 0:
                raise ValueError(f"{flag}={format_value(value)} holds {index!r}, not a device index >= 0")
        if len(set(value)) != len(value):
            raise ValueError(f"{flag}={list(value)!r} names a device twice")
        return list(value)
    raise TypeError(f"{flag}={format_value(value)} has type {type_name(value)}; accepted: {accepted}")


def validate_strategy(value: Any) -> str:
    """The strategy name, lower-cased."""
    if not isinstance(value, str):
        raise TypeError(f"strategy={format_value(value)} has type {type_name(value)}; accepted: {list(STRATEGIES)}")
    strategy = value.lower()
    if strategy in REMOVED_BACKENDS:
        raise ValueError(f"strategy={strategy!r} was removed in Lightning 2.x and is not supported; use 'ddp'")
    if strategy not in STRATEGIES:
        raise ValueError(
            f"strategy={strategy!r} is not known{did_you_mean(strategy, list(STRATEGIES))}; "
            f"accepted: {list(STRATEGIES)}"
        )
    return strategy


def check_strategy_fits_accelerator(strategy: str, accelerator: str, devices: int | list[int] | str = "auto") -> None:
    """Cross-flag rules of the parsed ``strategy``, ``accelerator`` and ``devices``: on CPU, a number of
    processes and no GPU-only strategy; the XLA strategies on a TPU. Checked when the flags are parsed and again
    by the launch plan once ``accelerator="auto"`` is resolved."""
    check_devices_fit_accelerator(devices, accelerator)
    if accelerator == "cpu" and strategy in GPU_ONLY_STRATEGIES:
        raise ValueError(
            f"strategy={strategy!r} needs accelerator='gpu'; on CPU use strategy='fsdp' (torch FSDP2), 'zero' or 'ddp'"
        )
    if strategy in XLA_STRATEGIES and accelerator not in ("tpu", "auto"):
        raise ValueError(f"strategy={strategy!r} needs accelerator='tpu' (or 'xla'), got accelerator={accelerator!r}")


def check_devices_fit_accelerator(devices: int | list[int] | str, accelerator: str) -> None:
    """On CPU, ``devices`` is a number of processes (not ``-1`` nor a list of indices)."""
    if accelerator == "cpu" and (isinstance(devices, list) or devices == -1):
        raise TypeError(
            f"devices={devices!r} with accelerator='cpu': on CPU give the number of "
            f"processes as an int >= 1 (or 'auto')"
        )


def validate_node_rank(node_rank: Any, num_nodes: int) -> int | None:
    """``node_rank``: None or an index below the (validated) ``num_nodes``."""
    checked = check_int(node_rank, "node_rank", minimum=0, allow_none=True)
    if checked is not None and checked >= num_nodes:
        raise ValueError(f"node_rank={checked!r} must be < num_nodes={num_nodes!r}")
    return checked


def validate_master_address(master_addr: Any, master_port: Any) -> None:
    if master_addr is not None and not isinstance(master_addr, str):
        raise TypeError(f"master_addr={format_value(master_addr)} must be a host name string")
    port = check_int(master_port, "master_port", minimum=1, allow_none=True)
    if port is not None and port > 65535:
        raise ValueError(f"master_port={port!r} is out of range; accepted: 1..65535")


def validate_deepspeed_config(value: Any) -> None:
    if value is not None and not isinstance(value, (Mapping, str)):
        raise TypeError(f"deepspeed_config={format_value(value)} must be a dict or the path of a JSON file")


@dataclass(frozen=True)
class DeviceFlags:
    """The device flags that parsing changes (the others are kept as given once checked)."""

    accelerator: str
    devices: int | list[int] | str
    strategy: str


def validate_device_flags(
    accelerator: Any = "auto",
    devices: Any = "auto",
    num_nodes: Any = 1,
    strategy: Any = "auto",
    node_rank: Any = None,
    master_addr: Any = None,
    master_port: Any = None,
    deepspeed_config: Any = None,
) -> DeviceFlags:
    """Every device and distribution flag, in the order ``SpeedConfig`` reports them."""
    parsed_accelerator = validate_accelerator(accelerator)
    parsed_devices = parse_devices(devices)
    nodes = check_int(num_nodes, "num_nodes", minimum=1)
    assert nodes is not None  # None is refused without allow_none
    parsed_strategy = validate_strategy(strategy)
    check_strategy_fits_accelerator(parsed_strategy, parsed_accelerator, parsed_devices)
    validate_node_rank(node_rank, nodes)
    validate_master_address(master_addr, master_port)
    validate_deepspeed_config(deepspeed_config)
    return DeviceFlags(parsed_accelerator, parsed_devices, parsed_strategy)
