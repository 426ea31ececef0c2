"""ignite-speed sets one attribute on the user's trainer (its TrainerParts), besides wrapping ``run``."""

from __future__ import annotations

import torch
from ignite.engine import Engine

from ignite_speed import EarlyStopping, LoopLimits, StopController, TrainingLoop, attach_speedups, create_trainer
from ignite_speed.loop.trainer_parts import ATTRIBUTE, TrainerParts
from ignite_speed.step import precision_of


def _added(engine: Engine, before: set[str]) -> set[str]:
    return set(vars(engine)) - before


def test_create_trainer_and_attach_speedups_add_one_attribute():
    model = torch.nn.Linear(2, 1)
    trainer = create_trainer(
        model, torch.optim.SGD(model.parameters(), lr=0.1), torch.nn.MSELoss(), {"accumulate_grad_batches": 2}
    )
    bare = Engine(lambda e, b: None)
    before = set(vars(bare)) | set(vars(trainer)) - {ATTRIBUTE}
    assert _added(trainer, before) == {ATTRIBUTE}
    speedups = attach_speedups(trainer, None, {"max_epochs": 1, "accumulate_grad_batches": 2})
    assert _added(trainer, before) == {ATTRIBUTE, "run"}
    parts = TrainerParts.find(trainer)
    assert parts is not None and parts.loop is speedups.loop and parts.speedups is speedups
    assert parts.controller is speedups.controller is StopController.of(trainer)
    assert precision_of(trainer) is speedups.precision is not None and parts.accumulate == 2


def test_handlers_add_one_attribute_and_detach_removes_it():
    trainer = Engine(lambda e, b: 0.0)
    before = set(vars(trainer))
    LoopLimits(max_epochs=1).attach(trainer)
    EarlyStopping(Engine(lambda e, b: None), monitor="loss").attach(trainer)
    assert _added(trainer, before) == {ATTRIBUTE, "run"}
    loop = TrainingLoop.of(trainer)
    assert loop is not None and StopController.of(trainer) is loop.controller
    loop.detach()
    assert _added(trainer, before) == set()
    assert TrainingLoop.of(trainer) is None and StopController.of(trainer) is None
