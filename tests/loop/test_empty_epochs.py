"""An epoch in which the training data gives no batch (Lightning 2.6's fit loop): for a re-iterable (a
DataLoader, even over an IterableDataset) it counts as an epoch, with no optimizer step, and the next epoch
starts; a one-shot generator ends the run with ``StopReason.DATA_EXHAUSTED`` (docs/deviations.rst)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset

from ignite_speed import LoopLimits, StopReason, TrainingLoop, attach_speedups
from tests.helpers import loader, make_run, warns_accumulation


class EpochSizes(IterableDataset):
    """Gives ``sizes[k]`` samples on its ``k``-th ``__iter__`` call (none on later calls): an iterable
    dataset whose epochs differ, some of them empty."""

    def __init__(self, *sizes: int) -> None:
        self.sizes, self.calls = sizes, 0

    def __iter__(self):
        n = self.sizes[self.calls] if self.calls < len(self.sizes) else 0
        self.calls += 1
        for i in range(n):
            v = torch.tensor([float(i)])
            yield v, v.clone()


def _run(data, attach, **cfg):
    run = make_run()
    attach(run.trainer, cfg)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run.trainer.run(data)
    assert not [w for w in caught if "one-shot" in str(w.message)]
    return run, TrainingLoop.of(run.trainer)


def _speedups(trainer, cfg):
    attach_speedups(trainer, None, {"max_epochs": 3, **cfg})


def _loop_limits(trainer, cfg):
    assert not cfg
    LoopLimits(max_epochs=3).attach(trainer)


# (samples per epoch, batches per Ignite epoch number): the empty epoch in the middle, or the first one
# (there Ignite took 0 as the epoch length and ended the run)
CASES = [((3, 0, 2), {1: 3, 3: 2}), ((0, 3, 2), {2: 3, 3: 2})]


@pytest.mark.parametrize("attach", [_speedups, _loop_limits], ids=["attach_speedups", "LoopLimits"])
@pytest.mark.parametrize("sizes, per_epoch", CASES, ids=["middle-empty", "first-empty"])
def test_empty_epoch_of_an_iterable_dataset_loader_counts_and_training_goes_on(sizes, per_epoch, attach):
    run, loop = _run(DataLoader(EpochSizes(*sizes), batch_size=1), attach)
    assert loop.controller.final.reason is StopReason.MAX_EPOCHS
    assert loop.progress.epochs_done == 3 and run.epoch_completed == 3 and run.trainer.state.epoch == 3
    assert run.per_epoch == per_epoch and run.total == loop.progress.total_batches == 5
    assert loop.progress.global_step == 5


@pytest.mark.parametrize("sizes, per_epoch", CASES, ids=["middle-empty", "first-empty"])
def test_empty_epoch_makes_no_optimizer_step_with_accumulation(sizes, per_epoch):
    # 3 batches: a step after the 2nd and one for the pending last batch; 2 batches: one step; none when empty
    with warns_accumulation(2):
        run, loop = _run(DataLoader(EpochSizes(*sizes), batch_size=1), _speedups, accumulate_grad_batches=2)
    assert loop.controller.final.reason is StopReason.MAX_EPOCHS and loop.progress.epochs_done == 3
    assert run.per_epoch == per_epoch and loop.progress.global_step == 3


def test_batches_of_two_samples():
    run, loop = _run(DataLoader(EpochSizes(3, 0, 2), batch_size=2), _speedups)
    assert loop.controller.final.reason is StopReason.MAX_EPOCHS and loop.progress.epochs_done == 3
    assert run.per_epoch == {1: 2, 3: 1} and loop.progress.global_step == 3


def test_two_empty_epochs_first():
    run, loop = _run(DataLoader(EpochSizes(0, 0, 2), batch_size=1), _speedups)
    assert loop.controller.final.reason is StopReason.MAX_EPOCHS and loop.progress.epochs_done == 3
    assert run.per_epoch == {3: 2} and loop.progress.global_step == 2


def test_extend_after_an_empty_first_epoch():
    run = make_run()
    sp = attach_speedups(run.trainer, None, {"max_epochs": 1})
    data = DataLoader(EpochSizes(0, 3, 2), batch_size=1)
    run.trainer.run(data)
    assert sp.stop_reason is StopReason.MAX_EPOCHS and sp.progress.epochs_done == 1 and run.total == 0
    sp.extend(max_epochs=3)
    run.trainer.run(data)
    assert sp.stop_reason is StopReason.MAX_EPOCHS and sp.progress.epochs_done == 3
    assert run.per_epoch == {2: 3, 3: 2} and sp.global_step == 5


@pytest.mark.parametrize("attach", [_speedups, _loop_limits], ids=["attach_speedups", "LoopLimits"])
def test_generator_ends_the_run_after_its_one_pass(attach):
    run = make_run()
    attach(run.trainer, {})
    with pytest.warns(UserWarning, match="one-shot generator"):
        run.trainer.run(b for b in loader(4))
    loop = TrainingLoop.of(run.trainer)
    assert loop.controller.final.reason is StopReason.DATA_EXHAUSTED
    assert loop.progress.epochs_done == 1 and run.per_epoch == {1: 4} and loop.progress.global_step == 4


def test_empty_generator_ends_the_run_at_once():
    run = make_run()
    attach_speedups(run.trainer, None, {"max_epochs": 3})
    with pytest.warns(UserWarning, match="no batches in epoch 0"):
        run.trainer.run(b for b in loader(0))
    loop = TrainingLoop.of(run.trainer)
    assert loop.controller.final.reason is StopReason.DATA_EXHAUSTED
    assert loop.progress.epochs_done == 0 and run.total == 0
