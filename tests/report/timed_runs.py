"""Runs whose time goes where the test says: a dataset, a step, an evaluator and a checkpoint save that
sleep known times (the run profile, the advice and the fast_dev_run projection are checked against them).

With a :class:`FakeClock` (``TimedRun(clock=FakeClock())``) the "sleeps" advance that clock instead, and
the run's timers read it: every measured second is one the test put there, so the assertions are exact
and a loaded machine cannot change them (Ignite's own work takes no time on that clock). Without one
they sleep for real (what advice realised in seconds, with worker processes, needs)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint
from torch.utils.data import DataLoader, Dataset

from ignite_speed import attach_speedups, create_trainer


class FakeClock:
    """Seconds that only :meth:`sleep` advances (``clock()`` reads them)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class SleepyData(Dataset):
    """``n`` samples, each read in ``seconds`` (of ``sleep``: ``time.sleep`` or a fake clock's)."""

    def __init__(self, n: int, seconds: float, sleep: Any = None) -> None:
        self.n, self.seconds, self.sleep = n, seconds, sleep

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        if self.seconds:
            (self.sleep or time.sleep)(self.seconds)
        return torch.tensor([float(i)])


class SlowToStartLoader(DataLoader):
    """A ``DataLoader`` whose iterator takes ``start_seconds`` to create (as worker processes do)."""

    start_seconds: float = 0.0

    def __iter__(self) -> Any:
        if self.start_seconds:
            (self.dataset.sleep or time.sleep)(self.start_seconds)  # type: ignore[attr-defined]
        return super().__iter__()


def sleepy_loader(
    batches: int, seconds_per_batch: float, sleep: Any = None, start: float = 0.0, **kw: Any
) -> DataLoader:
    if not start:
        return DataLoader(SleepyData(batches, seconds_per_batch, sleep), batch_size=1, **kw)
    loader = SlowToStartLoader(SleepyData(batches, seconds_per_batch, sleep), batch_size=1, **kw)
    loader.start_seconds = start
    return loader


def sleeping_step(seconds: float, sleep: Any = None, first: float = 0.0) -> Any:
    """A step of ``seconds``; its first call ``first`` seconds more (lazy initialisation)."""
    calls = []

    def step(engine: Engine, batch: Any) -> float:
        (sleep or time.sleep)(seconds + (first if not calls else 0.0))
        calls.append(1)
        return float(batch.sum())

    return step


def slow_save(seconds: float, sleep: Any = None) -> Any:
    def save(checkpoint: Any, filename: str, metadata: Any = None) -> None:
        (sleep or time.sleep)(seconds)

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
    clock: FakeClock | None = None  # None: real sleeps
    handler: float = 0.0  # per training batch, in an app's ITERATION_COMPLETED handler (0: none)
    iterator: float = 0.0  # per epoch, creating the training data's iterator
    once: float = 0.0  # once a run, in an app's STARTED handler
    first_step: float = 0.0  # what the step's first call takes more (lazy initialisation)
    first_val_batch: float = 0.0  # what the evaluator's step's first call takes more
    val_run: float = 0.0  # per validation run, in an evaluator's STARTED handler (a metric's reset, a log)
    metric: Any = None  # val_loss of a validation run, from the trainer's iteration (None: no metric)
    supervised: bool = False  # create_trainer's step (the model's forward sleeps the step), not an Engine's own

    @property
    def sleep(self) -> Any:
        return self.clock.sleep if self.clock is not None else time.sleep

    def now(self) -> float:
        return self.clock() if self.clock is not None else time.perf_counter()

    def train_loader(self) -> DataLoader:
        extra: dict[str, Any] = {"num_workers": self.workers, "persistent_workers": True} if self.workers else {}
        return sleepy_loader(self.batches, self.data, self.clock.sleep if self.clock else None, self.iterator, **extra)

    def engines(self, **flags: Any) -> tuple[Engine, Any]:
        sleep = self.clock.sleep if self.clock is not None else None
        trainer = (
            self._supervised_trainer() if self.supervised else Engine(sleeping_step(self.step, sleep, self.first_step))
        )
        evaluator = Engine(sleeping_step(self.val_batch, sleep, self.first_val_batch))
        val_data = sleepy_loader(self.val_batches, 0.0) if self.val_batch else None
        if self.save:
            checkpoint = Checkpoint({"model": torch.nn.Linear(1, 1)}, slow_save(self.save, sleep), n_saved=None)
            trainer.add_event_handler(Events.ITERATION_COMPLETED(every=self.save_every), checkpoint)
        if self.metric is not None:
            evaluator.add_event_handler(
                Events.COMPLETED, lambda e: e.state.metrics.update(val_loss=float(self.metric(trainer.state.iteration)))
            )
        if self.once:
            trainer.add_event_handler(Events.STARTED, lambda _: self.sleep(self.once))
        if self.val_run:
            evaluator.add_event_handler(Events.STARTED, lambda _: self.sleep(self.val_run))
        if self.handler:
            trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda _: self.sleep(self.handler))
        speedups = attach_speedups(trainer, evaluator if val_data is not None else None, val_data=val_data, **flags)
        if self.clock is not None:
            speedups.loop.timer.time_source = speedups.loop.clock.time_source = self.clock
        return trainer, speedups

    def _supervised_trainer(self) -> Engine:
        """``create_trainer``'s step (which a ``fast_dev_run`` rehearses), of a model whose forward sleeps."""
        forward = sleeping_step(self.step, self.clock.sleep if self.clock is not None else None, self.first_step)

        class SleepyModel(torch.nn.Linear):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                forward(None, x)
                return super().forward(x)

        model = SleepyModel(1, 1)
        return create_trainer(
            model, torch.optim.SGD(model.parameters(), lr=0.01), torch.nn.functional.mse_loss, prepare_batch=_x_is_y
        )

    def run(self, **flags: Any) -> tuple[Any, float]:
        """Train with ``flags``; returns the Speedups and the wall time of ``trainer.run`` measured outside."""
        trainer, speedups = self.engines(**flags)
        loader = self.train_loader()
        started = self.now()
        trainer.run(loader)
        return speedups, self.now() - started


def _x_is_y(batch: torch.Tensor, device: Any = None, non_blocking: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    return batch, batch
