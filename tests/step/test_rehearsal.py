"""The rehearsal of ``create_trainer``'s step after a ``fast_dev_run`` (which times the step warm for the
projection) leaves no trace: the model's weights, gradients, buffers and modes, the optimizer's state, the loss
scale, the accumulation window and the random number generators are exactly those of the same run without
the rehearsal. A rehearsal that raises puts everything back too, and says the projection fell back."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest
import torch
from ignite.engine import Engine, Events, create_supervised_trainer
from torch.utils.data import DataLoader, TensorDataset

from ignite_speed import attach_speedups, create_trainer
from ignite_speed.loop.trainer_parts import TrainerParts
from ignite_speed.step import Precision, precision_of


class Flaky(torch.nn.Module):
    """Raises on its ``fail_at``-th forward (0: never)."""

    def __init__(self, fail_at: int = 0) -> None:
        super().__init__()
        self.fail_at, self.calls = fail_at, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("out of memory (a test's)")
        return x


def _run(cfg: dict[str, Any], rehearse: bool, fail_at: int = 0) -> dict[str, Any]:
    torch.manual_seed(0)
    random.seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Dropout(0.3), Flaky(fail_at), torch.nn.Linear(8, 1)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    scaled = cfg.get("precision") == "16-mixed"  # (a GradScaler on the CPU: its loss scale must be put back)
    precision = Precision("16-mixed", "cpu", scaler=True) if scaled else None
    trainer = create_trainer(model, optimizer, torch.nn.functional.mse_loss, cfg, precision=precision)
    trainer.add_event_handler(Events.COMPLETED, lambda _: model.eval())  # (the rehearsal's step sets train mode)
    parts = TrainerParts.find(trainer)
    assert parts is not None and parts.rehearsal is not None
    if not rehearse:
        parts.rehearsal = None
    speedups = attach_speedups(trainer, None, cfg)
    g = torch.Generator().manual_seed(1)
    data = TensorDataset(torch.randn(24, 4, generator=g), torch.randn(24, 1, generator=g))
    trainer.run(DataLoader(data, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(2)))
    window = parts.accumulation
    return {
        "tensors": model.state_dict(),
        "grads": [p.grad for p in model.parameters()],
        "modes": [m.training for m in model.modules()],
        "optimizer": optimizer.state_dict()["state"],
        "precision": precision_of(trainer).state_dict(),
        "window": (window.pending, window.batch_in_epoch),
        "draws": (torch.rand(3), random.random()),
        "projection": speedups.report().projection,
    }


def _assert_equal(a: Any, b: Any) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_equal(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_equal(x, y)
    else:
        assert a == b


@pytest.mark.parametrize(
    "cfg",
    [
        {"fast_dev_run": True},
        {"fast_dev_run": 3, "accumulate_grad_batches": 2},  # (the rehearsal's calls count in the window)
        {"fast_dev_run": 2, "precision": "bf16-mixed", "gradient_clip_val": 0.5},
        {"fast_dev_run": 2, "precision": "16-mixed"},
    ],
    ids=["one batch", "accumulation", "bf16 clipped", "16-mixed scaled"],
)
def test_the_rehearsal_leaves_no_trace(cfg):
    rehearsed, plain = _run(cfg, rehearse=True), _run(cfg, rehearse=False)
    assert rehearsed["projection"].rehearsed_calls > 0 and plain["projection"].rehearsed_calls == 0
    for key in ("tensors", "grads", "modes", "optimizer", "precision", "window", "draws"):
        _assert_equal(rehearsed[key], plain[key])
    assert rehearsed["modes"] == [False] * 6
    if "scaler" in plain["precision"]:
        assert plain["precision"]["scaler"]["scale"] != 65536.0  # (the run's steps changed it: not the initial one)


def test_a_rehearsal_that_raises_puts_everything_back_and_says_so():
    """The model raises on the rehearsal's second call (the run's one batch was the first forward): the
    projection counts the run's own batch and says it is an upper bound; the state is the run's."""
    cfg = {"fast_dev_run": True}
    with pytest.warns(UserWarning, match="the rehearsal of the step that times it warm raised RuntimeError: out of"):
        failed = _run(cfg, rehearse=True, fail_at=3)
    plain = _run(cfg, rehearse=False)
    assert failed["projection"].rehearsed_calls == 0 and "an upper bound" in str(failed["projection"])
    for key in ("tensors", "grads", "modes", "optimizer", "precision", "window", "draws"):
        _assert_equal(failed[key], plain[key])


def test_the_validation_rehearsal_leaves_the_model_as_the_run_did():
    """An evaluator step that leaves the model in train mode (BatchNorm statistics updated, dropout drawn):
    after the rehearsal of it the model's tensors, modes and the generators are those at the run's end."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Dropout(0.3))
    trainer = create_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), lambda y_pred, y: y_pred.sum())
    evaluator = Engine(lambda engine, batch: model(batch[0]))
    at_end: dict[str, Any] = {}

    def snapshot(_: Engine) -> None:
        at_end.update(
            tensors={k: v.clone() for k, v in model.state_dict().items()},
            modes=[m.training for m in model.modules()],
            rng=torch.get_rng_state(),
        )

    trainer.add_event_handler(Events.COMPLETED, snapshot)
    data = TensorDataset(torch.randn(8, 4), torch.randn(8, 1))
    speedups = attach_speedups(trainer, evaluator, {"fast_dev_run": True}, val_data=DataLoader(data, batch_size=4))
    trainer.run(DataLoader(data, batch_size=4))
    assert speedups.projection.rehearsed_val_calls > 0
    _assert_equal(model.state_dict(), at_end["tensors"])
    assert [m.training for m in model.modules()] == at_end["modes"]
    assert torch.equal(torch.get_rng_state(), at_end["rng"])


