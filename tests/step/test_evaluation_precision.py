"""The precision flag covers validation, test and predict (issue 26, item 1): an evaluator's step runs with the
batch cast for ``*-true`` and under autocast for ``*-mixed``, whether ``attach_speedups`` drives it or the app
calls ``evaluate_with_precision`` / ``Precision.apply_to_evaluator`` itself."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from ignite.engine import Engine, Events, create_supervised_evaluator
from ignite.metrics import Accuracy, Loss

from ignite_speed import Precision, attach_speedups, create_trainer
from ignite_speed._compat import process_function
from ignite_speed.step import EvaluatorPrecision, evaluate_with_precision

DTYPES = {"bf16-true": torch.bfloat16, "16-true": torch.float16, "64-true": torch.float64}


def _data(n: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(n * 8, 6, generator=generator)
    y = (x[:, 0] > 0).long()
    return [(x[i : i + 8], y[i : i + 8]) for i in range(0, n * 8, 8)]


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


def _recording_step(model: torch.nn.Module, seen: list[tuple[torch.dtype, bool]]):
    """A hand-written evaluator step that records the input dtype and whether autocast is on."""

    def step(engine: Engine, batch):
        model.eval()
        with torch.no_grad():
            x, y = batch
            seen.append((x.dtype, torch.is_autocast_enabled("cpu")))
            return model(x), y

    return step


@pytest.mark.parametrize("precision", ["bf16-true", "16-true", "64-true"])
def test_every_true_precision_validates_with_create_supervised_evaluator(precision: str) -> None:
    """Before: the sanity check raised "mat1 and mat2 must have the same dtype" (fp32 batch, cast model)."""
    model = _model()
    cfg = {"precision": precision, "accelerator": "cpu", "max_epochs": 2, "num_sanity_val_steps": 2}
    trainer = create_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), F.cross_entropy, cfg)
    evaluator = create_supervised_evaluator(model, metrics={"acc": Accuracy(), "loss": Loss(F.cross_entropy)})
    dtypes: list[torch.dtype] = []
    evaluator.add_event_handler(Events.ITERATION_COMPLETED, lambda e: dtypes.append(e.state.output[0].dtype))
    speedups = attach_speedups(trainer, evaluator, cfg, val_data=_data())
    trainer.run(_data())
    # 2 full validations (the sanity check's 2 batches ran the same step first, on an engine without handlers)
    assert dtypes == [DTYPES[precision]] * (2 * 4)
    assert 0.0 <= evaluator.state.metrics["acc"] <= 1.0 and evaluator.state.metrics["loss"] > 0
    assert speedups.stop_reason is not None


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_mixed_precision_validates_under_autocast_and_gives_metrics_fp32(precision: str) -> None:
    model = _model()
    cfg = {"precision": precision, "accelerator": "cpu", "max_epochs": 1}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 16-mixed on CPU becomes bf16-mixed, loudly
        trainer = create_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), F.cross_entropy, cfg)
    seen: list[tuple[torch.dtype, bool]] = []
    evaluator = Engine(_recording_step(model, seen))
    outputs: list[torch.dtype] = []
    evaluator.add_event_handler(Events.ITERATION_COMPLETED, lambda e: outputs.append(e.state.output[0].dtype))
    attach_speedups(trainer, evaluator, cfg, val_data=_data(2))
    trainer.run(_data())
    assert seen == [(torch.float32, True)] * 4  # sanity check (2) + one validation (2): inputs as given, autocast
    assert outputs == [torch.float32] * 2  # what the metrics get (the model's bf16 logits, in fp32)


def test_apply_to_evaluator_on_a_hand_written_step_and_detach_undoes_it() -> None:
    prec = Precision("bf16-true", "cpu")
    model = prec.convert_module(_model())
    seen: list[tuple[torch.dtype, bool]] = []
    evaluator = Engine(_recording_step(model, seen))
    own_step = process_function(evaluator)
    handle = prec.apply_to_evaluator(evaluator)
    assert isinstance(handle, EvaluatorPrecision) and handle.attached
    evaluator.run(_data(2))
    assert seen == [(torch.bfloat16, False)] * 2
    handle.detach()
    assert process_function(evaluator) is own_step and not handle.attached
    handle.detach()  # twice is harmless
    with pytest.raises(RuntimeError, match="same dtype"):
        evaluator.run(_data(1))  # the app's own step again: an fp32 batch into a bf16 model


def test_evaluate_with_precision_as_a_context_and_from_the_trainer() -> None:
    model = _model()
    trainer = create_trainer(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        F.cross_entropy,
        {"precision": "64-true", "accelerator": "cpu"},
    )
    seen: list[tuple[torch.dtype, bool]] = []
    evaluator = Engine(_recording_step(model, seen))
    with evaluate_with_precision(evaluator, trainer):
        evaluator.run(_data(1))
    seen_after: list[tuple[torch.dtype, bool]] = []
    model.float()
    Engine(_recording_step(model, seen_after)).run(_data(1))
    assert seen == [(torch.float64, False)] and seen_after == [(torch.float32, False)]
    assert not hasattr(process_function(evaluator), "ignite_speed_precision")


def test_applying_twice_keeps_the_first_and_a_different_precision_is_refused() -> None:
    evaluator = Engine(lambda engine, batch: batch)
    first = evaluate_with_precision(evaluator, Precision("bf16-mixed", "cpu"))
    again = evaluate_with_precision(evaluator, Precision("bf16-mixed", "cpu"))
    assert again.precision is first.precision
    again.detach()  # a second handle leaves the first in place
    assert first.attached and process_function(evaluator).ignite_speed_precision is first
    with pytest.raises(
        ValueError,
        match=r"already runs under precision='bf16-mixed'; detach that first to apply "
        r"precision='bf16-true'",
    ):
        evaluate_with_precision(evaluator, Precision("bf16-true", "cpu"))
    first.detach()
    evaluate_with_precision(evaluator, Precision("bf16-true", "cpu"))


def test_bad_arguments_are_clear_errors() -> None:
    model = _model()
    trainer = create_trainer(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        F.cross_entropy,
        {"precision": "bf16-true", "accelerator": "cpu"},
    )
    with pytest.raises(ValueError, match="this engine is a trainer made by create_trainer"):
        evaluate_with_precision(trainer, Precision("bf16-true", "cpu"))
    with pytest.raises(ValueError, match="this trainer was not made by ignite_speed.create_trainer"):
        evaluate_with_precision(Engine(lambda e, b: b), Engine(lambda e, b: b))
    with pytest.raises(TypeError, match="precision has type str; accepted: an ignite_speed.Precision"):
        evaluate_with_precision(Engine(lambda e, b: b), "bf16-true")
    with pytest.raises(TypeError, match="evaluator has type int; accepted: an ignite Engine"):
        evaluate_with_precision(3, trainer)  # type: ignore[arg-type]


def test_speedups_test_and_predict_run_their_engine_under_the_precision_then_give_it_back() -> None:
    model = _model()
    cfg = {"precision": "bf16-true", "accelerator": "cpu", "max_epochs": 1}
    trainer = create_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), F.cross_entropy, cfg)
    speedups = attach_speedups(trainer, None, cfg)
    trainer.run(_data())
    seen: list[tuple[torch.dtype, bool]] = []
    tester = Engine(_recording_step(model, seen))
    own_step = process_function(tester)
    speedups.test(tester, _data(2))
    speedups.predict(tester, _data(1))
    assert seen == [(torch.bfloat16, False)] * 3
    assert process_function(tester) is own_step


def test_attach_speedups_leaves_the_evaluator_alone_under_32_true() -> None:
    model = _model()
    cfg = {"accelerator": "cpu", "max_epochs": 1}
    trainer = create_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), F.cross_entropy, cfg)
    evaluator = create_supervised_evaluator(model)
    own_step = process_function(evaluator)
    attach_speedups(trainer, evaluator, cfg, val_data=_data(1))
    assert process_function(evaluator) is own_step


def test_an_attach_refused_for_the_evaluators_precision_leaves_the_trainer_free_for_a_corrected_one() -> None:
    model = _model()
    cfg = {"precision": "bf16-true", "accelerator": "cpu", "max_epochs": 1, "num_sanity_val_steps": 0}
    trainer = create_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), F.cross_entropy, cfg)
    seen: list[tuple[torch.dtype, bool]] = []
    evaluator = Engine(_recording_step(model, seen))
    other = evaluate_with_precision(evaluator, Precision("bf16-mixed", "cpu"))
    with pytest.raises(ValueError, match=r"already runs under precision='bf16-mixed'; detach that first"):
        attach_speedups(trainer, evaluator, cfg, val_data=_data(2))
    other.detach()
    speedups = attach_speedups(trainer, evaluator, cfg, val_data=_data(2))  # before: "already has speedups"
    trainer.run(_data())
    assert (trainer.state.iteration, seen) == (4, [(torch.bfloat16, False)] * 2)
    assert speedups.stop_reason.name == "MAX_EPOCHS"
