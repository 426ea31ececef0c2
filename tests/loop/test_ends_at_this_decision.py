"""``TrainingLoop.ends_at_this_decision()``: asked during each validation run of the schedule (what the Ray Tune
adapter asks when the scheduler stops a trial), it is True only at the run's last validation run, where the run's
limits end it anyway."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine, Events

from ignite_speed import attach_speedups
from ignite_speed.loop import TrainingLoop
from tests.helpers import loader, mse_step, stream_loader


@pytest.mark.parametrize(
    ("flags", "data", "expected"),
    [
        # 4 batches per epoch, validation every 2: the last of 6 runs ends the run (max_epochs)
        ({"max_epochs": 3, "val_check_interval": 2}, "sized", [False] * 5 + [True]),
        # max_steps=6, in epoch 2: validation at steps 2, 4 and 6, the last where max_steps ends the run
        ({"max_epochs": 3, "max_steps": 6, "val_check_interval": 2}, "sized", [False, False, True]),
        # a loader of unknown length validates when its epoch runs out
        ({"max_epochs": 2}, "unsized", [False, True]),
    ],
)
def test_true_only_at_the_validation_where_the_limits_end_the_run(flags, data, expected):
    model = torch.nn.Linear(1, 1)
    trainer = Engine(mse_step(model, torch.optim.SGD(model.parameters(), lr=1e-3)))
    evaluator = Engine(lambda e, b: None)
    seen: list[bool] = []
    evaluator.add_event_handler(
        Events.COMPLETED, lambda _: seen.append(TrainingLoop.of(trainer).ends_at_this_decision())
    )
    attach_speedups(trainer, evaluator, {**flags, "num_sanity_val_steps": 0}, val_data=loader(1))
    trainer.run(loader(4) if data == "sized" else stream_loader(4))
    assert seen == expected
