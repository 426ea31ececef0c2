"""A checkpoint written in the version-3 layout (before the loop recorded the run's data layout) still loads
and resumes exactly: ``tests/loop/data/speedups_v3.pt`` was saved by that code from the run of :func:`build`
with a ``Checkpoint`` of ``{"trainer", "model", "optimizer", "speedups"}`` on ``ITERATION_COMPLETED(every=7)``,
after iteration 7 (epoch 1, batch 7, inside an accumulation window), before the loop's decision on that batch."""

from __future__ import annotations

import pathlib
from typing import Any

import torch
from ignite.handlers import Checkpoint

from ignite_speed import StopReason, attach_speedups, create_trainer

FIXTURE = pathlib.Path(__file__).parent / "data" / "speedups_v3.pt"


def build() -> dict[str, Any]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(40, 4, generator=g), torch.randn(40, 1, generator=g)
    data = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(2)
    )
    trainer = create_trainer(model, opt, torch.nn.MSELoss(), {"accumulate_grad_batches": 2})
    sp = attach_speedups(trainer, cfg={"max_epochs": 3, "accumulate_grad_batches": 2})
    return {"trainer": trainer, "model": model, "optimizer": opt, "speedups": sp, "data": data}


def test_a_version_3_checkpoint_loads_and_resumes_exactly():
    run = build()
    run["trainer"].run(run["data"])
    expected = {k: v.clone() for k, v in run["model"].state_dict().items()}
    assert (run["trainer"].state.iteration, run["speedups"].global_step) == (30, 15)

    saved = torch.load(FIXTURE, weights_only=True)
    assert saved["speedups"]["version"] == 3 and "run" not in saved["speedups"]["loop"]
    assert saved["speedups"]["loop"]["state"]["stage"] == "batch_pending"
    run = build()
    Checkpoint.load_objects(
        to_load={k: run[k] for k in ("trainer", "model", "optimizer", "speedups")}, checkpoint=saved
    )
    sp = run["speedups"]
    assert (sp.progress.total_batches, sp.progress.batch_in_epoch, sp.global_step) == (7, 7, 3)
    run["trainer"].run(run["data"])
    assert (run["trainer"].state.iteration, sp.global_step, sp.stop_reason) == (30, 15, StopReason.MAX_EPOCHS)
    assert all(torch.equal(v, expected[k]) for k, v in run["model"].state_dict().items())
