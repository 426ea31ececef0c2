"""The loop controls never make the host wait for the GPU (skipped without CUDA).

Every loop flag is on (limits, ``max_time``, ``min_*``, validation every half epoch, early stopping, the
non-finite-loss guard) and the training step keeps its loss on the device; the whole run goes under
``torch.cuda.set_sync_debug_mode("error")``, which raises on any synchronizing call. The evaluator logs a
host number, as an app that computes its metrics on the host would.
"""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine, Events

from ignite_speed import StopReason, attach_speedups

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

FLAGS = dict(
    max_epochs=3,
    min_epochs=1,
    max_steps=10_000,
    min_steps=1,
    max_time="00:01:00:00",
    limit_train_batches=1.0,
    limit_val_batches=4,
    val_check_interval=0.5,
    num_sanity_val_steps=0,
    terminate_on_nan=True,
    early_stopping={"monitor": "val_loss", "patience": 1000, "stopping_threshold": -1.0, "divergence_threshold": 1e9},
)


def _engines(poison_at: int | None = None) -> tuple[Engine, Engine]:
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 1).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    batches = [(torch.randn(16, 8, device=device), torch.randn(16, 1, device=device)) for _ in range(40)]

    def step(engine: Engine, batch: int) -> torch.Tensor:
        x, y = batches[batch % len(batches)]
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        if engine.state.iteration == poison_at:
            loss = loss * float("nan")
        return loss.detach()  # stays on the device: no .item()

    evaluator = Engine(lambda e, b: None)
    evaluator.add_event_handler(Events.COMPLETED, lambda e: e.state.metrics.__setitem__("val_loss", 1.0))
    return Engine(step), evaluator


def _run_without_host_sync(trainer: Engine) -> None:
    """200 batches per epoch under torch.cuda.set_sync_debug_mode("error"): any synchronizing call raises."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        trainer.run(list(range(200)))
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_every_flag_on_without_a_host_sync():
    trainer, evaluator = _engines()
    speedups = attach_speedups(trainer, evaluator, FLAGS, val_data=list(range(8)))
    _run_without_host_sync(trainer)
    assert (speedups.stop_reason, speedups.progress.total_batches, speedups.progress.val_runs) == (
        StopReason.MAX_EPOCHS,
        600,
        6,
    )


def test_a_nan_loss_on_the_device_stops_a_few_batches_later_without_a_host_sync():
    trainer, evaluator = _engines(poison_at=50)
    speedups = attach_speedups(trainer, evaluator, FLAGS, val_data=list(range(8)))
    speedups.loop.sync_every_n_batches = 4
    _run_without_host_sync(trainer)
    assert speedups.stop_reason is StopReason.NON_FINITE_LOSS
    # agreements every 4 batches (1, 5, ..., 49, 53, 57): flagged on the device at 50, copied to the host at
    # 53, read there at 57 (or at 61 if the copy had not arrived)
    assert trainer.state.iteration in (57, 61), trainer.state.iteration
    assert speedups.stop_message.startswith("training loss is not finite (nan or inf) in iterations 50..53")
