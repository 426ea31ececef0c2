"""``create_trainer``: Ignite's ``create_supervised_trainer`` with the precision, accumulation and clipping flags.

Same positional arguments, defaults and ``state.output`` (``loss.item()``) as Ignite's factory, so it drops in.
Gradient accumulation follows Lightning rather than Ignite: windows are counted within each epoch, the last
batch of an epoch always steps, and DDP (and fairscale's ShardedDataParallel) skip their gradient reduction
(``no_sync``) on the batches that do not step.

It takes the model and optimizer of every strategy that :func:`~ignite_speed.distributed.prepare` makes: a
DeepSpeed engine is driven through ``engine.backward``/``engine.step``, with DeepSpeed applying accumulation,
clipping and fp16/bf16 from its config, and told by ignite-speed which batches end a window.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from ignite.engine import DeterministicEngine, Engine, Events, _prepare_batch

from ..config.speed_config import SpeedConfig
from ..distributed import warn_if_not_launched
from ..loop.trainer_parts import TrainerParts
from .accumulation import AccumulationWindow
from .deepspeed_step import DeepSpeedPrecision, deepspeed_trainer, is_deepspeed_engine
from .precision import Precision
from .rehearsal import StepRehearsal
from .supervised_functions import SupervisedFunctions
from .supervised_step import build_supervised_step

__all__ = ["create_trainer", "precision_of", "DeepSpeedPrecision"]


def precision_of(trainer: Engine) -> Any:
    """The precision object that ``create_trainer``'s step of ``trainer`` applies (a
    :class:`~ignite_speed.step.Precision`, or a ``DeepSpeedPrecision`` for a DeepSpeed engine); ``None`` for a
    trainer that ``create_trainer`` did not make."""
    parts = TrainerParts.find(trainer)
    return None if parts is None else parts.precision


def create_trainer(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | Any,
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
    moves batches (move the model yourself; by default batches go where the model's parameters are when
    those are on an accelerator or ``accelerator="auto"``), the model is called as ``model_fn(model, x)``, and
    ``state.output`` is ``output_transform(x, y, y_pred, loss)`` (``loss.item()`` by default, the loss before
    it is divided by ``accumulate_grad_batches``).

    For ``*-true`` precisions the model is cast in place here. ``precision`` passes a ready
    :class:`~ignite_speed.step.Precision` (e.g. one with ``scaler=True``) instead of building one from
    ``cfg``. The object used is available as ``precision_of(trainer)`` (checkpoint its ``state_dict()``).

    ``model`` and ``optimizer`` may be what :func:`~ignite_speed.distributed.prepare` returned for any
    strategy. For a DeepSpeed engine (pass the ``cfg`` given to ``prepare``) DeepSpeed applies the
    accumulation, clipping and fp16/bf16 of its config, so they must agree with ``cfg``; batches go to the
    engine's device when ``device`` is None, floating inputs are cast to its fp16/bf16, and
    ``precision_of(trainer)`` is a ``DeepSpeedPrecision`` that only names the precision DeepSpeed applies
    (its loss scale is saved by ``DeepSpeedCheckpoint``).
    """
    cfg = cfg if isinstance(cfg, SpeedConfig) else SpeedConfig.from_any(cfg)
    warn_if_not_launched(cfg, "create_trainer")
    functions = SupervisedFunctions(
        loss_fn, prepare_batch, model_fn, model_transform, output_transform, device, non_blocking
    )
    if is_deepspeed_engine(model):
        if precision is not None:
            raise ValueError(
                "precision= cannot be combined with a DeepSpeed engine: DeepSpeed applies fp16/bf16 "
                "itself, as the precision flag given to prepare() configured it"
            )
        return deepspeed_trainer(model, optimizer, cfg, functions, deterministic=deterministic)
    _check_model_and_optimizer(model, optimizer)
    if device is None:
        device = _batch_device(model, cfg.accelerator)
    precision = _resolve_precision(precision, cfg, device)
    model, optimizer = precision.setup(model, optimizer)
    return _supervised_trainer(model, optimizer, precision, cfg, functions.on_device(device), deterministic)


