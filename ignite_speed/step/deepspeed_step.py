"""``create_trainer``'s step for a DeepSpeed engine, driven through ``engine.backward``/``engine.step``.

DeepSpeed applies the accumulation, clipping and fp16/bf16 of its config (checked here against ``cfg``), and is
told by ignite-speed which batches end a window. ``deepspeed`` itself is never imported: the engine is
recognised by its class name.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from ignite.engine import DeterministicEngine, Engine, Events

from ..config.speed_config import SpeedConfig
from ..distributed.checkpoint import is_deepspeed_engine
from ..loop.trainer_parts import TrainerParts
from .accumulation import AccumulationWindow
from .casting import cast_floating
from .supervised_functions import ProcessFunction, SupervisedFunctions

__all__ = ["DeepSpeedPrecision", "is_deepspeed_engine", "check_deepspeed_agrees", "deepspeed_trainer"]


class DeepSpeedPrecision:
    """``precision_of(trainer)`` of a DeepSpeed trainer: what DeepSpeed's config applies, for reading. The
    step does nothing with it, and its state holds no loss scale (``DeepSpeedCheckpoint`` saves DeepSpeed's)."""

    scaler = None

    def __init__(self, engine: Any) -> None:
        fp16, bf16 = bool(engine.fp16_enabled()), bool(engine.bfloat16_enabled())
        self.effective_precision = "16-mixed" if fp16 else "bf16-mixed" if bf16 else "32-true"
        self.dtype: torch.dtype | None = torch.float16 if fp16 else torch.bfloat16 if bf16 else None
        self.requested_precision = self.effective_precision
        self.amp_backend = "deepspeed"

    def __repr__(self) -> str:
        return f"DeepSpeedPrecision({self.effective_precision!r})"

    def convert_input(self, batch: Any) -> Any:
        """``batch`` with its floating tensors in the engine's fp16/bf16 (as the training step casts them)."""
        return batch if self.dtype is None else cast_floating(batch, self.dtype)

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        """No context: DeepSpeed's model holds the fp16/bf16 weights itself."""
        return contextlib.nullcontext()

    def state_dict(self) -> dict[str, Any]:
        return {"precision": self.effective_precision, "amp_backend": "deepspeed"}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"DeepSpeedPrecision.load_state_dict expects a mapping, got {type(state_dict).__name__}")


def check_deepspeed_agrees(engine: Any, cfg: SpeedConfig) -> int:
    """The engine's accumulation steps, after checking that its config says what ``cfg``'s flags say (the
    loop counts optimizer steps from ``cfg``; DeepSpeed applies its own config)."""
    k = int(engine.gradient_accumulation_steps())
    if cfg.accumulate_grad_batches != k:
        raise ValueError(
            f"accumulate_grad_batches={cfg.accumulate_grad_batches} but the DeepSpeed engine "
            f"accumulates gradient_accumulation_steps={k}: pass create_trainer (and attach_speedups) "
            f"the cfg given to prepare(), or set accumulate_grad_batches={k}, so that the steps counted "
            f"are the steps taken"
        )
    clipping = float(engine.gradient_clipping() or 0.0)
    if cfg.gradient_clip_val and cfg.gradient_clip_algorithm != "norm":
        raise ValueError(
            "gradient_clip_algorithm='value' is not supported by DeepSpeed (it clips the global norm); "
            "accepted with a DeepSpeed engine: 'norm'"
        )
    wanted = float(cfg.gradient_clip_val or 0.0)
    if ("gradient_clip_val" in cfg.explicit or wanted) and wanted != clipping:
        raise ValueError(
            f"gradient_clip_val={cfg.gradient_clip_val!r} but the DeepSpeed engine clips at "
            f"gradient_clipping={clipping}; pass create_trainer the cfg given to prepare()"
        )
    if "precision" in cfg.explicit:
        fp16, bf16 = bool(engine.fp16_enabled()), bool(engine.bfloat16_enabled())
        has = "fp16" if fp16 else "bf16" if bf16 else "fp32"
        wants = "fp16" if cfg.precision.startswith("16") else "bf16" if cfg.precision.startswith("bf16") else "fp32"
        if cfg.precision == "64-true" or has != wants:
            raise ValueError(
                f"precision={cfg.precision!r} but the DeepSpeed engine trains in {has}; pass "
                f"create_trainer the cfg given to prepare() (DeepSpeed applies the precision)"
            )
    return k


