"""What a ``precision`` flag resolves to on a device type, and the checks that it can run there.

Pure data and checks, separate from :class:`~ignite_speed.step.Precision` (which applies the result) so that
the resolution is testable without the hardware.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch

from ..config.devices import (
    DEVICE_TYPES,
    Accelerators,
    available_accelerators,
    check_accelerator_available,
    resolve_accelerator,
)

__all__ = [
    "PrecisionPlan",
    "APEX_PLAN",
    "resolve_plan",
    "device_type_of",
    "check_scaler_argument",
    "check_device_available",
    "check_plan_supported",
]

TRUE_DTYPES = {"64-true": torch.float64, "16-true": torch.float16, "bf16-true": torch.bfloat16}
MIXED_DTYPES = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}


@dataclass(frozen=True)
class PrecisionPlan:
    """What a (precision, device type) pair resolves to."""

    effective: str
    autocast_dtype: torch.dtype | None  # set for *-mixed
    param_dtype: torch.dtype | None  # set for *-true (module and floating inputs are cast to it)
    use_scaler: bool
    warning: str | None = None


# apex (16-mixed only, as SpeedConfig ensures) does its own casting and loss scaling
APEX_PLAN = PrecisionPlan("16-mixed", torch.float16, None, False)


def resolve_plan(requested: str, device_type: str, scaler: bool | None) -> PrecisionPlan:
    """Resolve ``requested`` on ``device_type``; ``scaler`` is None (automatic), True (forced) or False."""
    if scaler and requested != "16-mixed":
        raise ValueError(
            f"scaler=True only applies to precision='16-mixed' (fp16 AMP), got precision={requested!r}; "
            f"bf16 and the '*-true' values train without loss scaling"
        )
    if requested == "16-mixed":
        if device_type == "cpu" and not scaler:
            # Like Lightning: CPU autocast is meant for bf16, so fp16 AMP becomes bf16 AMP, loudly.
            return PrecisionPlan(
                "bf16-mixed",
                torch.bfloat16,
                None,
                False,
                "precision='16-mixed' (fp16 AMP) is not supported on CPU; using "
                "precision='bf16-mixed' instead (pass scaler=True to force fp16 autocast with a CPU "
                "GradScaler)",
            )
        if device_type == "xla":
            if scaler:
                raise ValueError(
                    "scaler=True is not available on XLA (torch_xla has no GradScaler); "
                    "use precision='bf16-mixed' or 'bf16-true'"
                )
            return PrecisionPlan(
                "bf16-mixed",
                torch.bfloat16,
                None,
                False,
                "precision='16-mixed' (fp16 AMP) is not supported on XLA; using precision='bf16-mixed'",
            )
        return PrecisionPlan("16-mixed", torch.float16, None, scaler is not False)
    if requested in MIXED_DTYPES:
        return PrecisionPlan(requested, MIXED_DTYPES[requested], None, False)
    if requested in TRUE_DTYPES:
        return PrecisionPlan(requested, None, TRUE_DTYPES[requested], False)
    return PrecisionPlan("32-true", None, None, False)


def device_type_of(accelerator: str, device: str | torch.device | None, available: Accelerators | None = None) -> str:
    """The torch device type that ``device`` names (it must agree with an explicit ``accelerator``), or, without
    a ``device``, the one ``accelerator`` runs on (``"auto"`` resolved by the launch plan's rule,
    :func:`~ignite_speed.config.devices.resolve_accelerator`, on ``available`` or this machine)."""
    if device is None:
        return DEVICE_TYPES[resolve_accelerator(accelerator, available)]
    try:
        dev_type = torch.device(device).type
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a torch device ({exc})") from None
    if accelerator != "auto" and DEVICE_TYPES.get(accelerator) != dev_type:
        raise ValueError(f"device={device!r} does not match accelerator={accelerator!r}")
    return dev_type


def check_scaler_argument(scaler: object) -> None:
    """Refuse a ``scaler=`` that is none of None, a bool or a ``torch.amp.GradScaler``."""
    if scaler is not None and not isinstance(scaler, (bool, torch.amp.GradScaler)):
        raise TypeError(
            f"scaler={scaler!r} has type {type(scaler).__name__}; accepted: None (automatic), "
            f"True, False or a torch.amp.GradScaler"
        )


def check_device_available(device_type: str, available: Accelerators | None = None) -> None:
    """Refuse a CUDA or MPS device type that torch cannot use here (the launch plan's rule)."""
    if device_type in ("cuda", "mps"):
        check_accelerator_available(
            "gpu" if device_type == "cuda" else "mps", available_accelerators() if available is None else available
        )


def check_plan_supported(plan: PrecisionPlan, requested: str, device_type: str) -> None:
    """Refuse bf16 autocast on a CUDA device without bf16, and an XLA device type without torch_xla."""
    if device_type == "cuda" and plan.autocast_dtype is torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise ValueError(
            f"precision={requested!r} needs bf16 support, which this CUDA device lacks; use precision='16-mixed'"
        )
    if device_type == "xla" and importlib.util.find_spec("torch_xla") is None:
        raise ImportError("accelerator='tpu'/'xla' needs torch_xla (pip install torch_xla matching your torch)")
