"""Runs whose time goes where the test says: a dataset, a step, an evaluator and a checkpoint save that
sleep known times (the run profile, the advice and the fast_dev_run projection are checked against them)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint
from torch.utils.data import DataLoader, Dataset

from ignite_speed import attach_speedups


class SleepyData(Dataset):
    """``n`` samples, each read in ``seconds``."""

    def __init__(self, n: int, seconds: float) -> None:
        self.n, self.seconds = n, seconds

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        if self.seconds:
            time.sleep(self.seconds)
        return torch.tensor([float(i)])


def sleepy_loader(batches: int, seconds_per_batch: float, **kw: Any) -> DataLoader:
    return DataLoader(SleepyData(batches, seconds_per_batch), batch_size=1, **kw)


def sleeping_step(seconds: float) -> Any:
    def step(engine: Engine, batch: Any) -> float:
        time.sleep(seconds)
        return float(batch.sum())

    return step


def slow_save(seconds: float) -> Any:
    def save(checkpoint: Any, filename: str, metadata: Any = None) -> None:
        time.sleep(seconds)

    return save


@dataclass
class TimedRun:
    """The engines and settings of one sleep-timed run (seconds per batch of each part)."""

    data: float = 0.0  # per training batch, in the loader
    step: float = 0.01  # per training batch, in the process function
    val_batch: float = 0.0  # per validation batch, in the evaluator's step
    save: float = 0.0  # per checkpoint save (0: no Checkpoint)
    save_every: int = 2  # batches between saves
    batches: int = 6  # training batches per epoch
    val_batches: int = 2
    workers: int = 0

    def train_loader(self) -> DataLoader:
        extra: dict[str, Any] = {"num_workers": self.workers, "persistent_workers": True} if self.workers else {}
        return sleepy_loader(self.batches, self.data, **extra)

    def engines(self, **flags: Any) -> tuple[Engine, Any]:
        trainer = Engine(sleeping_step(self.step))
        evaluator = Engine(sleeping_step(self.val_batch))
        val_data = sleepy_loader(self.val_batches, 0.0) if self.val_batch else None
        if self.save:
            checkpoint = Checkpoint({"model": torch.nn.Linear(1, 1)}, slow_save(self.save), n_saved=None)
            trainer.add_event_handler(Events.ITERATION_COMPLETED(every=self.save_every), checkpoint)
        speedups = attach_speedups(trainer, evaluator if val_data is not None else None, val_data=val_data, **flags)
        return trainer, speedups

    def run(self, **flags: Any) -> tuple[Any, float]:
        """Train with ``flags``; returns the Speedups and the wall time of ``trainer.run`` measured outside."""
        trainer, speedups = self.engines(**flags)
        loader = self.train_loader()
        started = time.perf_counter()
        trainer.run(loader)
        return speedups, time.perf_counter() - started
