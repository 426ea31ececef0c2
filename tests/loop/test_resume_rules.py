"""A resume under another setup (number of processes, batch size, data length, batches per epoch,
accumulate_grad_batches): refused by default with the saved and the new values and the flag that accepts it;
with ``allow_resume_changes=True`` the interrupted epoch ends at the checkpoint's batch and training continues
at the next epoch under the new setup, counters kept (exact numbers). Raising the limits stays allowed. Real
engines, DataLoaders and Checkpoint files."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver
from torch.utils.data import DataLoader, TensorDataset

from ignite_speed import StopReason, attach_speedups, create_trainer
from ignite_speed.loop import TrainingLoop

SAMPLES = 24


def _build(
    ckpt_dir: Path,
    *,
    batch_size: int = 4,
    every: int = 4,
    crash_at: int = 0,
    epoch_end_ckpt: bool = False,
    accumulate: int = 1,
    validate: bool = False,
    **cfg: Any,
) -> dict[str, Any]:
    """A shuffled regression (24 samples) under create_trainer, a Checkpoint every ``every`` iterations (or at
    epoch ends); raises KeyboardInterrupt after iteration ``crash_at``; ``validate``: with an evaluator (that
    does nothing) on 2 batches."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x = torch.randn(SAMPLES, 4, generator=torch.Generator().manual_seed(1))
    index = torch.arange(SAMPLES, dtype=torch.float32).unsqueeze(1)
    data = DataLoader(
        TensorDataset(x, x.sum(dim=1, keepdim=True), index),
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(2),
    )
    trainer = create_trainer(
        model,
        opt,
        torch.nn.MSELoss(),
        {"accumulate_grad_batches": accumulate},
        prepare_batch=lambda batch, device, non_blocking: (batch[0], batch[1]),
    )
    evaluator = Engine(lambda engine, batch: None) if validate else None
    sp = attach_speedups(
        trainer,
        evaluator,
        cfg={"max_epochs": 3, "accumulate_grad_batches": accumulate, **cfg},
        val_data=[0, 1] if validate else None,
    )
    to_save = {"trainer": trainer, "model": model, "optimizer": opt, "speedups": sp}
    ckpt = Checkpoint(to_save, DiskSaver(str(ckpt_dir), require_empty=False), n_saved=None)
    trainer.add_event_handler(
        Events.EPOCH_COMPLETED if epoch_end_ckpt else Events.ITERATION_COMPLETED(every=every), ckpt
    )
    record: dict[str, list] = {"epochs_completed": [], "samples": []}
    trainer.add_event_handler(
        Events.EPOCH_COMPLETED, lambda e: record["epochs_completed"].append((e.state.epoch, e.state.iteration))
    )
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED,
        lambda e: record["samples"].append((e.state.epoch, e.state.batch[2].flatten().int().tolist())),
    )

    def crash(engine: Engine) -> None:
        raise KeyboardInterrupt

    if crash_at:
        trainer.add_event_handler(Events.ITERATION_COMPLETED(once=crash_at), crash)
    return {"trainer": trainer, "model": model, "sp": sp, "data": data, "to_save": to_save, "record": record}


def _crash(ckpt_dir: Path, at: int, **kw: Any) -> None:
    run = _build(ckpt_dir, crash_at=at, **kw)
    with pytest.raises(KeyboardInterrupt):
        run["trainer"].run(run["data"])


def _load(run: dict[str, Any], path: Path) -> None:
    Checkpoint.load_objects(to_load=run["to_save"], checkpoint=torch.load(path, weights_only=True))


def _changes_text(*items: str) -> str:
    return re.escape(", ".join(items))


FIX = r"\. Resume with the saved setup, or set allow_resume_changes=True \(TrainingLoop\.of\(trainer\)\.setup\.allow_resume_changes"


