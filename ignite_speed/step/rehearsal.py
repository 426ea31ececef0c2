"""Time a training step, the training data's fetch and the evaluator's step when they are warm, after a
``fast_dev_run``: call them again, then put back everything the calls changed.

A ``fast_dev_run`` trains one batch (or a few): the first calls of a step initialise lazily (the autograd
engine's threads, kernels picked for the shapes, the optimizer's state), so the batches it ran say little of
a steady step. After the run, the projection rehearses the step a few times on the run's last batch and
times it; before and after, :class:`StepRehearsal` saves and puts back the model's parameters, gradients,
buffers and modes, the optimizer's state, the precision's loss scale, the accumulation window and the random
number generators, so the debug run ends exactly as it would have without the rehearsal. Only a step whose
every state is known can be rehearsed: ``create_trainer``'s (not a DeepSpeed engine's) and Ignite's
``create_supervised_trainer``'s (:func:`ignite_step_rehearsal`), in one process (the gradient all-reduce of
data-parallel ranks would need every rank to rehearse alike), on a device that runs a call when it is made.
The model's forward hooks see the extra calls.

:func:`time_fetches` times the fetch of a few batches from a new iterator of the training ``DataLoader`` (read
in this process), its first fetch left out (it draws the epoch's order), with the generators put back.
:func:`time_evaluator_step` calls the evaluator's step on its last batch as the sanity check does (no event,
no metric), with the model and the generators put back.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from ignite.engine import Engine
from torch.utils.data import DataLoader, IterableDataset

from .._compat import process_function
from ..loop.resume import capture_rng, restore_rng
from .accumulation import AccumulationWindow
from .precision import Precision

__all__ = ["StepRehearsal", "ignite_step_rehearsal", "time_evaluator_step", "time_fetches"]

MAX_CALLS = 12  # rehearsal calls at most: a small step reaches its pace within a few
MIN_CALLS = 1
BUDGET_SECONDS = 0.25  # no call is started once the rehearsal has taken this long (a slow step: one call)


class StepRehearsal:
    """Rehearse ``update`` on a batch and undo its effects: ``create_trainer``'s process function (with its
    ``precision`` and accumulation ``window``), or Ignite's ``create_supervised_trainer``'s (its GradScaler as
    ``precision``: :func:`ignite_step_rehearsal`). ``precision`` is anything with ``state_dict`` and
    ``load_state_dict``."""

    def __init__(
        self,
        update: Callable[[Engine, Any], Any],
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        precision: Precision | torch.amp.GradScaler | None = None,
        window: AccumulationWindow | None = None,
    ) -> None:
        self.update, self.model, self.optimizer = update, model, optimizer
        self.precision, self.window = precision, window

    def time(self, engine: Engine, batch: Any, time_source: Callable[[], float]) -> list[float]:
        """Call the step on ``batch`` until :data:`MAX_CALLS` calls or :data:`BUDGET_SECONDS` spent (at least
        :data:`MIN_CALLS`); the seconds of each call on ``time_source``. Everything the calls changed is put
        back, also when one raises (which is raised)."""
        saved = self._save()
        try:
            return _timed_calls(lambda: self.update(engine, batch), self.model, time_source)
        finally:
            self._restore(saved)

    # ------------------------------------------------------------------ what a step changes
    def _save(self) -> dict[str, Any]:
        return {
            "model": _save_model(self.model),
            # (per parameter: deep-copying the state itself would copy its keys, the parameters)
            "optimizer": {p: copy.deepcopy(s) for p, s in self.optimizer.state.items()},
            "precision": None if self.precision is None else copy.deepcopy(self.precision.state_dict()),
            "window": None if self.window is None else dict(vars(self.window)),
            "rng": capture_rng(),
        }

    def _restore(self, saved: dict[str, Any]) -> None:
        _restore_model(self.model, saved["model"])
        self.optimizer.state.clear()
        self.optimizer.state.update(saved["optimizer"])
        if self.precision is not None:
            self.precision.load_state_dict(saved["precision"])
        if self.window is not None:
            vars(self.window).update(saved["window"])
        restore_rng(saved["rng"])


# Ignite's create_supervised_trainer steps whose every state is known: the model, the optimizer (and the scaler).
# Their accumulation counts Ignite's iteration, which a rehearsal does not change; apex's and the TPU's are left.
_IGNITE_STEPS = ("supervised_training_step.<locals>.update", "supervised_training_step_amp.<locals>.update")


def ignite_step_rehearsal(trainer: Engine) -> StepRehearsal | None:
    """A rehearsal of ``trainer``'s step when it is Ignite's ``create_supervised_trainer``'s (found by its
    function and its closure's model, optimizer and scaler), else ``None``."""
    update = process_function(trainer)
    if (
        getattr(update, "__module__", None) != "ignite.engine"
        or getattr(update, "__qualname__", "") not in _IGNITE_STEPS
    ):
        return None
    cells = dict(zip(update.__code__.co_freevars, (c.cell_contents for c in update.__closure__ or ())))
    model, optimizer, scaler = cells.get("model"), cells.get("optimizer"), cells.get("scaler")
    if not isinstance(model, torch.nn.Module) or not isinstance(optimizer, torch.optim.Optimizer):
        return None
    scaler = scaler or None  # (scaler=False: none; scaler=True made one, which the closure holds)
    if scaler is not None and not isinstance(scaler, torch.amp.GradScaler):
        return None
    return StepRehearsal(update, model, optimizer, scaler)


