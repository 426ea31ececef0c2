"""``Precision``: one object that applies the ``precision`` flag inside a training step.

It owns the three things a step needs to run in reduced or increased precision: the forward context
(``torch.autocast`` for ``*-mixed``, a default-dtype switch for ``*-true``), the casts of the module and of
the batch (``*-true`` only), and the backward/optimizer-step pair (loss scaling with a ``GradScaler`` for
fp16 AMP, unscaling before clipping, NVIDIA apex or ``torch_xla`` when asked for).

Optional packages (``apex``, ``torch_xla``) are imported only when a ``Precision`` needs them, never when
``ignite_speed`` is imported.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from ..config.checks import check_number
from ..config.speed_config import PRECISION_VALUES, SpeedConfig
from .casting import cast_floating
from .nvidia_apex import APEX_INSTALL_HINT, load_apex_amp, nvidia_apex_available  # noqa: F401  (APEX_INSTALL_HINT stays importable here)
from .precision_plan import (
    APEX_PLAN,
    check_device_available,
    check_plan_supported,
    check_scaler_argument,
    device_type_of,
    resolve_plan,
)
from .precision_plan import resolve_plan as _resolve  # noqa: F401  (the name the precision tests import)

__all__ = ["Precision", "nvidia_apex_available"]


class _StepTaken:
    """``bool()`` of it says whether the GradScaler took the step; evaluated (and synced) only when asked."""

    __slots__ = ("_before", "_after")

    def __init__(self, before: Any, after: Any) -> None:
        self._before, self._after = before, after

    def __bool__(self) -> bool:
        return not bool(self._after < self._before)

    def __eq__(self, other: object) -> bool:
        return bool(self) == other

    def __hash__(self) -> int:
        return hash(bool(self))

    def __repr__(self) -> str:
        return repr(bool(self))


class Precision:
    """Applies one ``precision`` value (Lightning 2.x spelling) to a hand-written or generated training step.

    Args:
        precision: ``"32-true"`` (default), ``"64-true"``, ``"16-mixed"``, ``"bf16-mixed"``, ``"16-true"``,
            ``"bf16-true"`` or a legacy spelling (16, 32, 64, ``"bf16"``).
        accelerator: ``"auto"``, ``"cpu"``, ``"gpu"``/``"cuda"``, ``"mps"`` or ``"tpu"``/``"xla"``; decides the
            autocast device type. ``"auto"`` is resolved as ``prepare`` resolves it (Lightning 2.6's rule: TPU,
            then MPS, then CUDA, then CPU; see :func:`~ignite_speed.config.devices.resolve_accelerator`).
        device: optional device the model runs on; when given it decides the device type and must agree with an
            explicit ``accelerator``.
        amp_backend: ``"native"`` (``torch.amp``) or ``"apex"`` (NVIDIA apex, ``precision="16-mixed"`` on CUDA).
        amp_level: apex optimisation level ``"O0"``-``"O3"`` (default ``"O2"``, as Lightning 1.x).
        scaler: None picks a ``GradScaler`` for ``16-mixed`` on CUDA/MPS only; ``True`` forces one (also on CPU,
            with fp16 autocast); ``False`` disables it; a ``torch.amp.GradScaler`` instance is used as given.

    Typical step::

        with precision.autocast():
            loss = loss_fn(model(x), y)
        precision.backward(loss, optimizer)
        precision.clip_gradients(optimizer, 1.0)  # optional; unscales first
        precision.step(optimizer)
        optimizer.zero_grad()
    """

    def __init__(
        self,
        precision: str | int = "32-true",
        accelerator: str = "auto",
        *,
        device: str | torch.device | None = None,
        amp_backend: str = "native",
        amp_level: str | None = None,
        scaler: bool | torch.amp.GradScaler | None = None,
    ) -> None:
        # SpeedConfig owns flag validation (names, legacy spellings, apex/level rules): reuse it.
        cfg = SpeedConfig(precision=precision, accelerator=accelerator, amp_backend=amp_backend, amp_level=amp_level)
        self.requested_precision: str = cfg.precision
        self.amp_backend: str = cfg.amp_backend
        self.amp_level: str | None = cfg.amp_level
        self.device_type: str = device_type_of(cfg.accelerator, device)

        given_scaler = scaler if isinstance(scaler, torch.amp.GradScaler) else None
        check_scaler_argument(scaler)
        self._apex_amp: Any = None
        if self.amp_backend == "apex":
            # SpeedConfig already ensured precision is 16-mixed; apex does its own casting and loss scaling.
            self._apex_amp = load_apex_amp(self.device_type, scaler)
            plan = APEX_PLAN
        else:
            check_device_available(self.device_type)
            plan = resolve_plan(self.requested_precision, self.device_type, None if scaler is None else bool(scaler))
        if plan.warning:
            warnings.warn(plan.warning, UserWarning, stacklevel=2)
        self._plan = plan
        self.effective_precision: str = plan.effective
        check_plan_supported(plan, self.requested_precision, self.device_type)
        self.scaler: torch.amp.GradScaler | None = None
        if plan.use_scaler and self.amp_backend == "native":
            self.scaler = given_scaler or torch.amp.GradScaler(self.device_type)
        self._unscaled: set[int] = set()  # optimizers unscaled since their last step (unscale_ is once per step)

    @classmethod
    def from_config(
        cls,
        cfg: SpeedConfig | Mapping[str, Any] | None = None,
        *,
        device: str | torch.device | None = None,
        scaler: bool | torch.amp.GradScaler | None = None,
    ) -> Precision:
        """Build from a :class:`SpeedConfig` (or anything ``SpeedConfig.from_any`` takes)."""
        cfg = cfg if isinstance(cfg, SpeedConfig) else SpeedConfig.from_any(cfg)
        return cls(
            cfg.precision,
            cfg.accelerator,
            device=device,
            amp_backend=cfg.amp_backend,
            amp_level=cfg.amp_level,
            scaler=scaler,
        )

    def __repr__(self) -> str:
        return (
            f"Precision({self.effective_precision!r}, device_type={self.device_type!r}, "
            f"amp_backend={self.amp_backend!r}, scaler={self.scaler is not None})"
        )

    # ------------------------------------------------------------------ dtypes
    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The autocast dtype for ``*-mixed`` (None otherwise)."""
        return self._plan.autocast_dtype

    @property
    def param_dtype(self) -> torch.dtype | None:
        """The dtype modules and floating inputs are cast to for ``*-true`` (None: left unchanged)."""
        return self._plan.param_dtype

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Context for the forward pass and the loss."""
        if self._plan.autocast_dtype is not None and self.amp_backend == "native":
            with torch.autocast(self.device_type, dtype=self._plan.autocast_dtype):
                yield
        elif self._plan.param_dtype is not None:
            # Tensors created inside forward (torch.zeros, ...) must match the cast parameters.
            previous = torch.get_default_dtype()
            torch.set_default_dtype(self._plan.param_dtype)
            try:
                yield
            finally:
                torch.set_default_dtype(previous)
        else:
            yield

    def convert_module(self, model: torch.nn.Module) -> torch.nn.Module:
        """Cast ``model`` in place for ``*-true`` (parameter objects are kept, so optimizers stay valid)."""
        if self.amp_backend == "apex":
            raise RuntimeError(
                "with amp_backend='apex' call precision.setup(model, optimizer): apex must "
                "initialise the model and the optimizer together"
            )
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"convert_module expects a torch.nn.Module, got {type(model).__name__}")
        if self._plan.param_dtype is not None:
            model.to(dtype=self._plan.param_dtype)
        return model

    def setup(
        self, model: torch.nn.Module, optimizer: torch.optim.Optimizer
    ) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        """Prepare a model and its optimizer (``convert_module``, or ``apex.amp.initialize`` for apex)."""
        if self.amp_backend == "apex":
            model, optimizer = self._apex_amp.initialize(model, optimizer, opt_level=self.amp_level or "O2")
            return model, optimizer
        return self.convert_module(model), optimizer

    def convert_input(self, batch: Any) -> Any:
        """Cast the floating tensors in ``batch`` (nested tuples/lists/dicts) for ``*-true``; others untouched."""
        dtype = self._plan.param_dtype
        if dtype is None:
            return batch
        return cast_floating(batch, dtype)

    def apply_to_evaluator(self, evaluator: Any) -> Any:
        """Run ``evaluator``'s steps under this precision (validation, test, predict), as Lightning does:
        :func:`~ignite_speed.step.evaluate_with_precision` ``(evaluator, self)``. Returns the handle whose
        ``detach()`` undoes it."""
        from .evaluation import evaluate_with_precision

        return evaluate_with_precision(evaluator, self)

    # ------------------------------------------------------------------ backward and step
    def backward(
        self, loss: torch.Tensor, optimizer: torch.optim.Optimizer | None = None, model: torch.nn.Module | None = None
    ) -> None:
        """``loss.backward()``, scaled by the GradScaler when there is one. ``optimizer`` is needed for apex;
        ``model`` is accepted for symmetry with Lightning's hook and is not used."""
        if not isinstance(loss, torch.Tensor):
            raise TypeError(f"backward expects the loss as a torch.Tensor, got {type(loss).__name__}")
        if self.amp_backend == "apex":
            if optimizer is None:
                raise ValueError("with amp_backend='apex', backward(loss, optimizer) needs the optimizer")
            with self._apex_amp.scale_loss(loss, optimizer) as scaled:
                scaled.backward()
            return
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale_gradients(self, optimizer: torch.optim.Optimizer) -> None:
        """Divide the gradients by the loss scale (no-op without a scaler; at most once per step)."""
        if self.scaler is not None and id(optimizer) not in self._unscaled:
            self.scaler.unscale_(optimizer)
            self._unscaled.add(id(optimizer))

    def clip_gradients(self, optimizer: torch.optim.Optimizer, clip_val: float | None, algorithm: str = "norm") -> None:
        """Clip the gradients of ``optimizer``'s parameters, after unscaling them.

        ``algorithm="norm"`` rescales all gradients so their joint 2-norm is at most ``clip_val``;
        ``"value"`` clamps each element to ``[-clip_val, clip_val]``. ``None`` or 0 disables clipping.
        """
        if algorithm not in ("norm", "value"):
            raise ValueError(f"gradient_clip_algorithm={algorithm!r} is not known; accepted: 'norm' or 'value'")
        if clip_val is None or clip_val == 0:
            return
        check_number(clip_val, "gradient_clip_val", minimum=0, accepted="None or a finite number >= 0")
        self.unscale_gradients(optimizer)
        if algorithm == "norm" and _is_fairscale_oss(optimizer):
            # each rank holds the reduced gradients of its own shard only: the norm needs all of them
            optimizer.clip_grad_norm(clip_val)  # type: ignore[attr-defined]
            return
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if algorithm == "norm":
            torch.nn.utils.clip_grad_norm_(params, clip_val)
        else:
            torch.nn.utils.clip_grad_value_(params, clip_val)

    def step(self, optimizer: torch.optim.Optimizer, model: torch.nn.Module | None = None) -> bool | _StepTaken:
        """Run ``optimizer.step()`` (through the scaler, apex or ``torch_xla``). Returns False when the
        GradScaler skipped the update because a gradient was inf/NaN (Lightning still counts such a step).

        With a GradScaler the result is a bool-like object that reads the scale only when tested, so a
        training loop that ignores it pays no GPU sync."""
        self._unscaled.discard(id(optimizer))
        if self.device_type == "xla":
            if getattr(optimizer, "_ignite_speed_xla", False):
                optimizer.step()  # made by prepare(): its step reduces the gradients across replicas itself
                return True
            import torch_xla.core.xla_model as xm  # lazy: optional dependency

            xm.optimizer_step(optimizer)  # all-reduces gradients across replicas, then steps
            return True
        if self.scaler is None:
            optimizer.step()
            return True
        before = self._scale_tensor()
        self.scaler.step(optimizer)
        self.scaler.update()
        # The scale only ever shrinks (backoff_factor < 1) after an inf/NaN, i.e. after a skipped step. The
        # answer is read lazily: asking a CUDA scaler for its scale every step would sync the GPU each step.
        return _StepTaken(before, self._scale_tensor())

    def _scale_tensor(self) -> Any:
        assert self.scaler is not None
        get_async = getattr(self.scaler, "_get_scale_async", None)  # no host sync (torch >= 2.0)
        scale = get_async() if get_async is not None else None
        return scale.detach().clone() if scale is not None else self.scaler.get_scale()

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        """Plain data (loads with ``torch.load(weights_only=True)``): the GradScaler (or apex) state."""
        state: dict[str, Any] = {"precision": self.effective_precision}
        if self.scaler is not None:
            state["scaler"] = {
                k: (float(v) if isinstance(v, torch.Tensor) else v) for k, v in self.scaler.state_dict().items()
            }
        if self._apex_amp is not None:
            state["apex_amp"] = dict(self._apex_amp.state_dict())
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved. A scaler state is ignored, with a warning, when this
        ``Precision`` has no scaler (e.g. resuming a 16-mixed run with bf16-mixed)."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"Precision.load_state_dict expects a mapping, got {type(state_dict).__name__}")
        unknown = set(state_dict) - {"precision", "scaler", "apex_amp"}
        if unknown:
            raise ValueError(
                f"Precision state has unknown keys {sorted(unknown)}; expected 'precision', 'scaler', 'apex_amp'"
            )
        saved = state_dict.get("precision")
        if saved is not None and saved not in PRECISION_VALUES:
            raise ValueError(f"Precision state has precision={saved!r}; accepted: {list(PRECISION_VALUES)}")
        if "scaler" in state_dict:
            if self.scaler is None:
                warnings.warn(
                    f"the checkpoint holds GradScaler state (precision={saved!r}) but precision="
                    f"{self.effective_precision!r} uses no scaler; ignoring it",
                    UserWarning,
                    stacklevel=2,
                )
            else:
                self.scaler.load_state_dict(dict(state_dict["scaler"]))
        if "apex_amp" in state_dict and self._apex_amp is not None:
            self._apex_amp.load_state_dict(state_dict["apex_amp"])


def _is_fairscale_oss(optimizer: Any) -> bool:
    return any(c.__name__ == "OSS" and c.__module__.startswith("fairscale") for c in type(optimizer).__mro__)