# ---------------------------------------------------------------------------------------------- refused
def test_another_batch_size_is_refused_with_the_saved_and_new_values(tmp_path):
    _crash(tmp_path, at=10)  # checkpoint_8: epoch 2, batch 2 of 6
    run = _build(tmp_path, batch_size=2)
    _load(run, tmp_path / "checkpoint_8.pt")
    changes = _changes_text(
        "batch_size (per process) 4 -> 2",
        "batches of the training data (per process) 6 -> 12",
        "batches per epoch (per process) 6 -> 12",
    )
    with pytest.raises(
        ValueError,
        match=r"^cannot resume from the checkpoint: it was written under another setup, "
        r"and the data order or the counting of optimizer steps would change "
        rf"\(saved -> now\): {changes}{FIX}",
    ):
        run["trainer"].run(run["data"])
    assert run["trainer"].state.iteration == 8 and run["sp"].progress.total_batches == 8


def test_another_world_size_is_refused(tmp_path):
    """A checkpoint written by rank 0 of 2 processes (each with half the data: 3 batches per epoch), resumed in
    one process on all the data (6 batches). The state is the 2-process run's as the loop records it: the
    layout's world_size says 2 (the run itself is simulated in one process with a DistributedSampler)."""
    run = _build(tmp_path, crash_at=5)
    sampler = torch.utils.data.DistributedSampler(run["data"].dataset, num_replicas=2, rank=0, seed=3)
    half = DataLoader(run["data"].dataset, batch_size=4, sampler=sampler)
    with pytest.raises(KeyboardInterrupt):
        run["trainer"].run(half)
    state = torch.load(tmp_path / "checkpoint_4.pt", weights_only=True)
    assert state["speedups"]["loop"]["data"]["layout"] == {
        "world_size": 1,
        "batch_size": 4,
        "data_length": 3,
        "train_batches": 3,
        "accumulate_grad_batches": 1,
        "limit_train_batches": None,
    }
    state["speedups"]["loop"]["data"]["layout"]["world_size"] = 2
    run = _build(tmp_path)
    Checkpoint.load_objects(to_load=run["to_save"], checkpoint=state)
    changes = _changes_text(
        "world_size (number of processes) 2 -> 1",
        "batches of the training data (per process) 3 -> 6",
        "batches per epoch (per process) 3 -> 6",
    )
    with pytest.raises(ValueError, match=rf"\(saved -> now\): {changes}{FIX}"):
        run["trainer"].run(run["data"])


def test_another_accumulate_grad_batches_is_refused(tmp_path):
    _crash(tmp_path, at=10, accumulate=2)
    run = _build(tmp_path, accumulate=3)
    _load(run, tmp_path / "checkpoint_8.pt")
    with pytest.raises(ValueError, match=rf"\(saved -> now\): {_changes_text('accumulate_grad_batches 2 -> 3')}{FIX}"):
        run["trainer"].run(run["data"])


def test_another_limit_train_batches_is_refused_naming_the_flag(tmp_path):
    _crash(tmp_path, at=10, limit_train_batches=4)  # checkpoint_8: epoch 2 ends at batch 4
    run = _build(tmp_path, limit_train_batches=5)
    _load(run, tmp_path / "checkpoint_8.pt")
    changes = _changes_text("batches per epoch (per process) 4 -> 5", "limit_train_batches 4 -> 5")
    with pytest.raises(ValueError, match=rf"\(saved -> now\): {changes}{FIX}"):
        run["trainer"].run(run["data"])


def test_run_epoch_length_is_the_batches_per_epoch_not_the_data_length(tmp_path):
    crashed = _build(tmp_path, crash_at=6)  # trainer.run(data, epoch_length=4): checkpoint_4 at epoch 1's end
    with pytest.raises(KeyboardInterrupt):
        crashed["trainer"].run(crashed["data"], epoch_length=4)
    state = torch.load(tmp_path / "checkpoint_4.pt", weights_only=True)["speedups"]["loop"]["data"]["layout"]
    assert (state["data_length"], state["train_batches"]) == (6, 4)
    run = _build(tmp_path)
    _load(run, tmp_path / "checkpoint_4.pt")
    with pytest.raises(
        ValueError, match=rf"\(saved -> now\): {_changes_text('batches per epoch (per process) 4 -> 6')}{FIX}"
    ):
        run["trainer"].run(run["data"])
    run["trainer"].run(run["data"], epoch_length=4)  # as saved
    assert (run["trainer"].state.iteration, run["sp"].stop_reason) == (12, StopReason.MAX_EPOCHS)