def test_a_step_on_a_lazy_device_is_not_timed_call_by_call():
    """On a device whose calls only record work (XLA; here the meta device, the one such device a CPU has),
    a call's time is not the step's: the rehearsal refuses before calling, and the projection keeps the
    run's batches (with the warning the rehearsal's refusal gives)."""
    from ignite_speed.step.rehearsal import _device_wait

    with pytest.raises(RuntimeError, match=r"a rehearsal cannot time a step on \['meta'\] call by call"):
        _device_wait(torch.nn.Linear(1, 1, device="meta"))
    _device_wait(torch.nn.Linear(1, 1))()  # (the CPU: nothing to wait for)


@pytest.mark.parametrize("accumulate", [1, 3])
def test_ignites_supervised_step_is_rehearsed_and_leaves_no_trace(accumulate):
    """Ignite's ``create_supervised_trainer`` step (an Ignite example's): rehearsed with the model and the
    optimizer of its closure, then the weights, gradients, buffers, modes, the optimizer state and the
    generators are those at the run's end."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Dropout(0.3))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    trainer = create_supervised_trainer(
        model, optimizer, lambda y_pred, y: y_pred.sum(), gradient_accumulation_steps=accumulate
    )
    at_end: dict[str, Any] = {}

    def snapshot(_: Engine) -> None:
        at_end.update(
            tensors={k: v.clone() for k, v in model.state_dict().items()},
            grads=[None if p.grad is None else p.grad.clone() for p in model.parameters()],
            modes=[m.training for m in model.modules()],
            optimizer=copy.deepcopy(optimizer.state_dict()["state"]),
            rng=torch.get_rng_state(),
        )

    trainer.add_event_handler(Events.COMPLETED, snapshot)
    data = TensorDataset(torch.randn(16, 4), torch.randn(16, 1))
    speedups = attach_speedups(trainer, None, {"fast_dev_run": 2})
    trainer.run(DataLoader(data, batch_size=4))
    assert speedups.projection.rehearsed_calls > 0
    _assert_equal(model.state_dict(), at_end["tensors"])
    _assert_equal([p.grad for p in model.parameters()], at_end["grads"])
    _assert_equal(optimizer.state_dict()["state"], at_end["optimizer"])
    assert [m.training for m in model.modules()] == at_end["modes"]
    assert torch.equal(torch.get_rng_state(), at_end["rng"])
