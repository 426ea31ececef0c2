"""Exact resume covers every tensor of the model: parameters, buffers (BatchNorm's running statistics and
``num_batches_tracked``), the optimizer, the scaler and the generators, with and without gradient accumulation.

A resume inside an accumulation window replays the window's batches through the step to rebuild their
gradients; in train mode that forward updates BatchNorm's statistics a second time unless the loop puts them
back. Each case trains once uninterrupted, once until a crash after a chosen batch (a ``Checkpoint`` every
few batches), and resumes from the last checkpoint with fresh objects, as a new process would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from ignite.engine import Events
from ignite.handlers import Checkpoint, DiskSaver
from torch.utils.data import DataLoader, TensorDataset

from ignite_speed import Precision, attach_speedups, create_trainer

EVERY = 4  # a checkpoint every 4 batches: with accumulate_grad_batches=3, most land inside a window


class _Crash(Exception):
    pass


def _build(ckpt_dir: Path, accumulate: int, scaled: bool, crash_at: int = 0) -> dict[str, Any]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 8),
        torch.nn.BatchNorm1d(8),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.2),
        torch.nn.Linear(8, 8),
        torch.nn.BatchNorm1d(8),
        torch.nn.ReLU(),
        torch.nn.Linear(8, 1),
    )
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    x = torch.randn(48, 4, generator=torch.Generator().manual_seed(1))
    data = DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=4, shuffle=True)
    cfg = {"max_epochs": 3, "accumulate_grad_batches": accumulate, "limit_train_batches": 10}
    precision = Precision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=1024.0)) if scaled else None
    trainer = create_trainer(model, opt, torch.nn.functional.mse_loss, cfg, precision=precision)
    sp = attach_speedups(trainer, cfg=cfg)
    to_save = {"trainer": trainer, "model": model, "optimizer": opt, "speedups": sp}
    ckpt = Checkpoint(to_save, DiskSaver(str(ckpt_dir), require_empty=False), n_saved=1)
    trainer.add_event_handler(Events.ITERATION_COMPLETED(every=EVERY), ckpt)
    if crash_at:

        def crash(_: Any) -> None:
            raise _Crash

        trainer.add_event_handler(Events.ITERATION_COMPLETED(once=crash_at), crash)
    return {
        "trainer": trainer,
        "model": model,
        "opt": opt,
        "sp": sp,
        "data": data,
        "to_save": to_save,
        "ckpt": ckpt,
        "precision": precision,
    }


def _outcome(run: dict[str, Any]) -> dict[str, Any]:
    model = run["model"]
    scaler = run["precision"].scaler.state_dict() if run["precision"] is not None else {}
    return {
        "parameters": {k: v.detach().clone() for k, v in model.named_parameters()},
        "buffers": {k: v.detach().clone() for k, v in model.named_buffers()},
        "optimizer": run["opt"].state_dict()["state"],
        "scaler": scaler,
        "rng": torch.get_rng_state(),
        "iteration": run["trainer"].state.iteration,
        "global_step": run["sp"].global_step,
    }


def _assert_same(got: dict[str, Any], ref: dict[str, Any]) -> None:
    assert (got["iteration"], got["global_step"]) == (ref["iteration"], ref["global_step"])
    assert list(got["buffers"]) == list(ref["buffers"]) and len(ref["buffers"]) == 6
    for kind in ("parameters", "buffers"):
        for name, value in ref[kind].items():
            assert torch.equal(got[kind][name], value), f"{kind} {name}: {got[kind][name]} != {value}"
    for index, state in ref["optimizer"].items():
        for key, value in state.items():
            assert torch.equal(got["optimizer"][index][key], value), (index, key)
    assert got["scaler"] == ref["scaler"]
    assert torch.equal(got["rng"], ref["rng"])


_REFERENCE: dict[tuple[int, bool], dict[str, Any]] = {}


def _reference(tmp_path_factory: pytest.TempPathFactory, accumulate: int, scaled: bool) -> dict[str, Any]:
    key = (accumulate, scaled)
    if key not in _REFERENCE:
        run = _build(tmp_path_factory.mktemp("reference"), accumulate, scaled)
        run["trainer"].run(run["data"])
        _REFERENCE[key] = _outcome(run)
    return _REFERENCE[key]


CASES = [(3, False, at) for at in (6, 10, 14, 19, 23)] + [(1, False, 6), (1, False, 14), (3, True, 14)]


@pytest.mark.parametrize(
    "accumulate,scaled,crash_at", CASES, ids=[f"accumulate{a}{'-scaled' * s}-crash{c}" for a, s, c in CASES]
)
def test_a_resume_ends_with_every_tensor_of_the_uninterrupted_run(
    tmp_path, tmp_path_factory, accumulate, scaled, crash_at
):
    ref = _reference(tmp_path_factory, accumulate, scaled)
    crashed = _build(tmp_path, accumulate, scaled, crash_at=crash_at)
    with pytest.raises(_Crash):
        crashed["trainer"].run(crashed["data"])
    (last,) = list(tmp_path.glob("*.pt"))
    resumed = _build(tmp_path, accumulate, scaled)
    Checkpoint.load_objects(to_load=resumed["to_save"], checkpoint=torch.load(last, weights_only=True))
    window = resumed["sp"].loop.state.window_batches
    assert window == (crash_at - crash_at % EVERY) % 10 % accumulate
    resumed["trainer"].run(resumed["data"])
    _assert_same(_outcome(resumed), ref)
