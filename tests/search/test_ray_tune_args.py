"""What ``RayTunePruning`` checks when it is built (no Ray needed: it imports Ray only when a run starts)."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine

from ignite_speed import attach_speedups
from ignite_speed.loop.trainer_parts import TrainerParts
from ignite_speed.search.ray_tune import RayTunePruning


@pytest.mark.parametrize("to_save", [{}, {"optimizer": torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1)}])
def test_a_to_save_without_the_model_is_refused_with_the_fix(to_save):
    """A trial that Ray resumes from its checkpoint (a pause, a failure) would go on with fresh weights."""
    with pytest.raises(ValueError, match=r"holds no torch.nn.Module.*accepted: the model in to_save"):
        RayTunePruning("val_acc", to_save=to_save)


def test_the_flag_without_to_save_is_refused_before_anything_is_attached():
    trainer, evaluator = Engine(lambda e, b: 0.0), Engine(lambda e, b: None)
    with pytest.raises(ValueError, match=r"RayTunePruning\(to_save=\{\}\) holds no torch.nn.Module"):
        attach_speedups(trainer, evaluator, {"pruning": {"trial": "ray_tune", "monitor": "val_acc"}}, val_data=[0])
    assert TrainerParts.find(trainer) is None  # nothing attached: a corrected call can attach


def test_the_model_among_other_objects_is_accepted():
    model = torch.nn.Linear(1, 1)
    handler = RayTunePruning("val_acc", to_save={"model": model, "optimizer": torch.optim.SGD(model.parameters(), 0.1)})
    assert handler.to_save["model"] is model
