"""The process function of ``create_trainer``'s step for a plain model (not a DeepSpeed engine): forward under
the precision's autocast, backward, and an optimizer step (clipped) at the end of each accumulation window."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from ignite.engine import Engine

from .accumulation import AccumulationWindow, WindowReduction
from .precision import Precision
from .supervised_functions import ProcessFunction, SupervisedFunctions

__all__ = ["build_supervised_step"]


def build_supervised_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    precision: Precision,
    functions: SupervisedFunctions,
    window: AccumulationWindow,
    *,
    clip_val: float | None,
    clip_algorithm: str,
) -> tuple[ProcessFunction, Callable[[], None]]:
    """``(update, close_window)``: the process function, and what steps the last window of an epoch whose
    length was unknown (``window.attach`` calls it at the epoch's end)."""
    k = window.k
    reduction = WindowReduction(model, k)

    def optimizer_step() -> None:
        if clip_val:
            precision.clip_gradients(optimizer, clip_val, clip_algorithm)
        precision.step(optimizer, model)
        window.pending = False

    def close_window() -> None:  # the last window of an epoch whose length was unknown
        reduction.reduce_skipped()
        optimizer_step()

    def update(engine: Engine, batch: Any) -> Any:
        # Back to training mode after an evaluation switched the model to eval. Checked on the root module:
        # model.train() walks every submodule (about 0.1 ms for a 27-module conv net), too much for every
        # batch, and submodules a user put in eval on purpose (frozen BatchNorm) stay as they are.
        if not model.training:
            model.train()
        epoch_length = engine.state.epoch_length
        steps_now = window.next_batch(epoch_length)
        if not window.pending:
            optimizer.zero_grad()
        x, y = precision.convert_input(functions.prepare(batch))
        with reduction.during_batch(steps_now, epoch_length):
            with precision.autocast():
                _, y_pred, loss = functions.forward(model, x, y)
            # Lightning divides by k on every batch, including a shorter final window.
            precision.backward(loss / k if k > 1 else loss, optimizer, model)
        window.pending = True
        if steps_now:
            optimizer_step()
        return functions.output_transform(x, y, y_pred, loss)

    return update, close_window
