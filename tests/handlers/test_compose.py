"""The handlers together: any subset in any attach order gives what attach_speedups gives for the same flags."""

from __future__ import annotations

import itertools
import random

import pytest
import torch
from ignite.engine import Engine, Events

from ignite_speed import attach_speedups
from ignite_speed.handlers import (
    EarlyStopping,
    LoopLimits,
    NonFiniteLossGuard,
    StopController,
    StopReason,
    TimeBudget,
    TrainBatchLimit,
    TrainingLoop,
    ValidationSchedule,
)
from tests.helpers import loader, make_run

CONFIGS = [
    # early stopping mid-epoch on a schedule of half epochs, deferred by min_epochs
    dict(
        max_epochs=6,
        min_epochs=2,
        limit_train_batches=7,
        val_check_interval=0.5,
        num_sanity_val_steps=1,
        limit_val_batches=2,
        max_time="00:01:00:00",
        terminate_on_nan=True,
        early_stopping={"monitor": "val_loss", "patience": 1},
    ),
    # max_steps across epochs with validation every 4 batches counted across epochs
    dict(
        max_steps=17,
        min_steps=5,
        limit_train_batches=0.6,
        val_check_interval=4,
        check_val_every_n_epoch=None,
        early_stopping={"monitor": "val_loss", "patience": 3, "stopping_threshold": 0.3},
    ),
    # every second epoch, a threshold stop
    dict(
        max_epochs=9,
        check_val_every_n_epoch=2,
        num_sanity_val_steps=0,
        early_stopping={"monitor": "val_loss", "stopping_threshold": 0.45},
    ),
]
METRICS = [1.0, 0.9, 0.8, 0.8, 0.8, 0.5, 0.4, 0.3, 0.2, 0.1]


def _handlers(cfg: dict, run) -> list:
    """The handlers for ``cfg`` as (attach function) closures, as a user would write them."""
    val = loader(4, 100.0)
    out = [
        lambda: LoopLimits(
            max_epochs=cfg.get("max_epochs"),
            min_epochs=cfg.get("min_epochs"),
            max_steps=cfg.get("max_steps", -1),
            min_steps=cfg.get("min_steps"),
        ).attach(run.trainer),
        lambda: ValidationSchedule(
            run.evaluator,
            val,
            val_check_interval=cfg.get("val_check_interval"),
            check_val_every_n_epoch=cfg.get("check_val_every_n_epoch", 1),
            num_sanity_val_steps=cfg.get("num_sanity_val_steps", 2),
            limit_val_batches=cfg.get("limit_val_batches"),
        ).attach(run.trainer),
        lambda: EarlyStopping(run.evaluator, **cfg["early_stopping"]).attach(run.trainer),
    ]
    if "limit_train_batches" in cfg:
        out.append(lambda: TrainBatchLimit(cfg["limit_train_batches"]).attach(run.trainer))
    if "max_time" in cfg:
        out.append(lambda: TimeBudget(cfg["max_time"]).attach(run.trainer))
    if cfg.get("terminate_on_nan"):
        out.append(lambda: NonFiniteLossGuard().attach(run.trainer))
    return out


def _outcome(run, loop: TrainingLoop) -> tuple:
    c = loop.controller
    return (
        run.batches_per_epoch,
        run.val_at,
        run.val_batches,
        run.sanity,
        c.stop_reason,
        c.stop_message,
        loop.progress.global_step,
        loop.progress.val_runs,
    )


@pytest.mark.parametrize("cfg", CONFIGS)
def test_any_attach_order_gives_what_attach_speedups_gives(cfg):
    torch.manual_seed(0)
    reference = make_run(METRICS)
    sp = attach_speedups(reference.trainer, reference.evaluator, cfg, val_data=loader(4, 100.0))
    reference.trainer.run(loader(10))
    expected = _outcome(reference, sp.loop)
    assert expected[4] is not StopReason.NOT_STOPPED

    orders = list(itertools.permutations(range(len(_handlers(cfg, make_run())))))
    for order in random.Random(0).sample(orders, min(12, len(orders))):
        torch.manual_seed(0)
        run = make_run(METRICS)
        attachers = _handlers(cfg, run)
        for i in order:
            attachers[i]()
        run.trainer.run(loader(10))
        assert _outcome(run, TrainingLoop.of(run.trainer)) == expected, order


def test_handlers_share_one_stop_controller_and_two_per_batch_handlers():
    run = make_run(METRICS)
    before = len(run.trainer._event_handlers[Events.ITERATION_COMPLETED])
    for attach in _handlers(CONFIGS[0], run):
        attach()
    loop = TrainingLoop.of(run.trainer)
    assert StopController.of(run.trainer) is loop.controller
    assert len(run.trainer._event_handlers[Events.ITERATION_COMPLETED]) == before + 2
    assert sorted(loop.handlers.names()) == [
        "early_stopping",
        "limits",
        "nan_guard",
        "time_budget",
        "train_batches",
        "validation",
    ]


def test_handlers_and_attach_speedups_on_one_trainer_are_refused():
    trainer = Engine(lambda e, b: None)
    LoopLimits(max_epochs=2).attach(trainer)
    with pytest.raises(RuntimeError, match="use attach_speedups or the handlers, not both"):
        attach_speedups(trainer, None, {"max_epochs": 2})


def test_nan_guard_alone_stops_on_the_iteration_of_the_nan():
    losses = iter([1.0, 2.0, float("nan")] + [1.0] * 100)
    trainer = Engine(lambda e, b: next(losses))
    NonFiniteLossGuard().attach(trainer)
    trainer.run(list(range(10)), max_epochs=3)
    controller = StopController.of(trainer)
    assert (trainer.state.iteration, controller.stop_reason) == (3, StopReason.NON_FINITE_LOSS)
    assert controller.stop_message == "training loss is nan at epoch 0 (0-based), iteration 3; stopping"


def test_one_handler_call_per_batch_when_nothing_runs_between_counting_and_deciding():
    trainer = Engine(lambda e, b: 0.0)
    loop = LoopLimits(max_epochs=1).attach(trainer).loop
    seen = []
    trainer.add_event_handler(
        Events.EPOCH_COMPLETED, lambda e: seen.append([h[0] for h in e._event_handlers[Events.ITERATION_COMPLETED]])
    )
    trainer.run(list(range(3)))
    assert seen == [[loop.on_iteration_completed]]  # merged: the trainer has no other handler of the event
    # a handler of the app's: counting first, the app's handler, deciding last (split again)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: None)
    loop.controller.reset_run()
    trainer.state.max_epochs = None
    trainer.run(list(range(3)))
    handlers = seen[-1]
    assert len(handlers) == 3
    assert (handlers[0], handlers[-1]) == (loop.on_iteration_counted, loop.on_iteration_decide)
