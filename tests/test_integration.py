"""create_trainer + attach_speedups together: step counting matches the optimizer steps really taken."""

from __future__ import annotations

import torch
from ignite.engine import Engine, Events

from ignite_speed import StopReason, attach_speedups, create_trainer
from tests.helpers import loader


def _setup(**cfg):
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    steps = [0]
    opt.register_step_post_hook(lambda *a: steps.__setitem__(0, steps[0] + 1))
    trainer = create_trainer(model, opt, torch.nn.functional.mse_loss, cfg)
    evaluator = Engine(lambda e, b: None)
    sp = attach_speedups(trainer, evaluator, cfg, val_data=loader(5))
    return trainer, sp, steps


def test_accumulation_steps_counted_like_lightning():
    trainer, sp, steps = _setup(accumulate_grad_batches=3, max_epochs=2)
    trainer.run(loader(10))
    assert sp.global_step == steps[0] == 8


def test_max_steps_with_accumulation_stops_mid_epoch_without_an_extra_step():
    trainer, sp, steps = _setup(accumulate_grad_batches=3, max_steps=5)
    trainer.run(loader(10))
    assert trainer.state.iteration == 13 and sp.global_step == steps[0] == 5
    assert sp.stop_reason is StopReason.MAX_STEPS


def test_user_stop_mid_window_takes_no_extra_step():
    trainer, sp, steps = _setup(accumulate_grad_batches=4, max_epochs=3)
    trainer.add_event_handler(Events.ITERATION_COMPLETED(once=6), lambda e: sp.request_stop("enough"))
    trainer.run(loader(10))
    assert trainer.state.iteration == 6 and sp.global_step == steps[0] == 1


def test_precision_state_is_saved_with_the_speedups():
    trainer, sp, _ = _setup(max_epochs=1, precision="bf16-mixed")
    trainer.run(loader(4))
    assert "precision" in sp.state_dict()


def test_non_finite_loss_stops_at_once_despite_min_epochs():
    losses = iter([1.0, 2.0, float("nan")] + [1.0] * 100)
    trainer = Engine(lambda e, b: next(losses))
    sp = attach_speedups(trainer, None, dict(terminate_on_nan=True, min_epochs=3, max_epochs=5))
    trainer.run(loader(10))
    assert trainer.state.iteration == 3 and sp.stop_reason is StopReason.NON_FINITE_LOSS
    assert (sp.progress.epochs_done, sp.global_step) == (1, 3)  # the partial epoch ends, as in Lightning


def test_create_trainer_restores_training_mode_but_keeps_frozen_submodules():
    model = torch.nn.Sequential(torch.nn.Linear(1, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    modes = []
    trainer = create_trainer(model, opt, torch.nn.functional.mse_loss)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: modes.append((model.training, model[1].training)))
    trainer.add_event_handler(Events.ITERATION_COMPLETED(once=2), lambda e: model.eval())  # an evaluation
    trainer.run(loader(4), max_epochs=1)
    model[1].eval()  # the user freezes BatchNorm
    trainer.state.max_epochs = None
    trainer.run(loader(2), max_epochs=1)
    assert modes == [(True, True), (True, True), (True, True), (True, True), (True, False), (True, False)]
