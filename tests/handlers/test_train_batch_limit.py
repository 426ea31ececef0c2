"""TrainBatchLimit alone in a plain Ignite app."""

from __future__ import annotations

import pytest
from ignite.engine import Engine

from ignite_speed.handlers import LoopLimits, StopController, StopReason, TrainBatchLimit
from tests.helpers import loader, make_run, stream_loader


def test_int_limit_takes_the_first_batches_of_a_fresh_iterator_every_epoch():
    run = make_run()
    TrainBatchLimit(3).attach(run.trainer)
    run.trainer.run(loader(10), max_epochs=2)  # no LoopLimits: Ignite's max_epochs governs
    assert run.batches_per_epoch == [3, 3]
    assert run.first_samples == {1: 0.0, 2: 0.0}  # batch 0 again: a fresh iterator, not the old one continued
    assert StopController.of(run.trainer).stop_reason is StopReason.MAX_EPOCHS


def test_fraction_of_the_loader():
    run = make_run()
    TrainBatchLimit(0.25).attach(run.trainer)
    run.trainer.run(loader(10), max_epochs=3)
    assert run.batches_per_epoch == [2, 2, 2]


def test_an_unsized_loader_with_an_int_limit():
    run = make_run()
    TrainBatchLimit(4).attach(run.trainer)
    LoopLimits(max_epochs=2).attach(run.trainer)
    run.trainer.run(stream_loader(10))
    assert run.batches_per_epoch == [4, 4]


def test_zero_trains_nothing():
    run = make_run()
    TrainBatchLimit(0).attach(run.trainer)
    run.trainer.run(loader(10), max_epochs=2)
    controller = StopController.of(run.trainer)
    assert (run.total, controller.stop_reason, controller.stop_message) == (
        0,
        StopReason.NO_TRAINING,
        "no training: limit_train_batches gives 0 batches",
    )


@pytest.mark.parametrize(
    "value, match",
    [(1.5, "limit_train_batches=1.5"), (-1, "limit_train_batches=-1"), ("all", "limit_train_batches='all'")],
)
def test_bad_values_name_the_flag(value, match):
    with pytest.raises((TypeError, ValueError), match=match):
        TrainBatchLimit(value)


def test_a_fraction_of_an_unsized_loader_is_refused_naming_the_flag():
    run = make_run()
    TrainBatchLimit(0.5).attach(run.trainer)
    with pytest.raises(ValueError, match="limit_train_batches=0.5"):
        run.trainer.run(stream_loader(10), max_epochs=1)


def test_two_batch_limits_are_refused():
    trainer = Engine(lambda e, b: None)
    TrainBatchLimit(2).attach(trainer)
    with pytest.raises(ValueError, match="already has a TrainBatchLimit attached"):
        TrainBatchLimit(3).attach(trainer)
