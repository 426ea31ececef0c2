"""``on_run_exit``: every ``trainer.run`` that called the handlers' ``on_run_start`` calls their ``on_run_exit``
exactly once, however it ends: a normal run, a run with no training (``NO_TRAINING``, which returns before
Ignite's run), a raise between ``on_run_start`` and Ignite's run (the sanity check), a raise inside Ignite's run."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine, Events
from torch.utils.data import DataLoader, Dataset

from ignite_speed import StopReason, attach_speedups
from ignite_speed.handlers.base import LoopHandler
from ignite_speed.loop.plan import RunPlan
from tests.helpers import loader, make_run


class RunCounter(LoopHandler):
    """Counts the run hooks it gets, and in which order."""

    name = "run_counter"

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def on_run_start(self, plan: RunPlan) -> None:
        self.calls.append("start")

    def on_run_exit(self) -> None:
        self.calls.append("exit")


class Broken(Dataset):
    """A validation set whose second sample cannot be read."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if i == 1:
            raise OSError(f"sample {i}: unreadable")
        return torch.zeros(1), torch.zeros(1)


def _counted(trainer: Engine, evaluator: Engine | None, **flags) -> tuple[RunCounter, object]:
    sp = attach_speedups(trainer, evaluator, **flags)
    return RunCounter().attach(trainer), sp


def test_a_normal_run_exits_once():
    run = make_run()
    counter, sp = _counted(run.trainer, None, max_epochs=2)
    run.trainer.run(loader(3))
    assert counter.calls == ["start", "exit"]
    assert sp.stop_reason is StopReason.MAX_EPOCHS and run.total == 6


@pytest.mark.parametrize("flags", [{"max_epochs": 0}, {"max_steps": 0}, {"max_epochs": 2, "limit_train_batches": 0}])
def test_a_run_with_no_training_exits_once(flags):
    run = make_run()
    counter, sp = _counted(run.trainer, run.evaluator, val_data=loader(2), **flags)
    run.trainer.run(loader(3))
    assert sp.stop_reason is StopReason.NO_TRAINING and run.total == 0 and run.sanity == 2
    assert counter.calls == ["start", "exit"]


def test_a_raise_in_the_sanity_check_exits_once():
    run = make_run()
    val = DataLoader(Broken(), batch_size=1)
    counter, _ = _counted(run.trainer, run.evaluator, val_data=val, max_epochs=2, num_sanity_val_steps=2)
    with pytest.raises(OSError, match="sample 1: unreadable"):
        run.trainer.run(loader(3))
    assert counter.calls == ["start", "exit"] and run.total == 0 and run.sanity == 1


def test_a_raise_in_ignite_s_run_exits_once():
    run = make_run()
    counter, _ = _counted(run.trainer, None, max_epochs=2)

    @run.trainer.on(Events.ITERATION_COMPLETED(once=4))
    def _fail(engine: Engine) -> None:
        raise RuntimeError("batch 4 failed")

    with pytest.raises(RuntimeError, match="batch 4 failed"):
        run.trainer.run(loader(3))
    assert counter.calls == ["start", "exit"] and run.total == 4


def test_each_run_exits_once_and_a_refused_run_starts_nothing():
    run = make_run()
    counter, sp = _counted(run.trainer, None, max_epochs=1)
    run.trainer.run(loader(3))
    with pytest.raises(RuntimeError, match="already finished"):  # refused before on_run_start: nothing to exit
        run.trainer.run(loader(3))
    assert counter.calls == ["start", "exit"]
    run.trainer.state.max_epochs = None  # a new run (Ignite's restart)
    run.trainer.run(loader(3))
    assert counter.calls == ["start", "exit"] * 2 and sp.stop_reason is StopReason.MAX_EPOCHS


def test_a_run_with_no_training_gives_the_progress_bars_back_at_its_end():
    from ignite_speed._compat import ProgressBar
    from ignite_speed.handlers.progress_bars import _progress_bar_handlers

    run = make_run()
    sp = attach_speedups(run.trainer, None, max_epochs=-1, limit_train_batches=0)  # no planned total: untotalled
    bar = ProgressBar(persist=False, disable=True)
    bar.attach(run.trainer)
    (handler,) = _progress_bar_handlers(run.trainer)
    tag = handler.tag
    run.trainer.run(loader(3))
    assert sp.stop_reason is StopReason.NO_TRAINING
    # restored by the run's own on_run_exit (before: only at the next run's start)
    assert handler.tag == tag and "get_max_number_events" not in handler.__dict__
