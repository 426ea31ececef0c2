"""ValidationSchedule alone in a plain Ignite app, and with early stopping next to it."""

from __future__ import annotations

import pytest
from ignite.engine import Engine, Events

from ignite_speed.handlers import EarlyStopping, LoopLimits, StopController, StopReason, ValidationSchedule
from tests.helpers import loader, make_run


def test_every_half_epoch_with_a_sanity_check_and_limited_batches():
    run = make_run()
    ValidationSchedule(run.evaluator, loader(6, 100.0), val_check_interval=0.5, limit_val_batches=4).attach(run.trainer)
    run.trainer.run(loader(10), max_epochs=2)
    assert run.val_at == [5, 10, 15, 20]
    assert run.val_batches == [4, 4, 4, 4]
    assert run.sanity == 2  # num_sanity_val_steps=2 batches through the evaluator's step, none of its handlers


def test_every_n_batches_across_epochs():
    run = make_run()
    ValidationSchedule(
        run.evaluator, loader(3), val_check_interval=4, check_val_every_n_epoch=None, num_sanity_val_steps=0
    ).attach(run.trainer)
    LoopLimits(max_epochs=3).attach(run.trainer)
    run.trainer.run(loader(6))
    assert run.val_at == [4, 8, 12, 16]


def test_every_second_epoch():
    run = make_run()
    ValidationSchedule(run.evaluator, loader(3), check_val_every_n_epoch=2, num_sanity_val_steps=0).attach(run.trainer)
    run.trainer.run(loader(5), max_epochs=5)
    assert run.val_at == [10, 20]


def test_limit_val_batches_zero_turns_validation_off():
    run = make_run()
    ValidationSchedule(run.evaluator, loader(3), limit_val_batches=0).attach(run.trainer)
    run.trainer.run(loader(5), max_epochs=2)
    assert (run.val_at, run.sanity) == ([], 0)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"val_check_interval": 1.5}, ValueError, "val_check_interval=1.5"),
        ({"check_val_every_n_epoch": 0}, ValueError, "check_val_every_n_epoch=0"),
        ({"num_sanity_val_steps": -2}, ValueError, "num_sanity_val_steps=-2"),
        ({"limit_val_batches": -3}, ValueError, "limit_val_batches=-3"),
    ],
)
def test_bad_values_name_the_flag(kwargs, error, match):
    with pytest.raises(error, match=match):
        ValidationSchedule(Engine(lambda e, b: None), loader(3), **kwargs)


def test_not_an_engine_or_no_data_is_refused():
    with pytest.raises(TypeError, match="is not an ignite Engine"):
        ValidationSchedule(lambda e, b: None, loader(3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="val_data=None"):
        ValidationSchedule(Engine(lambda e, b: None), None)


def test_a_fraction_of_val_batches_that_gives_none_is_refused_when_attaching():
    with pytest.raises(ValueError, match="limit_val_batches=0.1"):
        ValidationSchedule(Engine(lambda e, b: None), loader(3), limit_val_batches=0.1).attach(
            Engine(lambda e, b: None)
        )


def _scored_engines():
    """A trainer and an evaluator whose ``score`` is 1.0 on the validation data (constant: early stopping
    should stop) and keeps improving on any other data (the app's own evaluation of the training data)."""
    trainer = Engine(lambda e, b: 0.0)
    evaluator = Engine(lambda e, b: b)
    other_scores = iter([0.9 - 0.01 * k for k in range(1000)])

    @evaluator.on(Events.EPOCH_COMPLETED)
    def score(engine: Engine) -> None:
        is_val = engine.state.batch[0] >= 100
        engine.state.metrics["score"] = 1.0 if is_val else next(other_scores)

    return trainer, evaluator


@pytest.mark.parametrize("order", ["schedule_first", "early_stopping_first", "attach_speedups"])
def test_early_stopping_judges_the_schedules_runs_not_the_apps_own_evaluator_runs(order):
    trainer, evaluator = _scored_engines()
    train_data = [[i] for i in range(10)]
    # the app evaluates the training data after each epoch, with the same evaluator (Ignite's examples do)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: evaluator.run(train_data))
    schedule = ValidationSchedule(evaluator, [[100 + i] for i in range(3)], num_sanity_val_steps=0)
    es = EarlyStopping(evaluator, monitor="score", mode="max", patience=2)
    if order == "attach_speedups":
        from ignite_speed import attach_speedups

        es = attach_speedups(
            trainer,
            evaluator,
            {
                "num_sanity_val_steps": 0,
                "max_epochs": 10,
                "early_stopping": {"monitor": "score", "mode": "max", "patience": 2},
            },
            val_data=schedule.val_data,
        ).early_stopping
    elif order == "schedule_first":
        schedule.attach(trainer)
        es.attach(trainer)
    else:
        es.attach(trainer)
        schedule.attach(trainer)
    with pytest.warns(UserWarning, match="evaluator of ignite-speed's validation schedule was also run during"):
        trainer.run(train_data, max_epochs=None if order == "attach_speedups" else 10)
    # checks at epoch end (Lightning's rule for the default schedule) read the schedule's run: 1.0 three times
    assert (trainer.state.epoch, es.best_score, es.wait_count) == (3, 1.0, 2)
    assert StopController.of(trainer).stop_reason is StopReason.EARLY_STOPPING


def test_two_schedules_are_refused():
    trainer, evaluator = Engine(lambda e, b: None), Engine(lambda e, b: None)
    ValidationSchedule(evaluator, loader(2)).attach(trainer)
    with pytest.raises(ValueError, match="already has a ValidationSchedule attached"):
        ValidationSchedule(evaluator, loader(2)).attach(trainer)