def deepspeed_trainer(
    engine: Any, optimizer: Any, cfg: SpeedConfig, functions: SupervisedFunctions, *, deterministic: bool
) -> Engine:
    """``create_trainer`` for a DeepSpeed engine.

    DeepSpeed divides the loss by its ``gradient_accumulation_steps``, scales it for fp16, reduces the
    gradients (ZeRO: partitions them), clips them and steps. Its own micro-step counter would place the
    windows across epoch ends, so every batch tells it whether it ends a window
    (``set_gradient_accumulation_boundary``), on ignite-speed's rule: every k-th batch of the epoch and the
    epoch's last. ``engine.step()`` runs on the batches that end one.
    """
    if optimizer is not None and optimizer is not engine.optimizer:
        raise TypeError(
            f"optimizer has type {type(optimizer).__name__}, which is not the DeepSpeed engine's "
            f"optimizer; pass the (engine, optimizer) pair returned by prepare() (or optimizer=None)"
        )
    k = check_deepspeed_agrees(engine, cfg)
    precision = DeepSpeedPrecision(engine)
    dtype = precision.dtype
    if functions.device is None:
        functions = functions.on_device(getattr(engine, "device", None))
    window = AccumulationWindow(k, on_leftover=_warn_of_leftover_gradients)
    last_batch: list[Any] = []  # kept only while the epoch's length is unknown (to close its final window)
    update = _deepspeed_update(engine, functions, dtype, window, last_batch)

    def close_window() -> None:
        if last_batch:
            x, y = last_batch.pop()
            _end_window_after_the_epoch(engine, functions, x, y)
            window.pending = False

    trainer = DeterministicEngine(update) if deterministic else Engine(update)
    window.attach(trainer, close_window)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: last_batch.clear())
    # the precision (checkpointed with the speedups), the steps per optimizer step the loop counts, and the
    # window the loop positions on resume
    TrainerParts.of(trainer).set_step(precision, k, window, engine)
    return trainer


def _deepspeed_update(
    engine: Any,
    functions: SupervisedFunctions,
    dtype: torch.dtype | None,
    window: AccumulationWindow,
    last_batch: list[Any],
) -> ProcessFunction:
    """The process function: one micro-step of DeepSpeed, with the window's end decided by ``window``. While
    the epoch's length is unknown, the last batch of an open window is kept in ``last_batch``."""
    k = window.k

    def update(trainer: Engine, batch: Any) -> Any:
        if not engine.training:
            engine.train()
        epoch_length = trainer.state.epoch_length
        steps_now = window.next_batch(epoch_length)
        x_y = functions.prepare(batch)
        x, y = x_y if dtype is None else cast_floating(x_y, dtype)
        engine.set_gradient_accumulation_boundary(steps_now)
        _, y_pred, loss = functions.forward(engine, x, y)
        engine.backward(loss)  # divides by gradient_accumulation_steps, as Lightning does
        window.pending = True
        if steps_now:
            engine.step()
            window.pending = False
        elif epoch_length is None and k > 1:
            last_batch[:] = [(x, y)]
        return functions.output_transform(x, y, y_pred, loss)

    return update


def _end_window_after_the_epoch(engine: Any, functions: SupervisedFunctions, x: Any, y: Any) -> None:
    """Step the window that an epoch of unknown length ended inside, with ``(x, y)`` its last batch."""
    # DeepSpeed reduces gradients in the backward of the batch that ends the window, and has no call to do it
    # afterwards: run one more backward, on the last batch with the loss times 0 (gradients unchanged), as the
    # window's end. In eval mode, so that it changes no BatchNorm statistics and draws no dropout masks.
    engine.set_gradient_accumulation_boundary(True)
    modes = [(m, m.training) for m in engine.modules()]
    engine.eval()
    try:
        _, _, loss = functions.forward(engine, x, y)
        engine.backward(loss * 0.0)
    finally:
        for module, training in modes:  # (submodules a user froze stay in eval)
            module.training = training
    engine.step()


def _warn_of_leftover_gradients() -> None:
    # (the window drops the epoch's pending flag itself once this returns)
    warnings.warn(
        "the previous epoch ended inside a gradient accumulation window; DeepSpeed has no call to "
        "discard the gradients accumulated there, so they are added to this epoch's first window "
        "(other strategies discard them, as Lightning does)",
        UserWarning,
        stacklevel=2,
    )
