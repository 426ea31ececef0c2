"""Exact resume where the uninterrupted run draws random numbers that a resumed run used to miss (found by
tests/loop/test_relaunch.py): the end of an epoch's shuffled iterator, and a validation run inside an open
accumulation window. Each run crashes after a checkpoint and a new set-up resumes from that checkpoint; the
weights and the batches must equal those of the run that was never interrupted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver
from torch.utils.data import DataLoader, TensorDataset

from ignite_speed import attach_speedups, create_trainer

BATCHES = 8


def _build(ckpt_dir: Path, save_at: Any, crash_at: int = 0, accumulate: int = 1) -> dict[str, Any]:
    """A small MLP with dropout on a loader shuffled by its own seeded generator, validation (on a
    ``DataLoader``: making its iterator draws from the global generator) every 4 batches."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.3), torch.nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(BATCHES * 4, 4, generator=torch.Generator().manual_seed(1))
    train = DataLoader(
        TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(3)
    )
    cfg = {"max_epochs": 3, "accumulate_grad_batches": accumulate, "val_check_interval": 4, "num_sanity_val_steps": 0}
    trainer = create_trainer(model, opt, torch.nn.functional.mse_loss, cfg)

    def val_step(engine: Engine, batch: Any) -> float:
        model.eval()
        with torch.no_grad():
            return float(torch.nn.functional.mse_loss(model(batch[0]), batch[1]))

    val = DataLoader(TensorDataset(x[:8], x[:8].sum(1, keepdim=True)), batch_size=4)
    sp = attach_speedups(trainer, Engine(val_step), cfg, val_data=val)
    to_save = {"trainer": trainer, "model": model, "optimizer": opt, "speedups": sp}
    trainer.add_event_handler(
        save_at,
        Checkpoint(
            to_save,
            DiskSaver(str(ckpt_dir), require_empty=False),
            n_saved=None,
            global_step_transform=lambda e, _: e.state.iteration,
        ),
    )
    seen: list[float] = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: seen.append(float(e.state.batch[0][0, 0])))

    def crash(engine: Engine) -> None:
        raise KeyboardInterrupt

    if crash_at:
        trainer.add_event_handler(Events.ITERATION_COMPLETED(once=crash_at), crash)
    return {"trainer": trainer, "model": model, "data": train, "to_save": to_save, "seen": seen}


def _resumed_equals_uninterrupted(tmp_path: Path, save_at: Any, at: int, accumulate: int) -> None:
    reference = _build(tmp_path / "ref", save_at, accumulate=accumulate)
    reference["trainer"].run(reference["data"])
    crashed = _build(tmp_path / "ckpt", save_at, crash_at=at + 1, accumulate=accumulate)
    with pytest.raises(KeyboardInterrupt):
        crashed["trainer"].run(crashed["data"])
    resumed = _build(tmp_path / "resumed", save_at, accumulate=accumulate)
    state = torch.load(tmp_path / "ckpt" / f"checkpoint_{at}.pt", weights_only=True)
    Checkpoint.load_objects(to_load=resumed["to_save"], checkpoint=state)
    resumed["trainer"].run(resumed["data"])
    assert resumed["trainer"].state.iteration == reference["trainer"].state.iteration == 3 * BATCHES
    assert resumed["seen"] == reference["seen"][at:]  # the same batches, in the same order
    for name, value in reference["model"].state_dict().items():
        assert torch.equal(resumed["model"].state_dict()[name], value), name


def test_a_checkpoint_at_an_epoch_end_resumes_the_seeded_shuffle_exactly(tmp_path):
    # the uninterrupted run reads the exhausted iterator once more at the next epoch: RandomSampler draws a
    # permutation from the loader's generator for its empty remainder before the next epoch's iterator is made
    _resumed_equals_uninterrupted(tmp_path, Events.EPOCH_COMPLETED, at=BATCHES, accumulate=1)


def test_a_checkpoint_after_a_validation_inside_an_accumulation_window_resumes_exactly(tmp_path):
    # window of batches 4-6; validation after batch 4 makes its loader's iterator (a draw from the global
    # generator); the checkpoint after batch 5 replays batches 4 and 5, and batch 5's dropout mask follows it
    _resumed_equals_uninterrupted(tmp_path, Events.ITERATION_COMPLETED(once=5), at=5, accumulate=3)
