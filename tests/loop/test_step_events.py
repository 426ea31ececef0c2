"""StepEvents.OPTIMIZER_STEP: fired after each optimizer step the loop counts, usable with Ignite's filters."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Events
from ignite.handlers import Checkpoint, DiskSaver

from ignite_speed import StepEvents, attach_speedups, create_trainer
from ignite_speed.handlers import LoopLimits
from tests.helpers import loader


def _trainer(**cfg):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.5)
    return model, opt, create_trainer(model, opt, torch.nn.functional.mse_loss, cfg)


def test_fires_after_each_step_of_an_accumulation_with_the_step_count():
    _, _, trainer = _trainer(accumulate_grad_batches=3)
    sp = attach_speedups(trainer, None, {"max_epochs": 2, "accumulate_grad_batches": 3})
    every, second = [], []
    trainer.add_event_handler(
        StepEvents.OPTIMIZER_STEP, lambda e: every.append((e.state.iteration, e.state.optimizer_step))
    )
    trainer.add_event_handler(StepEvents.OPTIMIZER_STEP(every=2), lambda e: second.append(e.state.optimizer_step))
    trainer.run(loader(10))
    # windows of 3 batches, and the last batch of each epoch steps
    assert [it for it, _ in every] == [3, 6, 9, 10, 13, 16, 19, 20]
    assert [step for _, step in every] == list(range(1, 9)) and sp.global_step == 8
    assert second == [2, 4, 6, 8]


def test_registered_by_any_handler_alone():
    _, _, trainer = _trainer()
    LoopLimits(max_steps=4).attach(trainer)
    fired = []
    trainer.add_event_handler(StepEvents.OPTIMIZER_STEP, lambda e: fired.append(e.state.iteration))
    trainer.run(loader(10))
    assert fired == [1, 2, 3, 4]


def test_a_checkpoint_on_optimizer_steps_resumes_exactly(tmp_path):
    cfg = {"max_epochs": 3, "accumulate_grad_batches": 3}

    def build(folder):
        model, opt, trainer = _trainer(**cfg)
        sp = attach_speedups(trainer, None, cfg)
        to_save = {"trainer": trainer, "model": model, "optimizer": opt, "speedups": sp}
        trainer.add_event_handler(
            StepEvents.OPTIMIZER_STEP(every=2),
            Checkpoint(to_save, DiskSaver(str(folder), require_empty=False), n_saved=1),
        )
        return model, trainer, sp, to_save

    model, trainer, _, _ = build(tmp_path / "reference")
    trainer.run(loader(10, shuffle=True))
    reference = {k: v.clone() for k, v in model.state_dict().items()}

    model, trainer, _, _ = build(tmp_path / "crashed")

    def crash(_):
        raise KeyboardInterrupt

    trainer.add_event_handler(Events.ITERATION_COMPLETED(once=17), crash)
    with pytest.raises(KeyboardInterrupt):
        trainer.run(loader(10, shuffle=True))
    model, trainer, sp, to_load = build(tmp_path / "crashed")
    (path,) = (tmp_path / "crashed").glob("*.pt")
    state = torch.load(path, weights_only=True)
    assert state["speedups"]["loop"]["state"]["window_batches"] == 0  # written at a window's end: nothing to replay
    Checkpoint.load_objects(to_load, state)
    trainer.run(loader(10, shuffle=True))
    assert (trainer.state.iteration, sp.global_step) == (30, 12)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in reference.items())
