"""The small parts of the training step on their own: precision resolution, batch casting, accumulation
windows, the user's functions, the plain step and the DeepSpeed config check."""

from __future__ import annotations

import collections
import contextlib

import pytest
import torch
from ignite.engine import Engine

from ignite_speed.config import SpeedConfig
from ignite_speed.step.accumulation import AccumulationWindow, WindowReduction
from ignite_speed.step.casting import cast_floating
from ignite_speed.step.deepspeed_step import check_deepspeed_agrees, is_deepspeed_engine
from ignite_speed.step.nvidia_apex import load_apex_amp
from ignite_speed.step.precision import Precision
from ignite_speed.step.precision_plan import (
    PrecisionPlan,
    check_plan_supported,
    check_scaler_argument,
    device_type_of,
    resolve_plan,
)
from ignite_speed.step.supervised_functions import SupervisedFunctions
from ignite_speed.step.supervised_step import build_supervised_step


# ---------------------------------------------------------------- precision_plan
def test_resolve_plan_maps_each_value_to_its_dtypes():
    assert resolve_plan("bf16-true", "cpu", None) == PrecisionPlan("bf16-true", None, torch.bfloat16, False)
    assert resolve_plan("bf16-mixed", "cuda", None) == PrecisionPlan("bf16-mixed", torch.bfloat16, None, False)
    assert resolve_plan("16-mixed", "cuda", None).use_scaler
    assert not resolve_plan("16-mixed", "cuda", False).use_scaler
    assert resolve_plan("16-mixed", "cpu", True) == PrecisionPlan("16-mixed", torch.float16, None, True)
    assert resolve_plan("16-mixed", "xla", None).effective == "bf16-mixed"


def test_device_type_of_a_device_and_of_an_accelerator():
    assert device_type_of("cpu", None) == "cpu"
    assert device_type_of("tpu", None) == "xla"
    assert device_type_of("auto", "cpu") == "cpu"
    with pytest.raises(ValueError, match=r"device='cpu' does not match accelerator='gpu'"):
        device_type_of("gpu", "cpu")
    with pytest.raises(ValueError, match=r"device='nowhere' is not a torch device"):
        device_type_of("auto", "nowhere")


def test_check_scaler_argument_accepts_none_bools_and_grad_scalers_only():
    for scaler in (None, True, False, torch.amp.GradScaler("cpu")):
        check_scaler_argument(scaler)
    with pytest.raises(TypeError, match=r"scaler='yes' has type str"):
        check_scaler_argument("yes")


def test_check_plan_supported_needs_torch_xla_for_xla(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ImportError, match=r"accelerator='tpu'/'xla' needs torch_xla"):
        check_plan_supported(resolve_plan("bf16-mixed", "xla", None), "bf16-mixed", "xla")
    check_plan_supported(resolve_plan("bf16-mixed", "cpu", None), "bf16-mixed", "cpu")


def test_apex_refuses_a_scaler_before_looking_for_apex():
    with pytest.raises(ValueError, match=r"scaler= cannot be combined with amp_backend='apex'"):
        load_apex_amp("cuda", True)


# ---------------------------------------------------------------- casting
def test_cast_floating_casts_floating_tensors_in_nested_containers_only():
    Pair = collections.namedtuple("Pair", "x y")
    batch = {"a": [torch.zeros(1), torch.zeros(1, dtype=torch.long)], "b": Pair(torch.zeros(1), "text")}
    cast = cast_floating(batch, torch.float64)
    assert cast["a"][0].dtype == torch.float64 and cast["a"][1].dtype == torch.long
    assert isinstance(cast["b"], Pair) and cast["b"].x.dtype == torch.float64 and cast["b"].y == "text"


# ---------------------------------------------------------------- accumulation
def test_accumulation_window_steps_every_kth_batch_and_the_last():
    window = AccumulationWindow(3)
    assert [window.next_batch(7) for _ in range(7)] == [False, False, True, False, False, True, True]
    window.resume(2)
    assert window.next_batch(None) and not window.pending


def test_window_reduction_of_a_plain_model_never_skips():
    model = torch.nn.Linear(1, 1)
    reduction = WindowReduction(model, 4)
    assert reduction.no_sync is None and reduction.reduce_later is None
    assert isinstance(reduction.during_batch(False, 10), contextlib.nullcontext)
    reduction.reduce_skipped()  # nothing to reduce