def time_evaluator_step(
    evaluator: Engine, model: torch.nn.Module | None, time_source: Callable[[], float]
) -> list[float] | None:
    """The seconds of calls of ``evaluator``'s process function on its last batch (no event, no metric: as the
    sanity check calls it), then ``model``'s tensors and modes and the generators put back. ``None`` without
    a ``model`` to put back (an evaluator's step may switch it to eval mode) or a batch."""
    batch = evaluator.state.batch if evaluator.state is not None else None
    if model is None or batch is None:
        return None
    step = process_function(evaluator)
    saved, rng = _save_model(model), capture_rng()
    try:
        return _timed_calls(lambda: step(evaluator, batch), model, time_source)
    finally:
        _restore_model(model, saved)
        restore_rng(rng)


def _timed_calls(call: Callable[[], Any], model: torch.nn.Module, time_source: Callable[[], float]) -> list[float]:
    """Call until :data:`MAX_CALLS` calls or :data:`BUDGET_SECONDS` spent (at least :data:`MIN_CALLS`)."""
    wait = _device_wait(model)
    seconds: list[float] = []
    while len(seconds) < MIN_CALLS or (len(seconds) < MAX_CALLS and sum(seconds) < BUDGET_SECONDS):
        started = time_source()
        call()
        wait()  # (a step whose output is a tensor has not waited for its kernels)
        seconds.append(time_source() - started)
    return seconds


def _device_wait(model: torch.nn.Module) -> Callable[[], None]:
    """What waits for ``model``'s device to finish its queued work. A lazy device (XLA: a call only records
    the graph) has no pace to time call by call: refused, and the projection keeps the run's batches."""
    kinds = {p.device.type for p in model.parameters()} - {"cpu"}
    if not kinds:
        return lambda: None
    if kinds == {"cuda"}:
        return torch.cuda.synchronize
    if kinds == {"mps"}:
        return torch.mps.synchronize
    raise RuntimeError(f"a rehearsal cannot time a step on {sorted(kinds)} call by call")


def _save_model(model: torch.nn.Module) -> dict[str, Any]:
    return {
        "tensors": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "grads": [None if p.grad is None else p.grad.detach().clone() for p in model.parameters()],
        "modes": [m.training for m in model.modules()],
    }


def _restore_model(model: torch.nn.Module, saved: dict[str, Any]) -> None:
    with torch.no_grad():
        current = model.state_dict()
        for name, value in saved["tensors"].items():
            current[name].copy_(value)
    for p, grad in zip(model.parameters(), saved["grads"]):
        p.grad = grad
    for module, training in zip(model.modules(), saved["modes"]):
        module.training = training


def time_fetches(data: Any, time_source: Callable[[], float]) -> list[float] | None:
    """The seconds of warm fetches of batches from a new iterator of ``data`` (the first fetch, which draws
    the epoch's order, left out; at most :data:`MAX_CALLS` or :data:`BUDGET_SECONDS`), the global and the
    loader's generators put back. ``None`` for data that reading would change or that times something else:
    not a ``DataLoader`` (an iterator would lose what the next run reads), an iterable dataset (a stream),
    worker processes (a fetch takes what they prefetched, not their pace)."""
    if not isinstance(data, DataLoader) or data.num_workers or isinstance(data.dataset, IterableDataset):
        return None
    saved = capture_rng(data)
    seconds: list[float] = []
    try:
        batches = iter(data)
        next(batches, None)
        while len(seconds) < MIN_CALLS or (len(seconds) < MAX_CALLS and sum(seconds) < BUDGET_SECONDS):
            started = time_source()
            if next(batches, None) is None:
                break
            seconds.append(time_source() - started)
    finally:
        restore_rng(saved, data)
    return seconds or None
