"""LoopLimits alone in a plain Ignite app: epochs, steps, minimums, conflicts, state."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine, Events

from ignite_speed.handlers import LoopLimits, StopController, StopReason, TrainingLoop
from tests.helpers import loader, make_run


def test_max_epochs_governs_a_plain_run_call():
    run = make_run()
    LoopLimits(max_epochs=3).attach(run.trainer)
    run.trainer.run(loader(10))  # no max_epochs here: LoopLimits governs
    controller = StopController.of(run.trainer)
    assert run.batches_per_epoch == [10, 10, 10]
    assert (controller.stop_reason, controller.stop_message) == (StopReason.MAX_EPOCHS, "max_epochs=3 reached")
    assert TrainingLoop.of(run.trainer).progress.epochs_done == 3


def test_max_steps_ends_mid_epoch_and_leaves_epochs_unbounded():
    run = make_run()
    LoopLimits(max_steps=13).attach(run.trainer)
    run.trainer.run(loader(10))
    assert run.batches_per_epoch == [10, 3]
    assert StopController.of(run.trainer).stop_reason is StopReason.MAX_STEPS
    assert TrainingLoop.of(run.trainer).progress.global_step == 13


def test_max_steps_counts_optimizer_steps_of_create_trainer():
    from ignite_speed import create_trainer

    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    steps = [0]
    opt.register_step_post_hook(lambda *a: steps.__setitem__(0, steps[0] + 1))
    trainer = create_trainer(model, opt, torch.nn.functional.mse_loss, {"accumulate_grad_batches": 3})
    LoopLimits(max_steps=5).attach(trainer)
    trainer.run(loader(10))
    assert (trainer.state.iteration, steps[0], TrainingLoop.of(trainer).progress.global_step) == (13, 5, 5)


def test_min_epochs_defers_a_stop_request():
    run = make_run()
    limits = LoopLimits(max_epochs=5, min_epochs=2).attach(run.trainer)
    run.trainer.add_event_handler(Events.ITERATION_COMPLETED(once=3), lambda _: limits.loop.request_stop("enough"))
    run.trainer.run(loader(10))
    controller = StopController.of(run.trainer)
    assert run.batches_per_epoch == [10, 10]
    assert (controller.stop_reason, controller.stop_message) == (StopReason.USER_REQUEST, "enough")


def test_min_steps_also_makes_min_epochs_one_and_stops_mid_epoch():
    run = make_run()
    limits = LoopLimits(max_epochs=5, min_steps=14).attach(run.trainer)
    assert (limits.min_epochs, limits.min_steps) == (1, 14)
    run.trainer.add_event_handler(Events.ITERATION_COMPLETED(once=2), lambda _: limits.loop.request_stop())
    run.trainer.run(loader(10))
    assert run.batches_per_epoch == [10, 4]


def test_default_max_epochs_is_lightnings_1000_with_a_warning():
    run = make_run()
    LoopLimits().attach(run.trainer)
    run.trainer.add_event_handler(Events.EPOCH_COMPLETED(once=2), lambda e: e.terminate())
    with pytest.warns(UserWarning, match="stops after 1000 epochs"):
        run.trainer.run(loader(2))
    assert run.trainer.state.max_epochs == 1000


def test_run_max_epochs_that_conflicts_is_refused():
    run = make_run()
    LoopLimits(max_epochs=3).attach(run.trainer)
    with pytest.raises(ValueError, match=r"trainer.run\(max_epochs=5\) conflicts with the config's max_epochs=3"):
        run.trainer.run(loader(4), max_epochs=5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_epochs": -2}, "max_epochs=-2"),
        ({"max_steps": 2.5}, "max_steps=2.5"),
        ({"min_epochs": -1}, "min_epochs=-1"),
        ({"min_steps": "3"}, "min_steps='3'"),
    ],
)
def test_bad_values_name_the_flag(kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        LoopLimits(**kwargs)


def test_a_second_loop_limits_on_one_trainer_is_refused():
    trainer = Engine(lambda e, b: None)
    LoopLimits(max_epochs=2).attach(trainer)
    with pytest.raises(ValueError, match="already has a LoopLimits attached; attach one handler per concern"):
        LoopLimits(max_epochs=3).attach(trainer)


def test_one_handler_on_two_trainers_is_refused():
    limits = LoopLimits(max_epochs=2).attach(Engine(lambda e, b: None))
    with pytest.raises(ValueError, match="already attached to another trainer"):
        limits.attach(Engine(lambda e, b: None))


def test_state_dict_before_attach_says_what_to_do():
    with pytest.raises(RuntimeError, match=r"not attached to a trainer: call attach\(trainer\) first"):
        LoopLimits(max_epochs=2).state_dict()


def test_checkpointed_limits_resume_exactly(tmp_path):
    from ignite.handlers import Checkpoint, DiskSaver

    def build():
        torch.manual_seed(0)
        run = make_run(lr=0.01)
        limits = LoopLimits(max_epochs=4, max_steps=33).attach(run.trainer)
        return run, limits

    reference, _ = build()
    reference.trainer.run(loader(10, shuffle=True))

    crashed, limits = build()
    saver = Checkpoint(
        {"trainer": crashed.trainer, "model": crashed.model, "loop": limits.loop},
        DiskSaver(str(tmp_path), require_empty=False),
        n_saved=1,
    )
    crashed.trainer.add_event_handler(Events.ITERATION_COMPLETED(every=7), saver)

    def crash(_):
        raise KeyboardInterrupt("killed")

    crashed.trainer.add_event_handler(Events.ITERATION_COMPLETED(once=17), crash)
    with pytest.raises(KeyboardInterrupt):
        crashed.trainer.run(loader(10, shuffle=True))

    resumed, limits = build()
    checkpoint = torch.load(next(tmp_path.glob("*.pt")), weights_only=True)
    Checkpoint.load_objects({"trainer": resumed.trainer, "model": resumed.model, "loop": limits.loop}, checkpoint)
    resumed.trainer.run(loader(10, shuffle=True))
    assert resumed.trainer.state.iteration == reference.trainer.state.iteration == 33
    assert StopController.of(resumed.trainer).stop_reason is StopReason.MAX_STEPS
    assert torch.equal(resumed.model.weight, reference.model.weight)
