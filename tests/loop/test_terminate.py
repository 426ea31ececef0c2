"""An app's own ``trainer.terminate()`` at any event of a batch or an epoch (Ignite's cifar10 example stops at
``ITERATION_STARTED``): the run ends with ``StopReason.TERMINATED``, the partial epoch ends (its
``EPOCH_COMPLETED`` handlers run) and counts, the counters are the true ones (a batch Ignite counted but never
ran is not counted), and ``speedups.extend()`` continues the run exactly."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Events
from ignite.handlers import Checkpoint, DiskSaver

from ignite_speed import StopReason, attach_speedups, create_trainer
from tests.helpers import loader

# terminate() where, and what the run has done then: (batches trained in each epoch, Ignite's epoch)
CASES = {
    "ITERATION_STARTED": (Events.ITERATION_STARTED(once=14), [10, 3]),  # batch 14 never runs
    "ITERATION_COMPLETED": (Events.ITERATION_COMPLETED(once=14), [10, 4]),
    "EPOCH_COMPLETED": (Events.EPOCH_COMPLETED(once=2), [10, 10]),
}


@pytest.mark.parametrize("where", list(CASES))
@pytest.mark.parametrize("accumulate", [1, 3])
def test_terminate_ends_the_partial_epoch_with_true_counters_and_extend_continues(tmp_path, where, accumulate):
    event, trained = CASES[where]
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1)
    cfg = {"max_epochs": 3, "accumulate_grad_batches": accumulate}
    trainer = create_trainer(model, torch.optim.SGD(model.parameters(), lr=1e-3), torch.nn.functional.mse_loss, cfg)
    sp = attach_speedups(trainer, None, cfg)
    per_epoch: dict[int, int] = {}
    epoch_ends: list[tuple[int, int]] = []
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED, lambda e: per_epoch.__setitem__(e.state.epoch, per_epoch.get(e.state.epoch, 0) + 1)
    )
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: epoch_ends.append((e.state.epoch, e.state.iteration)))
    calls: list[int] = []

    def stop(engine):  # (once: the continued run passes iteration 14 again, as the never-run batch 14 runs there)
        if not calls:
            calls.append(engine.state.iteration)
            engine.terminate()

    trainer.add_event_handler(event, stop)
    ckpt = Checkpoint({"trainer": trainer, "speedups": sp}, DiskSaver(str(tmp_path), require_empty=False))
    trainer.add_event_handler(Events.COMPLETED, ckpt)

    trainer.run(loader(10))
    batches = sum(trained)
    steps = sum(-(-n // accumulate) if n == 10 else n // accumulate for n in trained)  # (a cut window: no step)
    assert (sp.stop_reason, sp.stop_message) == (
        StopReason.TERMINATED,
        "trainer.terminate() was called by a handler or user code (not by ignite-speed)",
    )
    assert [per_epoch[k] for k in sorted(per_epoch)] == trained
    assert calls == [14 if where.startswith("ITERATION") else 20]
    assert epoch_ends == [(1, 10), (2, batches)]  # the partial epoch's EPOCH_COMPLETED fired, once
    assert (trainer.state.iteration, sp.progress.total_batches, trainer.state.epoch) == (batches, batches, 2)
    assert (sp.progress.epochs_done, sp.progress.batch_in_epoch, sp.global_step) == (2, trained[1], steps)
    assert torch.load(next(tmp_path.glob("*.pt")), weights_only=True)["trainer"]["iteration"] == batches

    with pytest.raises(RuntimeError, match="already finished"):
        trainer.run(loader(10))
    sp.extend(max_epochs=4)
    trainer.run(loader(10))
    assert (sp.stop_reason, sp.progress.epochs_done, trainer.state.epoch) == (StopReason.MAX_EPOCHS, 4, 4)
    assert [per_epoch[k] for k in sorted(per_epoch)] == trained + [10, 10]
    assert (trainer.state.iteration, sp.progress.total_batches) == (batches + 20, batches + 20)
    assert sp.global_step == steps + 2 * -(-10 // accumulate)
