"""``create_trainer``: Ignite's ``create_supervised_trainer`` with the precision, accumulation and clipping flags.

Same positional arguments, defaults and ``state.output`` (``loss.item()``) as Ignite's factory, so it drops in.
Gradient accumulation follows Lightning rather than Ignite: windows are counted within each epoch, the last
batch of an epoch always steps, and DDP skips its all-reduce (``no_sync``) on the batches that do not step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any, cast

import torch
from ignite.engine import DeterministicEngine, Engine, Events, _prepare_batch
from torch.nn.parallel import DistributedDataParallel as DDP

from .config import SpeedConfig
from .precision import Precision

__all__ = ["create_trainer"]


class _AccumulationWindow:
    """Counts batches within the epoch to decide which ones step the optimizer (every k-th and the last)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.batch_in_epoch = 0
        self.pending = False  # gradients accumulated since the last optimizer step
        self._resume_offset = 0
        self._cut_short = False

    def attach(self, engine: Engine, flush: Callable[[], None]) -> None:
        def on_started(engine: Engine) -> None:
            # Resuming mid-epoch from a checkpoint: Ignite itself places us at iteration % epoch_length.
            length = engine.state.epoch_length
            self._resume_offset = engine.state.iteration % length if length else 0

        def on_epoch_started(engine: Engine) -> None:
            self.batch_in_epoch, self._resume_offset = self._resume_offset, 0
            self.pending = False  # leftovers of an interrupted epoch are dropped: next batch zeroes the grads
            self._cut_short = False

        def on_epoch_cut_short(engine: Engine, iter_counter: int | None = None) -> None:
            self._cut_short = True

        def on_epoch_completed(engine: Engine) -> None:
            # epoch_length was unknown during the epoch (iterator without len): the final partial window still
            # steps, as it would on a known last batch. An epoch ended early (terminate_epoch(): a stop request,
            # max_steps, end_epoch()) does not step its partial window, as in Lightning.
            if self.pending and not engine.should_terminate and not self._cut_short:
                flush()

        engine.add_event_handler(Events.STARTED, on_started)
        engine.add_event_handler(Events.EPOCH_STARTED, on_epoch_started)
        engine.add_event_handler(Events.TERMINATE_SINGLE_EPOCH, on_epoch_cut_short)
        engine.add_event_handler(Events.EPOCH_COMPLETED, on_epoch_completed)

    def next_batch(self, epoch_length: int | None) -> bool:
        """Advance by one batch; True when this batch ends an accumulation window."""
        self.batch_in_epoch += 1
        last = epoch_length is not None and self.batch_in_epoch >= epoch_length
        return self.batch_in_epoch % self.k == 0 or last


def _is_ddp(model: torch.nn.Module) -> bool:
    return isinstance(model, DDP)


def create_trainer(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Any, Any], torch.Tensor] | torch.nn.Module,
    cfg: SpeedConfig | Mapping[str, Any] | None = None,
    *,
    device: str | torch.device | None = None,
    non_blocking: bool = False,
    prepare_batch: Callable = _prepare_batch,
    model_transform: Callable[[Any], Any] = lambda output: output,
    output_transform: Callable[[Any, Any, Any, torch.Tensor], Any] = lambda x, y, y_pred, loss: loss.item(),
    model_fn: Callable[[torch.nn.Module, Any], Any] = lambda model, x: model(x),
    deterministic: bool = False,
    precision: Precision | None = None,
) -> Engine:
    """A supervised trainer that honours ``precision``, ``accumulate_grad_batches``, ``gradient_clip_val``
    and ``gradient_clip_algorithm`` from ``cfg``.

    Arguments after ``cfg`` mean what they mean in Ignite's ``create_supervised_trainer``: ``device`` only
    moves batches (move the model yourself), the model is called as ``model_fn(model, x)``, and
    ``state.output`` is ``output_transform(x, y, y_pred, loss)`` (``loss.item()`` by default, the loss before
    it is divided by ``accumulate_grad_batches``).

    For ``*-true`` precisions the model is cast in place here. ``precision`` passes a ready
    :class:`~ignite_speed.precision.Precision` (e.g. one with ``scaler=True``) instead of building one from
    ``cfg``. The object used is available as ``trainer.speed_precision`` (checkpoint its ``state_dict()``).
    """
    cfg = cfg if isinstance(cfg, SpeedConfig) else SpeedConfig.from_any(cfg)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model has type {type(model).__name__}; accepted: a torch.nn.Module")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer has type {type(optimizer).__name__}; accepted: a torch.optim.Optimizer")
    if precision is None:
        if device is None and cfg.accelerator == "auto":
            # Autocast must target where the model actually lives, not merely where a GPU exists.
            param = next(model.parameters(), None)
            device = param.device if param is not None else None
        precision = Precision.from_config(cfg, device=device)
    elif not isinstance(precision, Precision):
        raise TypeError(f"precision={precision!r} has type {type(precision).__name__}; accepted: None or an "
                        f"ignite_speed.Precision")
    elif "precision" in cfg.explicit and cfg.precision != precision.requested_precision:
        raise ValueError(f"precision={cfg.precision!r} in cfg conflicts with the Precision object passed "
                         f"({precision.requested_precision!r}); give only one")

    model, optimizer = precision.setup(model, optimizer)
    k = cfg.accumulate_grad_batches
    clip_val, clip_algorithm = cfg.gradient_clip_val, cfg.gradient_clip_algorithm
    window = _AccumulationWindow(k)
    ddp = _is_ddp(model)

    def optimizer_step() -> None:
        if clip_val:
            precision.clip_gradients(optimizer, clip_val, clip_algorithm)
        precision.step(optimizer, model)
        window.pending = False

    def update(engine: Engine, batch: Any) -> Any:
        # Back to training mode after an evaluation switched the model to eval. Checked on the root module:
        # model.train() walks every submodule (about 0.1 ms for a 27-module conv net), too much for every
        # batch, and submodules a user put in eval on purpose (frozen BatchNorm) stay as they are.
        if not model.training:
            model.train()
        steps_now = window.next_batch(engine.state.epoch_length)
        if not window.pending:
            optimizer.zero_grad()
        x, y = precision.convert_input(prepare_batch(batch, device=device, non_blocking=non_blocking))
        # DDP all-reduces in backward; only the batch that steps needs it.
        sync = cast(DDP, model).no_sync() if ddp and not steps_now else contextlib.nullcontext()
        with sync:
            with precision.autocast():
                output = model_fn(model, x)
                y_pred = model_transform(output)
                loss = loss_fn(y_pred, y)
            # Lightning divides by k on every batch, including a shorter final window.
            precision.backward(loss / k if k > 1 else loss, optimizer, model)
        window.pending = True
        if steps_now:
            optimizer_step()
        return output_transform(x, y, y_pred, loss)

    trainer = DeterministicEngine(update) if deterministic else Engine(update)
    window.attach(trainer, optimizer_step)
    trainer.speed_precision = precision  # type: ignore[attr-defined]
    # standalone loop handlers count optimizer steps with it (attach_speedups reads the cfg)
    trainer.speed_accumulate_grad_batches = k  # type: ignore[attr-defined]
    return trainer
