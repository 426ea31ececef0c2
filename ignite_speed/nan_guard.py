"""Stop training when the training loss is NaN or infinite (opt-in: ``terminate_on_nan=True``).

Lightning 1.x had a ``terminate_on_nan`` flag and Ignite has ``TerminateOnNan``; this guard is a stop
source of the :class:`~ignite_speed.stop.StopController` instead, so the stop is synced across ranks
(every rank ends on the same iteration) and recorded with its own reason, ``NON_FINITE_LOSS``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch

from .stop import StopController, StopReason

__all__ = ["NonFiniteLossGuard"]


def _leaves(value: Any) -> Iterator[float | torch.Tensor]:
    """Numbers and floating-point tensors inside ``value`` (nested dicts, lists and tuples)."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() or value.is_complex():
            yield value
    elif isinstance(value, bool):
        return
    elif isinstance(value, numbers.Number):
        yield value  # type: ignore[misc]
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _leaves(item)


def first_non_finite(value: Any) -> str | None:
    """A short description of the first non-finite part of ``value``, or ``None`` when all is finite.

    Python numbers are checked on the host; tensors are reduced on their device and read back with
    one transfer per device (none when the output holds only Python numbers).
    """
    by_device: dict[torch.device, list[torch.Tensor]] = {}
    for leaf in _leaves(value):
        if isinstance(leaf, torch.Tensor):
            by_device.setdefault(leaf.device, []).append(leaf)
        elif isinstance(leaf, numbers.Real):
            if not math.isfinite(leaf):
                return repr(float(leaf))
        elif not (math.isfinite(leaf.real) and math.isfinite(leaf.imag)):  # type: ignore[union-attr]
            return repr(leaf)
    for tensors in by_device.values():
        finite = torch.stack([torch.isfinite(t.detach()).all() for t in tensors])
        if not bool(finite.all()):
            bad = tensors[int((~finite).nonzero()[0])]
            return "nan" if bool(torch.isnan(bad.detach()).any()) else "inf"
    return None


class NonFiniteLossGuard:
    """Request a stop (reason ``NON_FINITE_LOSS``) when the training output is not finite.

    Args:
        output_transform: picks the loss out of ``trainer.state.output`` (default: all of it). The
            result may be a number, a tensor, or a dict/list/tuple of them; every floating-point
            element must be finite.
    """

    source = "terminate_on_nan"

    def __init__(self, output_transform: Callable[[Any], Any] = lambda out: out) -> None:
        if not callable(output_transform):
            raise TypeError(f"NonFiniteLossGuard(output_transform={output_transform!r}) is not callable; accepted: "
                            f"a function of trainer.state.output")
        self.output_transform = output_transform
        self._controller: StopController | None = None

    def bind(self, controller: StopController) -> None:
        """Send requests to ``controller`` (otherwise: the trainer's, see :meth:`StopController.of`)."""
        self._controller = controller

    def check(self, trainer: Any, controller: StopController | None = None) -> None:
        """Inspect ``trainer.state.output``; request a stop when it is not finite (no sync here).

        The request goes to ``controller``, else the bound one, else the trainer's."""
        controller = controller or self._controller or StopController.of(trainer)
        if controller is None:
            raise RuntimeError("NonFiniteLossGuard has no StopController: call bind() or attach() first")
        bad = first_non_finite(self.output_transform(trainer.state.output))
        if bad is not None:
            state = trainer.state
            controller.request(StopReason.NON_FINITE_LOSS,
                               f"training loss is {bad} at epoch {max(state.epoch - 1, 0)} (0-based), "
                               f"iteration {state.iteration}; stopping", self.source)

    def attach(self, trainer: Any, min_epochs: int = 0, min_steps: int = 0) -> NonFiniteLossGuard:
        """Standalone use in a plain Ignite app: check after every iteration, sync across ranks, and
        terminate every rank on the same iteration (after ``min_epochs`` / ``min_steps`` as any stop)."""
        from ignite.engine import Events

        controller = StopController.of_or_new(trainer, min_epochs=min_epochs, min_steps=min_steps,
                                              caller="NonFiniteLossGuard.attach")
        self.bind(controller)

        def maybe_terminate(engine: Any, epochs_done: int) -> None:
            if controller.pending is not None and not engine.should_terminate and \
                    controller.should_stop(epochs_done, engine.state.iteration):
                controller.finish()
                engine.terminate()

        def iteration_completed(engine: Any) -> None:
            self.check(engine)
            controller.sync()
            maybe_terminate(engine, engine.state.epoch - 1)

        trainer.add_event_handler(Events.ITERATION_COMPLETED, iteration_completed)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: maybe_terminate(engine, engine.state.epoch))
        return self
