"""One home per shared rule: accelerator ``"auto"``, the strategy table, unwrapping a model, did-you-mean and the
number checks. Each test shows that the places which used to apply their own copy of a rule now agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ignite_speed import Precision
from ignite_speed.config import SpeedConfig
from ignite_speed.config.checks import check_int, check_number, closest, did_you_mean, is_int, is_number
from ignite_speed.config.devices import (
    DEVICE_TYPES,
    PROCESS_GROUP_STRATEGIES,
    STRATEGIES,
    STRATEGY_FAMILIES,
    Accelerators,
    available_accelerators,
    resolve_accelerator,
)
from ignite_speed.distributed import current_strategy, plan_launch, prepare, unwrap_model
from ignite_speed.step.precision_plan import device_type_of


# ---------------------------------------------------------------- accelerator "auto"
@pytest.mark.parametrize(
    "machine, expected",
    [
        (Accelerators(), "cpu"),
        (Accelerators(cuda=2), "gpu"),
        (Accelerators(mps=True), "mps"),
        (Accelerators(tpu=True), "tpu"),
        (Accelerators(cuda=1, mps=True), "mps"),  # Lightning 2.6 asks MPS before CUDA
        (Accelerators(cuda=8, tpu=True), "tpu"),
    ],
)
def test_auto_accelerator_is_one_answer_for_the_plan_and_for_precision(machine, expected) -> None:
    """Before, "auto" was CUDA-else-CPU in the launch plan (MPS and TPU machines got CPU) and CUDA-MPS-CPU in
    Precision (a TPU machine autocast on CPU); now both ask resolve_accelerator, Lightning's order."""
    assert resolve_accelerator("auto", machine) == expected
    planned = plan_launch(SpeedConfig(), env={}, accelerators=machine).accelerator
    assert planned == expected
    assert device_type_of("auto", None, machine) == DEVICE_TYPES[planned]


def test_auto_accelerator_on_this_machine_agrees_in_prepare_and_precision() -> None:
    machine = available_accelerators()
    accelerator = resolve_accelerator("auto", machine)
    model, optimizer = nn.Linear(2, 1), None
    model, _ = prepare(model, lambda params: torch.optim.SGD(params, lr=0.1), {"accelerator": "auto"})
    assert next(model.parameters()).device.type == DEVICE_TYPES[accelerator]
    assert Precision("32-true", "auto").device_type == DEVICE_TYPES[accelerator]
    assert plan_launch({"accelerator": "auto"}, env={}).accelerator == accelerator
    assert current_strategy({"accelerator": "auto"}) == "single_device"
    del optimizer


def test_an_absent_accelerator_is_refused_with_one_message_by_the_plan_and_by_precision() -> None:
    lacking = Accelerators()
    with pytest.raises(ValueError) as planned:
        plan_launch({"accelerator": "gpu"}, env={}, accelerators=lacking)
    with pytest.raises(ValueError) as by_precision:
        from ignite_speed.step.precision_plan import check_device_available

        check_device_available("cuda", lacking)
    assert str(planned.value) == str(by_precision.value)
    assert "accelerator='gpu' but CUDA is not available" in str(planned.value)
    with pytest.raises(ValueError, match="accelerator='mps' but MPS is not available"):
        plan_launch({"accelerator": "mps"}, env={}, accelerators=lacking)
    with pytest.raises(ValueError, match="accelerator='mps' but MPS is not available"):
        check_device_available("mps", lacking)
    # the machine that has them
    assert plan_launch({"accelerator": "mps"}, env={}, accelerators=Accelerators(mps=True)).strategy == "single_device"


# ---------------------------------------------------------------- the strategy table
def test_every_strategy_the_validator_accepts_is_planned_and_the_plan_knows_no_other() -> None:
    assert STRATEGIES == tuple(name for family in STRATEGY_FAMILIES.values() for name in family)
    gpu = Accelerators(cuda=2)
    for name in STRATEGIES:
        family = next(key for key, names in STRATEGY_FAMILIES.items() if name in names)
        if family == "xla":
            planned = plan_launch({"accelerator": "tpu", "strategy": name, "devices": 1}, env={}, accelerators=gpu)
            assert planned.strategy in ("xla", "single_xla")
            continue
        devices = 1 if name == "single_device" else 2
        planned = plan_launch({"accelerator": "gpu", "strategy": name, "devices": devices}, env={}, accelerators=gpu)
        assert planned.strategy == {"ddp": "ddp", "auto": "ddp"}.get(family, name)
        assert (planned.backend is not None) == (name in PROCESS_GROUP_STRATEGIES or name == "auto")


def test_a_strategy_rule_gives_the_same_error_at_parsing_and_after_auto_is_resolved() -> None:
    """fsdp_cpu_offload on CPU and an XLA strategy off a TPU: refused by SpeedConfig for an explicit accelerator,
    and by the plan (before: with its own words) when "auto" resolves to the CPU."""
    for strategy in ("fsdp_cpu_offload", "single_tpu"):
        with pytest.raises(ValueError) as parsed:
            SpeedConfig(accelerator="cpu", strategy=strategy)
        with pytest.raises(ValueError) as planned:
            plan_launch({"accelerator": "auto", "strategy": strategy}, env={}, accelerators=Accelerators())
        assert str(parsed.value) == str(planned.value)
    with pytest.raises(TypeError) as parsed:
        SpeedConfig(accelerator="cpu", devices=[0, 1])
    with pytest.raises(TypeError) as planned:
        plan_launch({"devices": [0, 1]}, env={}, accelerators=Accelerators())
    assert str(parsed.value) == str(planned.value)


