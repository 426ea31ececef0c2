"""Precision on CUDA: a real fp16 GradScaler, bf16 autocast and true half precision (skipped without CUDA)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from ignite.engine import Events

from ignite_speed.step.precision import Precision
from ignite_speed.step.trainer import create_trainer, precision_of

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(16, 64), torch.nn.Linear(64, 1)
        self.activation_dtype: torch.dtype | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc1(x))
        self.activation_dtype = h.dtype
        return self.fc2(h)


def _data(n_batches: int = 16, batch: int = 32) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_batches * batch, 16, generator=g)
    y = x[:, :4].sum(1, keepdim=True) - x[:, 4:8].sum(1, keepdim=True)
    return [(x[i : i + batch], y[i : i + batch]) for i in range(0, len(x), batch)]


@pytest.mark.parametrize(
    "value, params, activations, scaled",
    [
        ("16-mixed", F32, F16, True),
        ("bf16-mixed", F32, BF16, False),
        ("16-true", F16, F16, False),
        ("bf16-true", BF16, BF16, False),
        ("32-true", F32, F32, False),
    ],
)
def test_cuda_precision_trains(value, params, activations, scaled):
    if "bf16" in value and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    torch.manual_seed(0)
    model = Net().cuda()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning is expected on CUDA
        trainer = create_trainer(
            model,
            optimizer,
            torch.nn.MSELoss(),
            {"precision": value},
            device="cuda",
            output_transform=lambda x, y, y_pred, loss: (loss.item(), y_pred.dtype),
        )
    prec = precision_of(trainer)
    assert prec.device_type == "cuda" and prec.effective_precision == value
    assert isinstance(prec.scaler, torch.amp.GradScaler) if scaled else prec.scaler is None
    losses: list[float] = []
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: losses.append(e.state.output[0]))
    trainer.run(_data(), max_epochs=8)
    assert trainer.state.output[1] == activations
    assert model.activation_dtype == activations
    assert {p.dtype for p in model.parameters()} == {params}
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.3 * losses[0], losses


def test_cuda_grad_scaler_skips_inf_and_round_trips(tmp_path):
    model = torch.nn.Linear(4, 1).cuda()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    prec = Precision("16-mixed", "gpu")
    assert isinstance(prec.scaler, torch.amp.GradScaler)
    taken = []
    for factor in (1.0, float("inf"), 1.0):
        with prec.autocast():
            out = model(torch.ones(2, 4, device="cuda"))
            assert out.dtype == F16
            # scaled down: with torch's initial loss scale 2**16 the bias gradient (2 * 0.5 * 2**16) would
            # overflow fp16 on the first step
            loss = out.float().mean() * factor * 0.01
        before = model.weight.detach().clone()
        prec.backward(loss, optimizer)
        prec.clip_gradients(optimizer, 1.0)
        taken.append(prec.step(optimizer))
        if not taken[-1]:
            assert torch.equal(before, model.weight)
        optimizer.zero_grad()
    assert taken == [True, False, True]
    assert prec.scaler.get_scale() == 2.0**15
    torch.save(prec.state_dict(), tmp_path / "p.pt")
    fresh = Precision("16-mixed", "gpu")
    fresh.load_state_dict(torch.load(tmp_path / "p.pt", weights_only=True))
    assert fresh.scaler.get_scale() == 2.0**15


def test_auto_accelerator_follows_the_model_device():
    model = torch.nn.Linear(4, 1)  # left on the CPU although a GPU exists
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.warns(UserWarning, match="not supported on CPU"):
        trainer = create_trainer(model, optimizer, torch.nn.MSELoss(), {"precision": "16-mixed"})
    assert precision_of(trainer).device_type == "cpu"
    assert (
        precision_of(create_trainer(model.cuda(), optimizer, torch.nn.MSELoss(), {"precision": "16-mixed"})).device_type
        == "cuda"
    )