def _check_model_and_optimizer(model: Any, optimizer: Any) -> None:
    """Refuse a model or optimizer of a type the plain (not DeepSpeed) step cannot drive."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model has type {type(model).__name__}; accepted: a torch.nn.Module")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer has type {type(optimizer).__name__}; accepted: a torch.optim.Optimizer (or, "
            f"with the DeepSpeed engine as model, the optimizer prepare() returned with it)"
        )


def _resolve_precision(precision: Precision | None, cfg: SpeedConfig, device: str | torch.device | None) -> Precision:
    """The ``Precision`` the step applies: ``cfg``'s, or the one passed as ``precision=`` (which ``cfg`` must
    not contradict)."""
    if precision is None:
        return Precision.from_config(cfg, device=device)
    if not isinstance(precision, Precision):
        raise TypeError(
            f"precision={precision!r} has type {type(precision).__name__}; accepted: None or an ignite_speed.Precision"
        )
    if "precision" in cfg.explicit and cfg.precision != precision.requested_precision:
        raise ValueError(
            f"precision={cfg.precision!r} in cfg conflicts with the Precision object passed "
            f"({precision.requested_precision!r}); give only one"
        )
    return precision


def _supervised_trainer(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    precision: Precision,
    cfg: SpeedConfig,
    functions: SupervisedFunctions,
    deterministic: bool,
) -> Engine:
    """The trainer of a plain model (``precision`` set up on it already), with its accumulation window."""
    k = cfg.accumulate_grad_batches
    window = AccumulationWindow(k)
    update, close_window = build_supervised_step(
        model,
        optimizer,
        precision,
        functions,
        window,
        clip_val=cfg.gradient_clip_val,
        clip_algorithm=cfg.gradient_clip_algorithm,
    )
    trainer = DeterministicEngine(update) if deterministic else Engine(update)
    window.attach(trainer, close_window)
    _warn_if_loop_flags_unapplied(trainer, cfg)
    # the precision (checkpointed with the speedups), the steps per optimizer step the loop counts, and the
    # window the loop positions on resume
    parts = TrainerParts.of(trainer)
    parts.set_step(precision, k, window, model)
    parts.rehearsal = StepRehearsal(update, model, optimizer, precision, window)  # (a fast_dev_run's projection)
    return trainer


# Flags that the loop applies (attach_speedups or the handlers), not the training step.
_LOOP_FLAGS = (
    "max_epochs",
    "min_epochs",
    "max_steps",
    "min_steps",
    "max_time",
    "max_time_mode",
    "max_time_reserve",
    "limit_train_batches",
    "limit_val_batches",
    "limit_test_batches",
    "limit_predict_batches",
    "overfit_batches",
    "fast_dev_run",
    "val_check_interval",
    "check_val_every_n_epoch",
    "num_sanity_val_steps",
    "early_stopping",
    "terminate_on_nan",
    "batched_fetch",
    "preemption_signals",
    "autoresume",
)


def _warn_if_loop_flags_unapplied(trainer: Engine, cfg: SpeedConfig) -> None:
    """Loop flags given to create_trainer do nothing there: when the run starts with no ignite-speed loop on
    the trainer (no attach_speedups), name them once."""
    given = [name for name in _LOOP_FLAGS if name in cfg.explicit]
    if not given:
        return

    checked = [False]  # once (removing a handler while Ignite fires the event would skip the next one)

    def check(engine: Engine) -> None:
        from ..loop.training_loop import TrainingLoop

        if checked[0] or TrainingLoop.of(engine) is not None:
            return
        checked[0] = True
        from .._callers import warn_at_users_line

        flags = ", ".join(f"{name}={getattr(cfg, name)!r}" for name in given)
        warn_at_users_line(
            f"{flags} given to create_trainer is applied by attach_speedups (or the handlers of "
            f"ignite_speed.handlers), and none is attached to this trainer: pass the same cfg to "
            f"attach_speedups(trainer, evaluator, cfg, ...) before trainer.run",
            UserWarning,
        )

    trainer.add_event_handler(Events.STARTED, check)


def _batch_device(model: torch.nn.Module, accelerator: str) -> torch.device | None:
    """Where batches go when ``device`` is not given: where the model's parameters are, when the model is on
    an accelerator (``prepare`` put it on this rank's GPU or XLA device) or ``accelerator="auto"`` (so that
    autocast targets where the model actually lives, not merely where a GPU exists); else None (not moved)."""
    param = next(model.parameters(), None)
    if param is None:
        return None
    if accelerator == "auto" or param.device.type != "cpu":
        return param.device
    return None