# ---------------------------------------------------------------- unwrapping a model
class _OwnWrapper(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.module = inner


class _NetWithAModuleAttribute(nn.Module):
    """A user's model that names a sub-module ``module`` and keeps other state: not a wrapper."""

    def __init__(self) -> None:
        super().__init__()
        self.module = nn.Linear(2, 2)
        self.head = nn.Linear(2, 1)
        self.register_buffer("steps", torch.zeros(()))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.compile imports torch.jit
def test_unwrap_model_reaches_the_users_module_through_every_wrapper() -> None:
    inner = nn.Linear(2, 1)
    assert unwrap_model(inner) is inner
    assert unwrap_model(nn.DataParallel(inner)) is inner
    assert unwrap_model(torch.compile(inner)) is inner  # the early-stopping copy did not know OptimizedModule
    assert unwrap_model(nn.DataParallel(torch.compile(_OwnWrapper(inner)))) is inner

    class DeepSpeedEngine(nn.Module):  # recognised by class name, as deepspeed's
        def __init__(self) -> None:
            super().__init__()
            self.module = inner
            self.extra = nn.Linear(1, 1)  # an engine's own state does not stop the unwrapping

    assert unwrap_model(DeepSpeedEngine()) is inner


def test_unwrap_model_keeps_a_model_whose_state_is_not_all_in_its_module_attribute() -> None:
    """Before, any ``.module`` was followed: a checkpoint of this model lost ``head`` and ``steps``."""
    from ignite_speed.distributed import ModelState

    net = _NetWithAModuleAttribute()
    assert unwrap_model(net) is net
    assert set(ModelState(net).state_dict()) == set(net.state_dict())
    assert unwrap_model(nn.DataParallel(net)) is net


# ---------------------------------------------------------------- did-you-mean and number checks
def test_did_you_mean_has_one_rule() -> None:
    from ignite_speed.demo import _unknown_option_message, build_parser

    assert closest("max_epoch", ["max_epochs", "min_epochs"]) == "max_epochs"
    assert did_you_mean("max_epoch", ["max_epochs"]) == "; did you mean 'max_epochs'?"
    assert closest("zzz", ["max_epochs"]) is None and did_you_mean("zzz", ["max_epochs"]) == ""
    # the demo's command line asks the same function (its own difflib call before)
    message = _unknown_option_message("unrecognized arguments: --max_epoch 3", build_parser())
    assert "--max_epoch: did you mean --max_epochs?" in message


def test_number_checks_have_one_rule() -> None:
    assert [is_int(v) for v in (3, np.int64(3), True, 3.0)] == [True, True, False, False]
    assert [is_number(v) for v in (3, 2.5, np.float32(1), np.int64(2), False, "1")] == [True] * 4 + [False] * 2
    assert check_int(np.int64(4), "max_epochs", minimum=0) == 4 and type(check_int(np.int64(4), "x")) is int
    assert check_number(np.float64(0.5), "gradient_clip_val", minimum=0) == 0.5
    with pytest.raises(TypeError, match="gradient_clip_val=True has type bool"):
        check_number(True, "gradient_clip_val")
    with pytest.raises(ValueError, match=r"gradient_clip_val=inf is out of range"):
        check_number(float("inf"), "gradient_clip_val")
    # the step's clipping and the checkpoint helper use them
    prec = Precision("32-true", "cpu")
    model = nn.Linear(1, 1)
    with pytest.raises(TypeError, match="gradient_clip_val='1' has type str; accepted: None or a finite number"):
        prec.clip_gradients(torch.optim.SGD(model.parameters(), lr=0.1), "1")  # type: ignore[arg-type]


def test_numpy_numbers_mean_the_same_to_every_flag() -> None:
    """Before: early stopping's patience took np.int64 (numbers.Integral) while max_epochs, limit_train_batches
    and max_time refused it ("has type int64"): each file had its own idea of a number."""
    cfg = SpeedConfig(
        max_epochs=np.int64(2),
        limit_train_batches=np.int64(3),
        limit_val_batches=np.float64(0.5),
        max_time=np.int64(90),
        early_stopping={"monitor": "val_loss", "patience": np.int64(4)},
    )
    assert cfg.max_epochs == 2 and cfg.effective().max_epochs == 2
    assert (cfg.limit_train_batches.kind, cfg.limit_train_batches.value) == ("count", 3)
    assert (cfg.limit_val_batches.kind, cfg.limit_val_batches.value) == ("fraction", 0.5)
    assert cfg.max_time.total_seconds() == 90
    assert cfg.early_stopping["patience"] == 4
    with pytest.raises(TypeError, match="max_epochs=True has type bool"):
        SpeedConfig(max_epochs=True)


@pytest.mark.parametrize("bad", ["1", float("nan"), -0.5, True])
def test_gradient_clip_val_is_refused_alike_by_the_config_and_by_precision(bad) -> None:
    """Before: SpeedConfig raised TypeError for a non-number and Precision.clip_gradients ValueError for all."""
    with pytest.raises((TypeError, ValueError)) as by_config:
        SpeedConfig(gradient_clip_val=bad)
    model = nn.Linear(1, 1)
    with pytest.raises((TypeError, ValueError)) as by_step:
        Precision("32-true", "cpu").clip_gradients(torch.optim.SGD(model.parameters(), lr=0.1), bad)
    assert (type(by_config.value), str(by_config.value)) == (type(by_step.value), str(by_step.value))
