"""The user's functions of a supervised step, as Ignite's ``create_supervised_trainer`` takes them.

Both of ``create_trainer``'s steps (plain and DeepSpeed) call them in the same order, through this one object.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from ignite.engine import Engine

__all__ = ["SupervisedFunctions", "ProcessFunction"]

# what Engine(process_function) calls for every batch
ProcessFunction = Callable[[Engine, Any], Any]


@dataclasses.dataclass(frozen=True, eq=False)
class SupervisedFunctions:
    """``prepare_batch``, ``model_fn``, ``model_transform``, ``loss_fn`` and ``output_transform`` (meaning what
    they mean in Ignite's ``create_supervised_trainer``), and the ``device``/``non_blocking`` of the batches."""

    loss_fn: Callable[[Any, Any], torch.Tensor] | torch.nn.Module
    prepare_batch: Callable[..., Any]
    model_fn: Callable[[Any, Any], Any]  # (model, x); the model may be a DeepSpeed engine
    model_transform: Callable[[Any], Any]
    output_transform: Callable[[Any, Any, Any, torch.Tensor], Any]
    device: str | torch.device | None
    non_blocking: bool

    def on_device(self, device: str | torch.device | None) -> SupervisedFunctions:
        """The same functions, with batches going to ``device``."""
        return dataclasses.replace(self, device=device)

    def prepare(self, batch: Any) -> Any:
        """``prepare_batch`` of ``batch``: the ``(x, y)`` pair on the batch device."""
        return self.prepare_batch(batch, device=self.device, non_blocking=self.non_blocking)

    def forward(self, model: Any, x: Any, y: Any) -> tuple[Any, Any, torch.Tensor]:
        """``(output, y_pred, loss)``: ``model_fn(model, x)``, its ``model_transform`` and the loss of that."""
        output = self.model_fn(model, x)
        y_pred = self.model_transform(output)
        return output, y_pred, self.loss_fn(y_pred, y)
