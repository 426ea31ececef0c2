"""ignite-speed dropped into an existing Ignite app: the app's own terminate() calls, Checkpoint and
evaluator handlers never give a silently wrong result."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Events
from ignite.handlers import Checkpoint, DiskSaver
from ignite.handlers import EarlyStopping as IgniteEarlyStopping

from ignite_speed import StopReason, attach_speedups
from tests.helpers import loader, make_run


@pytest.mark.parametrize("where", ["epoch_end", "mid_epoch"])
def test_a_raw_terminate_is_its_own_reason_and_extend_continues_it_exactly(where):
    run = make_run()
    sp = attach_speedups(run.trainer, None, {"max_epochs": 3})
    if where == "epoch_end":
        run.trainer.add_event_handler(Events.EPOCH_COMPLETED(once=2), lambda e: e.terminate())
    else:
        run.trainer.add_event_handler(Events.ITERATION_COMPLETED(once=15), lambda e: e.terminate())
    run.trainer.run(loader(10))
    assert (sp.stop_reason, sp.stop_message) == (
        StopReason.TERMINATED, "trainer.terminate() was called by a handler or user code (not by ignite-speed)")
    first = list(run.batches_per_epoch)
    assert first == ([10, 10] if where == "epoch_end" else [10, 5])
    assert sp.progress.epochs_done == 2  # a partial epoch ends and counts, as with request_stop()

    with pytest.raises(RuntimeError, match="already finished"):
        run.trainer.run(loader(10))
    sp.extend()
    run.trainer.run(loader(10))
    assert (sp.stop_reason, sp.progress.epochs_done, run.trainer.state.epoch) == (StopReason.MAX_EPOCHS, 3, 3)
    assert run.batches_per_epoch == first + [10]


def test_ignites_own_early_stopping_ends_the_run_as_terminated():
    run = make_run([1.0] * 10)
    sp = attach_speedups(run.trainer, run.evaluator, {"max_epochs": 10, "num_sanity_val_steps": 0},
                         val_data=loader(2))
    run.evaluator.add_event_handler(Events.COMPLETED, IgniteEarlyStopping(
        patience=2, score_function=lambda e: -e.state.metrics["val_loss"], trainer=run.trainer))
    run.trainer.run(loader(5))
    assert (sp.stop_reason, sp.progress.epochs_done, run.val_at) == (StopReason.TERMINATED, 3, [5, 10, 15])


def test_a_checkpoint_without_the_speedups_state_is_refused_with_the_fix(tmp_path):
    run = make_run()
    attach_speedups(run.trainer, None, {"max_epochs": 6})
    run.trainer.add_event_handler(Events.EPOCH_COMPLETED, Checkpoint(
        {"trainer": run.trainer, "model": run.model}, DiskSaver(str(tmp_path), require_empty=False), n_saved=1))

    def crash(_):
        raise KeyboardInterrupt

    run.trainer.add_event_handler(Events.EPOCH_COMPLETED(once=3), crash)
    with pytest.raises(KeyboardInterrupt):
        run.trainer.run(loader(10))

    resumed = make_run()
    sp = attach_speedups(resumed.trainer, None, {"max_epochs": 6})
    Checkpoint.load_objects({"trainer": resumed.trainer, "model": resumed.model},
                            torch.load(next(tmp_path.glob("*.pt")), weights_only=True))
    with pytest.raises(RuntimeError, match=r"the trainer was restored to iteration 30 \(epoch 3\), but ignite-speed's "
                                           r"state was not .* add the Speedups object"):
        resumed.trainer.run(loader(10))
    assert resumed.total == 0 and sp.stop_reason is StopReason.NOT_STOPPED
