"""Each handler attached alone to a plain Ignite trainer does what ``attach_speedups`` does for its flag.

Both sides run the same engines on a fake clock (a training batch and a validation batch each take 1 s), with
``trainer.run(data, **run_kwargs)``; ``attach_speedups`` gets the flag (and the ``max_epochs`` that ``run`` gets on
the handler's side, so that the comparison is about the handler's own flag). Early stopping's is in the early
stopping tests.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

import pytest
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver

from ignite_speed import attach_speedups
from ignite_speed.handlers import (
    AutoResume,
    LoopLimits,
    NonFiniteLossGuard,
    PreemptionGuard,
    StopReason,
    TimeBudget,
    TrainBatchLimit,
    TrainingLoop,
    ValidationSchedule,
)
from tests.helpers import loader

NAN_AT, SIGNAL_AT = 11, 13


class Engines:
    def __init__(self) -> None:
        self.now = 0.0
        self.batches: dict[int, int] = {}
        self.val_at: list[int] = []
        self.val_batches: list[int] = []
        self.val_data = loader(4, 100.0)

        def train_step(engine: Engine, batch: Any) -> float:
            self.now += 1.0
            return float("nan") if engine.state.iteration == NAN_AT else 0.5

        def val_step(engine: Engine, batch: Any) -> None:
            self.now += 1.0

        self.trainer, self.evaluator = Engine(train_step), Engine(val_step)

        @self.trainer.on(Events.ITERATION_COMPLETED)
        def _count(engine: Engine) -> None:
            self.batches[engine.state.epoch] = self.batches.get(engine.state.epoch, 0) + 1
            if self.signal is not None and engine.state.iteration == SIGNAL_AT:
                os.kill(os.getpid(), self.signal)

        self.signal: int | None = None
        self.evaluator.add_event_handler(
            Events.COMPLETED,
            lambda e: (self.val_at.append(self.trainer.state.iteration), self.val_batches.append(e.state.iteration)),
        )

    def run(self, attach: Callable[[Engines], Any], **run_kwargs: Any) -> tuple:
        attach(self)
        TrainingLoop.of(self.trainer).clock.time_source = lambda: self.now
        self.trainer.run(loader(8), **run_kwargs)
        controller = TrainingLoop.of(self.trainer).controller
        return (
            [self.batches[k] for k in sorted(self.batches)],
            self.val_at,
            self.val_batches,
            self.trainer.state.iteration,
            controller.stop_reason,
            controller.stop_message,
        )


def _speedups(flags: dict[str, Any], with_validation: bool = False) -> Callable[[Engines], Any]:
    def attach(e: Engines) -> Any:
        if with_validation:
            return attach_speedups(e.trainer, e.evaluator, flags, val_data=e.val_data)
        return attach_speedups(e.trainer, None, {"preemption_signals": (), **flags})

    return attach


CASES: dict[str, tuple[dict[str, Any], Callable[[Engines], Any], dict[str, Any]]] = {
    # name: (the flags given to attach_speedups, the handler alone, run()'s arguments on the handler's side)
    "LoopLimits": (
        {"max_epochs": 3, "min_epochs": 2},
        lambda e: LoopLimits(max_epochs=3, min_epochs=2).attach(e.trainer),
        {},
    ),
    "LoopLimits max_steps": ({"max_steps": 13}, lambda e: LoopLimits(max_steps=13).attach(e.trainer), {}),
    "LoopLimits fast_dev_run": ({"fast_dev_run": 2}, lambda e: LoopLimits(fast_dev_run=2).attach(e.trainer), {}),
    "TrainBatchLimit": (
        {"limit_train_batches": 3, "max_epochs": 2},
        lambda e: TrainBatchLimit(3).attach(e.trainer),
        {"max_epochs": 2},
    ),
    "TrainBatchLimit overfit": (
        {"overfit_batches": 2, "max_epochs": 2},
        lambda e: TrainBatchLimit(overfit_batches=2).attach(e.trainer),
        {"max_epochs": 2},
    ),
    "TimeBudget": ({"max_time": 20}, lambda e: TimeBudget(20).attach(e.trainer), {}),
    "TimeBudget fit": (
        {"max_time": 21, "max_time_mode": "fit"},
        lambda e: TimeBudget(21, mode="fit").attach(e.trainer),
        {},
    ),
    "NonFiniteLossGuard": (
        {"terminate_on_nan": True, "max_epochs": 3},
        lambda e: NonFiniteLossGuard().attach(e.trainer),
        {"max_epochs": 3},
    ),
}
VALIDATION_CASES: dict[str, tuple[dict[str, Any], Callable[[Engines], Any], dict[str, Any]]] = {
    "ValidationSchedule": (
        {"val_check_interval": 0.5, "limit_val_batches": 2, "max_epochs": 2},
        lambda e: ValidationSchedule(e.evaluator, e.val_data, val_check_interval=0.5, limit_val_batches=2).attach(
            e.trainer
        ),
        {"max_epochs": 2},
    ),
    "ValidationSchedule overfit": (
        {"overfit_batches": 2, "max_epochs": 2},
        lambda e: (
            TrainBatchLimit(overfit_batches=2).attach(e.trainer),
            ValidationSchedule(e.evaluator, e.val_data, overfit_batches=2).attach(e.trainer),
        ),
        {"max_epochs": 2},
    ),
    "validation budget": (
        {"val_time_fraction": 0.01, "val_check_interval": 0.25, "num_sanity_val_steps": 0, "max_epochs": 2},
        lambda e: ValidationSchedule(
            e.evaluator, e.val_data, val_check_interval=0.25, num_sanity_val_steps=0, val_time_fraction=0.01
        ).attach(e.trainer),
        {"max_epochs": 2},
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_handler_alone_does_what_attach_speedups_does_for_its_flag(name):
    flags, alone, run_kwargs = CASES[name]
    expected = Engines().run(_speedups(flags))
    assert expected[4] is not StopReason.NOT_STOPPED
    assert Engines().run(alone, **run_kwargs) == expected


@pytest.mark.parametrize("name", sorted(VALIDATION_CASES))
def test_a_validation_schedule_alone_does_what_attach_speedups_does(name):
    flags, alone, run_kwargs = VALIDATION_CASES[name]
    expected = Engines().run(_speedups(flags, with_validation=True))
    assert Engines().run(alone, **run_kwargs) == expected


def test_a_time_budget_alone_trains_until_the_budget_not_one_epoch():
    # Lightning's max_time rule: with no max_epochs, the budget bounds the run (Ignite's default is one epoch)
    outcome = Engines().run(lambda e: TimeBudget(20).attach(e.trainer))
    assert outcome[:5] == ([8, 8, 4], [], [], 20, StopReason.MAX_TIME)
    # run()'s own max_epochs still bounds it, as the config's does with attach_speedups
    assert Engines().run(lambda e: TimeBudget(20).attach(e.trainer), max_epochs=2)[3:5] == (16, StopReason.MAX_EPOCHS)


def test_a_preemption_guard_alone_stops_as_attach_speedups_does():
    outcomes = []
    for attach in (
        lambda e: attach_speedups(e.trainer, None, {"max_epochs": 3}),
        lambda e: PreemptionGuard().attach(e.trainer),
    ):
        engines = Engines()
        engines.signal = signal.SIGUSR1
        outcomes.append(engines.run(attach, **({} if not outcomes else {"max_epochs": 3})))
    assert outcomes[0] == outcomes[1] and outcomes[0][3:5] == (SIGNAL_AT, StopReason.PREEMPTED)


def _resume(folder: Any, attach: Callable[[Engines, int], Any], key: str, epochs_to_run: bool) -> tuple:
    """Two epochs saved at each epoch end, then a fresh process's engines resume and train to epoch 3."""
    outcomes = []
    for epochs in (2, 3):
        engines = Engines()
        state = attach(engines, epochs)
        to_save = {"trainer": engines.trainer, key: state if key == "speedups" else TrainingLoop.of(engines.trainer)}
        engines.trainer.add_event_handler(
            Events.EPOCH_COMPLETED, Checkpoint(to_save, DiskSaver(str(folder), require_empty=False), n_saved=2)
        )
        engines.trainer.run(loader(8), **({"max_epochs": epochs} if epochs_to_run else {}))
        outcomes.append((engines.batches, engines.trainer.state.iteration))
    return tuple(outcomes)


def test_autoresume_alone_resumes_as_attach_speedups_does(tmp_path):
    with_speedups = _resume(
        tmp_path / "speedups",
        lambda e, epochs: attach_speedups(
            e.trainer, None, {"max_epochs": epochs, "autoresume": True, "preemption_signals": ()}
        ),
        "speedups",
        False,
    )
    alone = _resume(tmp_path / "alone", lambda e, epochs: AutoResume().attach(e.trainer), "loop", True)
    assert with_speedups == alone == (({1: 8, 2: 8}, 16), ({3: 8}, 24))


def test_autoresume_alone_names_what_it_needs(tmp_path):
    engines = Engines()
    AutoResume().attach(engines.trainer)
    engines.trainer.add_event_handler(
        Events.EPOCH_COMPLETED, Checkpoint({"trainer": engines.trainer}, DiskSaver(str(tmp_path), require_empty=False))
    )
    with pytest.raises(RuntimeError, match=r"TrainingLoop.of\(trainer\) when you use the handlers alone"):
        engines.trainer.run(loader(8))