def test_autoresume_refuses_naming_the_file_and_the_fixes(tmp_path):
    _crash(tmp_path, at=10)
    run = _build(tmp_path, batch_size=2, autoresume=True)
    path = re.escape(str(tmp_path / "checkpoint_8.pt"))
    with pytest.raises(
        ValueError,
        match=rf"^cannot resume from {path}: it was written under another setup.*"
        rf"batch_size \(per process\) 4 -> 2.*{FIX}.*; to start from scratch instead, "
        rf"move {path} out of its folder or set autoresume=False$",
    ):
        run["trainer"].run(run["data"])


# ---------------------------------------------------------------------------------------------- allowed
def test_raising_the_limits_and_changing_the_validation_schedule_stay_allowed_and_exact(tmp_path):
    reference = _build(tmp_path / "ref", max_epochs=4)
    reference["trainer"].run(reference["data"])
    _crash(tmp_path, at=10)  # written with max_epochs=3
    run = _build(tmp_path, max_epochs=4, max_steps=100, max_time=3600)
    _load(run, tmp_path / "checkpoint_8.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: nothing changes the data order
        run["trainer"].run(run["data"])
    assert (run["trainer"].state.iteration, run["sp"].global_step, run["sp"].stop_reason) == (
        24,
        24,
        StopReason.MAX_EPOCHS,
    )
    assert torch.equal(run["model"].weight, reference["model"].weight)


def test_a_refused_max_epochs_then_extend_resumes_from_the_checkpoint_exactly(tmp_path):
    """The refusal of a checkpoint past max_epochs keeps the loaded state: after speedups.extend(max_epochs=...)
    the next run resumes from the checkpoint's position, not from Ignite's own guess of it."""
    reference = _build(tmp_path / "ref", max_epochs=5)
    reference["trainer"].run(reference["data"])
    _crash(tmp_path, at=17)  # checkpoint_16: 2 epochs done, epoch 3 after batch 4 of 6
    run = _build(tmp_path, max_epochs=1)
    _load(run, tmp_path / "checkpoint_16.pt")
    with pytest.raises(ValueError, match=r"has 2 epochs done, but max_epochs=1: resume with max_epochs >= 2"):
        run["trainer"].run(run["data"])
    run["sp"].extend(max_epochs=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run["trainer"].run(run["data"])
    assert run["record"]["epochs_completed"] == [(3, 18), (4, 24), (5, 30)]
    assert [epoch for epoch, _ in run["record"]["samples"]] == [3, 3] + [4] * 6 + [5] * 6
    assert run["record"]["samples"] == reference["record"]["samples"][16:]
    assert (run["trainer"].state.iteration, run["trainer"].state.epoch) == (30, 5)
    assert (run["sp"].progress.total_batches, run["sp"].progress.epochs_done, run["sp"].stop_reason) == (
        30,
        5,
        StopReason.MAX_EPOCHS,
    )
    assert torch.equal(run["model"].weight, reference["model"].weight)
    assert torch.equal(run["model"].bias, reference["model"].bias)


def test_another_validation_schedule_is_allowed_and_applies_from_the_resume_on(tmp_path):
    """val_check_interval is not part of the layout: the resumed run validates on the new schedule from where it
    stands, starting with the pending decision of the checkpoint's batch."""
    _crash(tmp_path, at=10, validate=True, val_check_interval=3)  # checkpoint_8: epoch 2 after batch 2; 2 runs
    run = _build(tmp_path, validate=True, val_check_interval=2)
    _load(run, tmp_path / "checkpoint_8.pt")
    assert run["sp"].progress.val_runs == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run["trainer"].run(run["data"])
    # epoch 2: after batches 2 (the pending decision), 4 and 6; epoch 3: after batches 2, 4 and 6
    assert (run["sp"].progress.val_runs, run["trainer"].state.iteration) == (8, 18)


# ---------------------------------------------------------------------------------------------- accepted
def test_accepted_mid_epoch_the_epoch_ends_at_the_checkpoint_batch_and_the_next_runs_under_the_new_setup(tmp_path):
    _crash(tmp_path, at=10)  # checkpoint_8: epoch 2, after batch 2 of 6 (its decision pending)
    run = _build(tmp_path, batch_size=2, allow_resume_changes=True)
    _load(run, tmp_path / "checkpoint_8.pt")
    with pytest.warns(UserWarning) as caught:
        run["trainer"].run(run["data"])
    messages = [str(w.message) for w in caught if "allow_resume_changes" in str(w.message)]
    assert messages == [
        "resuming under another setup (allow_resume_changes=True; saved -> now: batch_size (per process) 4 -> 2, "
        "batches of the training data (per process) 6 -> 12, batches per epoch (per process) 6 -> 12): the "
        "interrupted epoch 2 (1-based) ends after its batch 2 of 6, its remaining batches are skipped; training "
        "continues with epoch 3 under the new setup, with the epoch, step and batch counters kept"
    ]
    sp, record = run["sp"], run["record"]
    # epoch 2 ended at iteration 8 (EPOCH_COMPLETED fired for it), epoch 3 ran 12 batches of 2
    assert record["epochs_completed"] == [(2, 8), (3, 20)]
    assert [epoch for epoch, _ in record["samples"]] == [3] * 12
    assert sorted(i for _, batch in record["samples"] for i in batch) == list(range(SAMPLES))  # a whole fresh epoch
    assert (run["trainer"].state.iteration, run["trainer"].state.epoch) == (20, 3)
    assert (sp.progress.total_batches, sp.global_step, sp.progress.epochs_done) == (20, 20, 3)
    assert sp.stop_reason is StopReason.MAX_EPOCHS


def test_accepted_with_fewer_batches_per_epoch_runs_every_remaining_epoch(tmp_path):
    """Batches per epoch shrink (6 -> 3, as when the processes double): iteration 16 is past 3 * max_epochs of
    Ignite's own count, yet the run trains epochs 4 and 5 and ends on max_epochs."""
    _crash(tmp_path, at=17)  # checkpoint_16: 2 epochs done, epoch 3 after batch 4
    run = _build(tmp_path, batch_size=8, max_epochs=5, allow_resume_changes=True)
    _load(run, tmp_path / "checkpoint_16.pt")
    with pytest.warns(UserWarning, match=r"the interrupted epoch 3 \(1-based\) ends after its batch 4 of 6"):
        run["trainer"].run(run["data"])
    assert run["record"]["epochs_completed"] == [(3, 16), (4, 19), (5, 22)]
    sp = run["sp"]
    assert (sp.progress.total_batches, sp.global_step, sp.progress.epochs_done, sp.stop_reason) == (
        22,
        22,
        5,
        StopReason.MAX_EPOCHS,
    )


def test_accepted_inside_an_accumulation_window_drops_the_window(tmp_path):
    # accumulate 2, 6 batches per epoch: 3 steps per epoch; checkpoint_9: epoch 2 after batch 3 (a window open)
    _crash(tmp_path, at=10, every=3, accumulate=2)
    saved = torch.load(tmp_path / "checkpoint_9.pt", weights_only=True)["speedups"]["loop"]["state"]
    assert (saved["window_batches"], saved["progress"]["global_step"]) == (1, 4)
    run = _build(tmp_path, every=3, accumulate=3, allow_resume_changes=True)
    _load(run, tmp_path / "checkpoint_9.pt")
    with pytest.warns(
        UserWarning,
        match=r"accumulate_grad_batches 2 -> 3\): the interrupted epoch 2 \(1-based\) ends "
        r"after its batch 3 of 6, its remaining batches are skipped, and the 1 batch of "
        r"its open accumulation window give no optimizer step",
    ):
        run["trainer"].run(run["data"])
    sp = run["sp"]
    # epoch 3: 6 batches, 2 steps of 3
    assert (sp.progress.total_batches, sp.global_step, sp.progress.epochs_done) == (15, 6, 3)


def test_accepted_at_an_epoch_end_and_exact_after_a_second_interruption(tmp_path):
    _crash(tmp_path, at=8, epoch_end_ckpt=True)  # checkpoint_6: epoch 1's EPOCH_COMPLETED, decision pending
    first = _build(tmp_path / "a", batch_size=2, epoch_end_ckpt=True, allow_resume_changes=True)
    _load(first, tmp_path / "checkpoint_6.pt")
    with pytest.warns(UserWarning, match=r"\): training continues with epoch 2 under the new setup"):
        first["trainer"].run(first["data"])
    assert first["record"]["epochs_completed"] == [(2, 18), (3, 30)]
    assert (first["sp"].global_step, first["sp"].progress.epochs_done) == (30, 3)

    # the same resume, interrupted inside epoch 2: its checkpoints hold the new setup and resume exactly, warning
    # no more
    crashed = _build(tmp_path / "b", batch_size=2, every=5, allow_resume_changes=True, crash_at=17)
    _load(crashed, tmp_path / "checkpoint_6.pt")
    with pytest.warns(UserWarning), pytest.raises(KeyboardInterrupt):
        crashed["trainer"].run(crashed["data"])
    again = _build(tmp_path / "b", batch_size=2, every=5)
    _load(again, tmp_path / "b" / "checkpoint_15.pt")  # epoch 2, after batch 9 of 12
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again["trainer"].run(again["data"])
    assert (again["trainer"].state.iteration, again["sp"].global_step) == (30, 30)
    assert again["record"]["samples"] == first["record"]["samples"][9:]
    assert torch.equal(again["model"].weight, first["model"].weight)
    assert torch.equal(again["model"].bias, first["model"].bias)


def test_the_flag_takes_a_bool_and_reaches_the_loop():
    from ignite_speed import SpeedConfig

    assert SpeedConfig().allow_resume_changes is False
    for bad in (1, "yes", None):
        with pytest.raises(
            TypeError, match=r"^allow_resume_changes=.* has type .*; accepted: False \(refuse to resume"
        ):
            SpeedConfig(allow_resume_changes=bad)
    trainer = Engine(lambda e, b: 0.0)
    attach_speedups(trainer, allow_resume_changes=True)
    loop = TrainingLoop.of(trainer)
    assert loop is not None and loop.setup.allow_resume_changes is True


def test_an_epoch_end_checkpoint_with_a_loader_generator_resumes_the_next_epoch_order(tmp_path):
    """A DataLoader with its own generator= draws a randperm when its exhausted iterator raises StopIteration at
    the next epoch's first fetch (torch's RandomSampler); a resume from a checkpoint after the epoch's last batch
    rebuilds that iterator (indices only), so the next epoch is shuffled as in the run never interrupted."""
    reference = _build(tmp_path / "ref", batch_size=2, epoch_end_ckpt=True)
    reference["trainer"].run(reference["data"])
    _crash(tmp_path, at=14, batch_size=2, epoch_end_ckpt=True)  # checkpoint_12: epoch 1's EPOCH_COMPLETED
    run = _build(tmp_path, batch_size=2, epoch_end_ckpt=True)
    _load(run, tmp_path / "checkpoint_12.pt")
    run["trainer"].run(run["data"])
    assert run["record"]["samples"] == reference["record"]["samples"][12:]
    assert torch.equal(run["model"].weight, reference["model"].weight)


def test_a_checkpoint_at_the_last_batch_with_a_loader_generator_resumes_exactly(tmp_path):
    reference = _build(tmp_path / "ref", batch_size=2, every=12)
    reference["trainer"].run(reference["data"])
    _crash(tmp_path, at=14, batch_size=2, every=12)  # checkpoint_12: after epoch 1's last batch, its decision pending
    run = _build(tmp_path, batch_size=2, every=12)
    _load(run, tmp_path / "checkpoint_12.pt")
    run["trainer"].run(run["data"])
    assert run["record"]["samples"] == reference["record"]["samples"][12:]
    assert torch.equal(run["model"].weight, reference["model"].weight)
