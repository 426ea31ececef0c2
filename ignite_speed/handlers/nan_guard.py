"""Stop training when the training loss is NaN or infinite (opt-in: ``terminate_on_nan=True``).

Lightning 1.x had a ``terminate_on_nan`` flag and Ignite has ``TerminateOnNan``; this guard is a stop
source of the :class:`~ignite_speed.loop.StopController` instead, so the stop is synced across ranks
(every rank ends on the same iteration) and recorded with its own reason, ``NON_FINITE_LOSS``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from ignite.engine import Engine

from ..loop.state import Stage
from ..loop.stop import StopController, StopReason
from .base import LoopHandler

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
    if type(value) is float:  # the common output of a training step (loss.item()): no tree walk
        return None if math.isfinite(value) else repr(value)
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


def _message(state: Any, bad: str) -> str:
    return f"training loss is {bad} at epoch {max(state.epoch - 1, 0)} (0-based), iteration {state.iteration}; stopping"


class NonFiniteLossGuard(LoopHandler):
    """Request a stop (reason ``NON_FINITE_LOSS``) when the training output is not finite.

    Attached alone (``attach(trainer)``) in a plain Ignite app it checks after every iteration; the trainer's
    loop syncs the stop across ranks and ends the run on every rank after the same iteration. A non-finite
    loss does not wait for ``min_epochs`` / ``min_steps`` (give those to :class:`LoopLimits`).

    Args:
        output_transform: picks the loss out of ``trainer.state.output`` (default: all of it). The
            result may be a number, a tensor, or a dict/list/tuple of them; every floating-point
            element must be finite.
    """

    name = "nan_guard"
    order = 0  # first: its deferred device-side flag reports before the other stop sources decide
    source = "terminate_on_nan"

    def __init__(self, output_transform: Callable[[Any], Any] = lambda out: out) -> None:
        super().__init__()
        if not callable(output_transform):
            raise TypeError(
                f"NonFiniteLossGuard(output_transform={output_transform!r}) is not callable; accepted: "
                f"a function of trainer.state.output"
            )
        self.output_transform = output_transform
        # accelerator tensors are not read on the host per batch: a device-side "some element was not finite"
        # flag, and the iterations it covers, wait for the next agreement batch (on_agreement)
        self._device_bad: torch.Tensor | None = None
        self._device_since: tuple[int, int] | None = None  # (epoch, iteration) of the first batch it covers
        self._copy: tuple[torch.Tensor, Any, tuple[int, int], int] | None = None  # flag on its way to the host

    def check(self, trainer: Engine, controller: StopController | None = None) -> None:
        """Inspect ``trainer.state.output``; request a stop when it is not finite (no sync here).

        The request goes to ``controller``, else the trainer's."""
        controller = controller or StopController.of(trainer)
        if controller is None:
            raise RuntimeError("NonFiniteLossGuard has no StopController: call attach() first")
        bad = first_non_finite(self.output_transform(trainer.state.output))
        if bad is not None:
            controller.request(StopReason.NON_FINITE_LOSS, _message(trainer.state, bad), self.source)

    def on_batch_end(self, engine: Engine) -> None:
        """The per-batch check the trainer's loop runs (after the user's ``ITERATION_COMPLETED`` handlers).

        Numbers and CPU tensors are checked now; tensors on an accelerator only add to a flag on their
        device, which :meth:`on_agreement` reads at the loop's next agreement batch (no host read per batch)."""
        value = self.output_transform(engine.state.output)
        if type(value) is float:  # the common case (loss.item()): no tree walk
            if not math.isfinite(value):
                self._request(engine, repr(value))
            return
        on_host: list[Any] = []
        for leaf in _leaves(value):
            if isinstance(leaf, torch.Tensor) and leaf.device.type != "cpu":
                bad = ~torch.isfinite(leaf.detach()).all()
                self._device_bad = bad if self._device_bad is None else self._device_bad | bad.to(self._device_bad)
                if self._device_since is None:
                    self._device_since = (max(engine.state.epoch - 1, 0), engine.state.iteration)
            else:
                on_host.append(leaf)
        bad_host = first_non_finite(on_host)
        if bad_host is not None:
            self._request(engine, bad_host)

    def on_agreement(self, engine: Engine) -> None:
        """Report the device-side flag of earlier batches. On CUDA without waiting for the device: the flag
        is copied to pinned host memory asynchronously, and a copy that has arrived by a later agreement is read
        there (no synchronizing host read in the loop). Other accelerators read it here."""
        if self._copy is not None and self._copy[1].query():
            host, _, first, last = self._copy
            self._copy = None
            if bool(host):
                self._request_range(first, last)
        flag, first_seen = self._device_bad, self._device_since
        if flag is None or first_seen is None or self._copy is not None:
            return  # nothing new, or the last copy is still on its way (the flag keeps accumulating)
        self._device_bad = self._device_since = None
        if flag.device.type != "cuda":
            if bool(flag):
                self._request_range(first_seen, engine.state.iteration)
            return
        host = torch.empty((), dtype=torch.bool, pin_memory=True)
        host.copy_(flag, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self._copy = (host, event, first_seen, engine.state.iteration)

    def _request_range(self, first: tuple[int, int], last: int) -> None:
        self.loop.controller.request(
            StopReason.NON_FINITE_LOSS,
            f"training loss is not finite (nan or inf) in iterations {first[1]}..{last} "
            f"(the first in epoch {first[0]}, 0-based); stopping",
            self.source,
        )

    def _request(self, engine: Engine, bad: str) -> None:
        self.loop.controller.request(StopReason.NON_FINITE_LOSS, _message(engine.state, bad), self.source)

    def state_dict(self) -> dict[str, Any]:
        """A checkpoint written after a batch and before the loop's decision on it: the request this batch's
        output makes (the resumed run replays that decision; the output is in no checkpoint)."""
        loop = self._loop
        if loop is None or loop.state.stage is not Stage.BATCH_PENDING:
            return {"requests": []}
        probe = StopController()
        self.check(loop.trainer, probe)
        return {"requests": [r.to_dict() for r in probe.local_requests()]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for request in state.get("requests") or []:
            self.loop.controller.request(request["reason"], request["message"], request["source"])