# ---------------------------------------------------------------- the user's functions and the plain step
def _functions(calls: list[str]) -> SupervisedFunctions:
    def loss_fn(y_pred, y):
        calls.append("loss_fn")
        return torch.nn.functional.mse_loss(y_pred, y)

    def model_fn(model, x):
        calls.append("model_fn")
        return model(x)

    def model_transform(output):
        calls.append("model_transform")
        return output

    return SupervisedFunctions(
        loss_fn,
        lambda batch, device, non_blocking: batch,
        model_fn,
        model_transform,
        lambda x, y, y_pred, loss: loss.item(),
        None,
        False,
    )


def test_supervised_functions_call_the_model_its_transform_then_the_loss():
    calls: list[str] = []
    functions = _functions(calls)
    output, y_pred, loss = functions.forward(torch.nn.Linear(1, 1), torch.ones(2, 1), torch.zeros(2, 1))
    assert calls == ["model_fn", "model_transform", "loss_fn"] and y_pred is output and loss.ndim == 0
    assert functions.on_device("cpu").device == "cpu" and functions.device is None


def test_supervised_step_steps_the_optimizer_at_the_end_of_each_window():
    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    steps = []
    optimizer.register_step_post_hook(lambda *_: steps.append(True))
    window = AccumulationWindow(2)
    update, close_window = build_supervised_step(
        model, optimizer, Precision("32-true", "cpu"), _functions([]), window, clip_val=None, clip_algorithm="norm"
    )
    trainer = Engine(update)
    window.attach(trainer, close_window)
    trainer.run([(torch.ones(2, 1), torch.zeros(2, 1))] * 5, max_epochs=1)
    assert len(steps) == 3 and not window.pending  # after batches 2, 4 and 5 (the epoch's last)


# ---------------------------------------------------------------- DeepSpeed config check
class DeepSpeedEngine:  # recognised by class name, as deepspeed's is
    def __init__(self, accumulation: int = 1, clipping: float = 0.0, fp16: bool = False) -> None:
        self.accumulation, self.clipping, self.fp16 = accumulation, clipping, fp16

    def gradient_accumulation_steps(self) -> int:
        return self.accumulation

    def gradient_clipping(self) -> float:
        return self.clipping

    def fp16_enabled(self) -> bool:
        return self.fp16

    def bfloat16_enabled(self) -> bool:
        return False


def test_check_deepspeed_agrees_returns_the_engines_accumulation_or_names_the_disagreement():
    assert is_deepspeed_engine(DeepSpeedEngine()) and not is_deepspeed_engine(torch.nn.Linear(1, 1))
    assert check_deepspeed_agrees(DeepSpeedEngine(accumulation=2), SpeedConfig(accumulate_grad_batches=2)) == 2
    with pytest.raises(
        ValueError,
        match=r"accumulate_grad_batches=1 but the DeepSpeed engine accumulates "
        r"gradient_accumulation_steps=4",
    ):
        check_deepspeed_agrees(DeepSpeedEngine(accumulation=4), SpeedConfig())
    with pytest.raises(
        ValueError,
        match=r"gradient_clip_val=1.0 but the DeepSpeed engine clips at "
        r"gradient_clipping=0.0",
    ):
        check_deepspeed_agrees(DeepSpeedEngine(), SpeedConfig(gradient_clip_val=1.0))
    with pytest.raises(ValueError, match=r"precision='bf16-mixed' but the DeepSpeed engine trains in fp16"):
        check_deepspeed_agrees(DeepSpeedEngine(fp16=True), SpeedConfig(precision="bf16-mixed"))


def test_a_deepspeed_trainers_precision_applies_to_an_evaluator_as_its_training_step_casts():
    """DeepSpeed's fp16 model gets fp16 inputs in validation too (Lightning's DeepSpeedPrecision.convert_input);
    no autocast, and the output is left in fp16 (the model computes in it)."""
    from ignite.engine import Engine

    from ignite_speed.step import evaluate_with_precision
    from ignite_speed.step.deepspeed_step import DeepSpeedPrecision

    precision = DeepSpeedPrecision(DeepSpeedEngine(fp16=True))
    assert precision.effective_precision == "16-mixed" and precision.dtype is torch.float16
    seen = []

    def step(engine, batch):
        seen.append((batch[0].dtype, batch[1].dtype, torch.is_autocast_enabled("cpu")))
        return batch[0]

    evaluator = Engine(step)
    with evaluate_with_precision(evaluator, precision):
        evaluator.run([(torch.ones(2, 3), torch.zeros(2, dtype=torch.long))])
    assert seen == [(torch.float16, torch.int64, False)] and evaluator.state.output.dtype is torch.float16
    assert DeepSpeedPrecision(DeepSpeedEngine()).convert_input(torch.ones(1)).dtype is torch.float32
