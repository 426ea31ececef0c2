"""torch_xla on PJRT_DEVICE=CPU (skipped without torch_xla; run with ``tox -e xla``): the precision adapter
and the loop controls on an XLA device, single process."""

from __future__ import annotations

import importlib.util

import pytest
import torch

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torch_xla") is None, reason="needs torch_xla (tox -e xla)")


@pytest.mark.parametrize("precision,param_dtype", [("bf16-mixed", torch.float32), ("bf16-true", torch.bfloat16)])
def test_create_trainer_trains_on_xla_with_limits(precision, param_dtype):
    import torch_xla.core.xla_model as xm
    from ignite.engine import Events

    from ignite_speed import StopReason, attach_speedups, create_trainer

    device = xm.xla_device()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    cfg = {"accelerator": "tpu", "precision": precision, "max_epochs": 3, "limit_train_batches": 4}
    trainer = create_trainer(model, optimizer, torch.nn.functional.mse_loss, cfg, device=device)
    losses: list[float] = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(float(e.state.output)))
    sp = attach_speedups(trainer, None, cfg)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(80, 4, generator=g)
    data = [(x[i : i + 8], x[i : i + 8].sum(1, keepdim=True)) for i in range(0, 80, 8)]
    trainer.run(data)
    assert len(losses) == 12 and sp.global_step == 12 and sp.stop_reason is StopReason.MAX_EPOCHS
    assert next(model.parameters()).dtype == param_dtype
    assert losses[-1] < losses[0]
