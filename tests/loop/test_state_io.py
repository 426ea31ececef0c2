"""The loop's checkpoint: one layout (the loop's own part and each handler's state under its name), and
states written by ignite-speed 0.1.0 (one flat dict) migrated so that they resume exactly."""

from __future__ import annotations

import pathlib

import pytest
import torch
from ignite.engine import create_supervised_evaluator
from ignite.metrics import Loss

from ignite_speed import StopReason, attach_speedups, create_trainer
from ignite_speed.loop.resume import STATE_VERSION

FIXTURE = pathlib.Path(__file__).parent / "data" / "speedups_0.1.0.pt"


def build():
    """The run that wrote the fixture (with ignite-speed 0.1.0): its checkpoint was taken after iteration 14
    (epoch 1, batch 4, a window's end), before the loop's decision on that batch."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(40, 4, generator=g), torch.randn(40, 1, generator=g)
    data = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(2)
    )
    val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[:12], y[:12]), batch_size=4)
    trainer = create_trainer(model, opt, torch.nn.MSELoss(), {"accumulate_grad_batches": 2})
    evaluator = create_supervised_evaluator(model, metrics={"val_loss": Loss(torch.nn.MSELoss())})
    sp = attach_speedups(
        trainer,
        evaluator,
        {
            "max_epochs": 4,
            "accumulate_grad_batches": 2,
            "val_check_interval": 0.5,
            "max_time": 3600,
            "early_stopping": {"monitor": "val_loss", "patience": 10},
        },
        val_data=val,
        model=model,
    )
    return model, opt, trainer, sp, data


def outcome(model, sp):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        sp.progress.total_batches,
        sp.global_step,
        sp.progress.val_runs,
        sp.progress.epochs_done,
        sp.stop_reason,
        sp.early_stopping.best_score,
    )


def test_the_state_has_the_loop_part_and_each_handler_under_its_name():
    model, _, trainer, sp, data = build()
    trainer.run(data)
    state = sp.state_dict()
    assert state["version"] == STATE_VERSION == 4
    assert sorted(state) == [
        "early_stopping",
        "limits",
        "loop",
        "precision",
        "preemption",
        "time_budget",
        "validation",
        "version",
    ]
    assert sorted(state["loop"]) == ["clock", "controller", "data", "local_requests", "state"]
    assert state["loop"]["state"]["progress"]["total_batches"] == 40 and state["limits"] == {}
    assert len(state["validation"]["runs"]) == 8 and len(state["time_budget"]["epochs"]) == 4
    assert state["loop"]["data"]["layout"] == {
        "world_size": 1,
        "batch_size": 4,
        "data_length": 10,
        "train_batches": 10,
        "accumulate_grad_batches": 2,
        "limit_train_batches": None,
    }
    assert state["preemption"] == {}  # (the guard, on by default, has no state of its own)
    assert state["early_stopping"]["wait_count"] == sp.early_stopping.wait_count


def test_a_state_written_by_0_1_0_is_migrated_and_resumes_exactly():
    model, _, trainer, sp, data = build()
    trainer.run(data)
    expected = outcome(model, sp)
    assert expected[1:6] == (40, 20, 8, 4, StopReason.MAX_EPOCHS)

    saved = torch.load(FIXTURE, weights_only=True)
    assert saved["speedups"]["version"] == 2 and saved["speedups"]["stage"] == "batch_pending"
    model, opt, trainer, sp, data = build()
    trainer.load_state_dict(saved["trainer"])
    model.load_state_dict(saved["model"])
    opt.load_state_dict(saved["optimizer"])
    sp.load_state_dict(saved["speedups"])
    assert sp.progress.total_batches == 14
    trainer.run(data)
    resumed = outcome(model, sp)
    assert all(torch.equal(resumed[0][k], expected[0][k]) for k in expected[0])
    assert resumed[1:] == expected[1:]


def test_an_unknown_version_is_refused():
    _, _, _, sp, _ = build()
    with pytest.raises(
        ValueError, match=r"speedups state has version 99; this ignite-speed reads versions \[1, 2, 3, 4\]"
    ):
        sp.load_state_dict({"version": 99})
