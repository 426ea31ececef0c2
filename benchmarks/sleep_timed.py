"""Sleep-timed training runs, shared by the benchmarks of the run profile (``advice.py``, ``projection.py``):
every part of a run (data, step, validation, app handlers, saves, one-off costs) sleeps a known time, so what the
profile, the advice and the projection say can be checked against what the sleeps predict.

Imported by the scripts beside it (``from sleep_timed import sleep_run``: a script's own folder is on its path).
"""

from __future__ import annotations

import time
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint
from torch.utils.data import DataLoader, Dataset

from ignite_speed import attach_speedups

__all__ = ["Sleepy", "sleep_run"]


class Sleepy(Dataset):
    """``n`` samples (the index as a float), each read in ``seconds``."""

    def __init__(self, n: int, seconds: float) -> None:
        self.n, self.seconds = n, seconds

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        time.sleep(self.seconds)
        return torch.tensor([float(i)])


def sleep_run(
    spec: dict[str, Any], flags: dict[str, Any], loader_args: dict[str, Any] | None = None
) -> tuple[Any, float]:
    """One ``attach_speedups(..., **flags)`` run of sleeps; returns the ``Speedups`` and the wall of
    ``trainer.run``. ``spec`` (seconds and counts; all but ``step`` and ``batches`` optional):

    * ``step``, ``batches``, ``data``: a training step, the batches (of 1 sample) per epoch, a sample's read;
    * ``val``, ``val_batches``: a validation batch, the batches of a validation run (no ``val``: no validation);
    * ``once``: a one-off cost as the run starts; ``handler``: an app handler after every batch;
    * ``best``: the evaluator's ``val_loss`` is ``|iteration - best|`` (a curve for early stopping);
    * ``save``, ``save_every``: a ``Checkpoint`` whose save takes ``save``, every ``save_every`` iterations.

    ``loader_args`` go to the training ``DataLoader`` (``num_workers``...); its workers are shut down after."""
    trainer = Engine(lambda e, b: time.sleep(spec["step"]))
    evaluator = Engine(lambda e, b: time.sleep(spec.get("val", 0.0)))
    if spec.get("best") is not None:
        evaluator.add_event_handler(
            Events.COMPLETED,
            lambda e: e.state.metrics.update(val_loss=float(abs(trainer.state.iteration - spec["best"]))),
        )
    if spec.get("save"):
        save = Checkpoint({"m": torch.nn.Linear(1, 1)}, lambda c, f, m=None: time.sleep(spec["save"]), n_saved=None)
        trainer.add_event_handler(Events.ITERATION_COMPLETED(every=spec["save_every"]), save)
    if spec.get("once"):
        trainer.add_event_handler(Events.STARTED, lambda _: time.sleep(spec["once"]))
    if spec.get("handler"):
        trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda _: time.sleep(spec["handler"]))
    val = DataLoader(Sleepy(spec.get("val_batches", 1), 0.0), batch_size=1) if spec.get("val") else None
    speedups = attach_speedups(trainer, evaluator if val else None, val_data=val, **flags)
    loader_args = loader_args or {}
    loader = DataLoader(Sleepy(spec["batches"], spec.get("data", 0.0)), batch_size=1, **loader_args)
    started = time.perf_counter()
    trainer.run(loader)
    wall = time.perf_counter() - started
    if loader_args.get("num_workers") and loader._iterator is not None:
        loader._iterator._shutdown_workers()
    return speedups, wall
