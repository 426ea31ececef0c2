"""Precision adapter and precision-aware trainer on CPU (real torch and Ignite, no mocks)."""

from __future__ import annotations

import collections
import contextlib
import importlib.util
import math
import sys
import warnings

import pytest
import torch
import torch.distributed as dist
from ignite.engine import Events

from ignite_speed.config import SpeedConfig
from ignite_speed.step.precision import Precision, _resolve, nvidia_apex_available
from ignite_speed.step.trainer import create_trainer, precision_of

F32, F64, F16, BF16 = torch.float32, torch.float64, torch.float16, torch.bfloat16

# value -> (effective precision, param dtype, activation dtype, output dtype, warning pattern or None)
CASES = {
    "32-true": ("32-true", F32, F32, F32, None),
    "64-true": ("64-true", F64, F64, F64, None),
    "16-mixed": ("bf16-mixed", F32, BF16, BF16, "not supported on CPU"),
    "bf16-mixed": ("bf16-mixed", F32, BF16, BF16, None),
    "16-true": ("16-true", F16, F16, F16, None),
    "bf16-true": ("bf16-true", BF16, BF16, BF16, None),
    32: ("32-true", F32, F32, F32, None),
    "32": ("32-true", F32, F32, F32, None),
    64: ("64-true", F64, F64, F64, None),
    "64": ("64-true", F64, F64, F64, None),
    16: ("bf16-mixed", F32, BF16, BF16, "legacy spelling"),
    "16": ("bf16-mixed", F32, BF16, BF16, "legacy spelling"),
    "bf16": ("bf16-mixed", F32, BF16, BF16, "legacy spelling"),
}


class Probe(torch.nn.Module):
    """Linear -> ReLU -> Linear that records the dtype of its hidden activation and of a tensor it creates."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(4, 8), torch.nn.Linear(8, 1)
        self.seen: dict[str, torch.dtype] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc1(x))
        self.seen["activation"] = h.dtype
        self.seen["created"] = torch.zeros(1).dtype
        return self.fc2(h)


def _regression_data(n_batches: int = 8, batch: int = 8) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_batches * batch, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [1.5]])
    return [(x[i : i + batch], y[i : i + batch]) for i in range(0, len(x), batch)]


def _build(value, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prec = Precision(value, "cpu", **kwargs)
    return prec, [str(w.message) for w in caught]


def _fp16_scaled(init_scale: float = 1024.0) -> Precision:
    """fp16 autocast with torch's CPU GradScaler; a modest initial scale keeps the toy gradients finite in fp16
    (with the default 2**16 the first steps of these tests overflow and are skipped)."""
    return Precision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=init_scale))


# ---------------------------------------------------------------- dtypes per value
@pytest.mark.parametrize("value", list(CASES), ids=[repr(v) for v in CASES])
def test_dtypes_with_precision_object(value):
    effective, param_dtype, act_dtype, out_dtype, warn = CASES[value]
    prec, messages = _build(value)
    assert prec.effective_precision == effective
    assert prec.device_type == "cpu"
    assert prec.scaler is None
    if warn:
        assert any(warn in m for m in messages), messages
    else:
        assert messages == []
    model = prec.convert_module(Probe())
    x, y = prec.convert_input((torch.randn(2, 4), torch.tensor([0, 1])))
    assert y.dtype == torch.int64  # integer targets are never cast
    with prec.autocast():
        out = model(x)
    assert {p.dtype for p in model.parameters()} == {param_dtype}
    assert model.seen["activation"] == act_dtype
    assert out.dtype == out_dtype
    # *-true also switches the default dtype inside the forward, and restores it afterwards
    assert model.seen["created"] == (param_dtype if effective.endswith("-true") else F32)
    assert torch.get_default_dtype() == F32


@pytest.mark.parametrize("value", ["32-true", "64-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true"])
def test_trainer_dtypes_and_loss_decreases(value):
    torch.manual_seed(0)
    model = Probe()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = create_trainer(
            model,
            optimizer,
            torch.nn.MSELoss(),
            {"precision": value, "accelerator": "cpu"},
            output_transform=lambda x, y, y_pred, loss: (loss.item(), y_pred.dtype, x.dtype),
        )
    effective, param_dtype, act_dtype, out_dtype, _ = CASES[value]
    assert precision_of(trainer).effective_precision == effective
    epoch_losses: list[float] = []
    per_epoch: list[float] = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: per_epoch.append(e.state.output[0]))

    @trainer.on(Events.EPOCH_COMPLETED)
    def _(engine):
        epoch_losses.append(sum(per_epoch) / len(per_epoch))
        per_epoch.clear()

    trainer.run(_regression_data(), max_epochs=6)
    _, out_seen, x_seen = trainer.state.output
    assert out_seen == out_dtype
    assert x_seen == param_dtype
    assert model.seen["activation"] == act_dtype
    assert {p.dtype for p in model.parameters()} == {param_dtype}
    assert all(math.isfinite(v) for v in epoch_losses)
    assert epoch_losses[-1] < 0.2 * epoch_losses[0], epoch_losses


def test_forced_cpu_scaler_uses_fp16_autocast():
    prec, messages = _build("16-mixed", scaler=True)
    assert messages == []
    assert prec.effective_precision == "16-mixed"
    assert isinstance(prec.scaler, torch.amp.GradScaler)
    model = prec.convert_module(Probe())
    with prec.autocast():
        out = model(torch.randn(2, 4))
    assert model.seen["activation"] == F16 and out.dtype == F16
    assert {p.dtype for p in model.parameters()} == {F32}


def test_convert_input_nested_structures():
    prec, _ = _build("bf16-true")
    Pair = collections.namedtuple("Pair", "a b")
    batch = {"x": [torch.ones(2), torch.arange(3)], "p": Pair(torch.ones(1, dtype=F64), "text"), "n": 3}
    out = prec.convert_input(batch)
    assert out["x"][0].dtype == BF16 and out["x"][1].dtype == torch.int64
    assert isinstance(out["p"], Pair) and out["p"].a.dtype == BF16 and out["p"].b == "text"
    assert out["n"] == 3
    assert Precision("32-true", "cpu").convert_input(batch) is batch


def test_from_config_and_mapping():
    prec = Precision.from_config(SpeedConfig(precision="bf16-mixed", accelerator="cpu"))
    assert prec.effective_precision == "bf16-mixed" and prec.autocast_dtype == BF16
    assert Precision.from_config({"precision": "64-true", "accelerator": "cpu"}).param_dtype == F64
    assert Precision.from_config(None, device="cpu").effective_precision == "32-true"


# ---------------------------------------------------------------- GradScaler (Lightning case 74)
def _scaler_trainer(data, **cfg):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    # a modest initial scale, so that only the injected inf overflows (2**16 also overflows the first batches)
    prec = Precision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=1024.0))
    trainer = create_trainer(model, optimizer, torch.nn.MSELoss(), {"accelerator": "cpu", **cfg}, precision=prec)
    return model, optimizer, trainer


def test_scaler_skips_inf_step_and_halves_scale():
    data = _regression_data(n_batches=6)
    data[2] = (data[2][0], torch.full_like(data[2][1], float("inf")))  # inf loss at batch_idx 2
    model, optimizer, trainer = _scaler_trainer(data)
    steps = []
    optimizer.register_step_post_hook(lambda opt, args, kwargs: steps.append(1))
    weights, scales = [], []

    @trainer.on(Events.ITERATION_COMPLETED)
    def _(engine):
        weights.append(model.weight.detach().clone())
        scales.append(precision_of(trainer).scaler.get_scale())

    trainer.run(data, max_epochs=1)
    assert trainer.state.iteration == 6
    assert torch.equal(weights[2], weights[1])  # the inf step left the weights unchanged
    assert not torch.equal(weights[3], weights[2])  # and training continued
    assert scales == [1024.0, 1024.0, 512.0, 512.0, 512.0, 512.0]
    assert len(steps) == 5  # optimizer.step itself was skipped once; every batch still ended a step
    assert all(torch.isfinite(w).all() for w in weights)


def test_step_return_value_reports_skip():
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    prec = _fp16_scaled()
    taken = []
    for factor in (1.0, float("inf"), 1.0, float("nan")):
        with prec.autocast():
            loss = model(torch.ones(1, 2)).float().sum() * factor
        prec.backward(loss, optimizer)
        taken.append(prec.step(optimizer))
        optimizer.zero_grad()
    assert taken == [True, False, True, False]
    assert prec.scaler.get_scale() == 1024.0 / 4


def test_scaler_state_round_trip_weights_only(tmp_path):
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    prec = _fp16_scaled()
    for factor in (1.0, float("inf"), 1.0):
        with prec.autocast():
            loss = model(torch.ones(1, 2)).float().sum() * factor
        prec.backward(loss, optimizer)
        prec.step(optimizer)
        optimizer.zero_grad()
    path = tmp_path / "prec.pt"
    torch.save(prec.state_dict(), path)
    state = torch.load(path, weights_only=True)
    assert state["precision"] == "16-mixed"
    assert state["scaler"]["scale"] == 512.0 and state["scaler"]["_growth_tracker"] == 1

    fresh = _fp16_scaled()
    fresh.load_state_dict(state)
    assert fresh.scaler.get_scale() == 512.0
    assert fresh.state_dict() == state
    # the restored scale is also what decides "skipped" on the next step
    with fresh.autocast():
        loss = model(torch.ones(1, 2)).float().sum() * float("inf")
    fresh.backward(loss, optimizer)
    assert bool(fresh.step(optimizer)) is False and fresh.scaler.get_scale() == 256.0


def test_load_state_dict_mismatches():
    bf16 = Precision("bf16-mixed", "cpu")
    assert bf16.state_dict() == {"precision": "bf16-mixed"}
    scaled = _fp16_scaled().state_dict()
    with pytest.warns(UserWarning, match="uses no scaler; ignoring it"):
        bf16.load_state_dict(scaled)
    with pytest.raises(ValueError, match="unknown keys"):
        bf16.load_state_dict({"precision": "bf16-mixed", "extra": 1})
    with pytest.raises(ValueError, match="precision='fp8'"):
        bf16.load_state_dict({"precision": "fp8"})
    with pytest.raises(TypeError, match="expects a mapping"):
        bf16.load_state_dict([1, 2])


# ---------------------------------------------------------------- accumulation (exact numbers)
def _sum_trainer(k: int, clip_val=None, algorithm="norm", precision=None, in_features=1, lr=1.0 / 64):
    """Linear without bias, loss = sum(w * x): the gradient of a batch is exactly sum(x)."""
    model = torch.nn.Linear(in_features, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    cfg = {
        "accelerator": "cpu",
        "accumulate_grad_batches": k,
        "gradient_clip_val": clip_val,
        "gradient_clip_algorithm": algorithm,
    }
    trainer = create_trainer(model, optimizer, lambda y_pred, y: y_pred.sum(), cfg, precision=precision)
    steps: list[int] = []
    optimizer.register_step_post_hook(lambda opt, args, kwargs: steps.append(trainer.state.iteration))
    return model, trainer, steps


def _batches(values):
    return [(torch.tensor([[float(v)]]), torch.zeros(1)) for v in values]


def test_accumulation_steps_within_epoch_and_on_last_batch():
    # Lightning case L11: N=10, k=3, 2 epochs -> steps after batches 3, 6, 9, 10 of each epoch, 8 in all
    model, trainer, steps = _sum_trainer(k=3)
    trainer.run(_batches(range(1, 11)), max_epochs=2)
    assert steps == [3, 6, 9, 10, 13, 16, 19, 20]
    # each step applies lr * (sum of the window) / k; the short last window is still divided by k
    per_epoch = (1 + 2 + 3) / 3 + (4 + 5 + 6) / 3 + (7 + 8 + 9) / 3 + 10 / 3
    assert model.weight.item() == pytest.approx(-2 * per_epoch / 64, rel=1e-6)


def test_accumulation_output_is_undivided_loss():
    _, trainer, _ = _sum_trainer(k=4)
    outputs = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: outputs.append(e.state.output))
    trainer.run(_batches([5, 6]), max_epochs=1)
    assert outputs == [0.0, 0.0]  # w starts at 0 and no step happens before batch 2 (the last)


def test_accumulation_respects_epoch_length():
    # epoch_length shorter than the data (what loop limits set): the limited epoch's last batch steps
    model, trainer, steps = _sum_trainer(k=4)
    trainer.run(_batches(range(1, 11)), max_epochs=2, epoch_length=6)
    assert steps == [4, 6, 10, 12]


def test_accumulation_resumes_mid_epoch_from_engine_state():
    # an Ignite checkpoint taken after 4 of 10 batches: windows continue where the epoch stands
    _, trainer, steps = _sum_trainer(k=3)
    trainer.load_state_dict({"iteration": 4, "epoch_length": 10, "max_epochs": 2})
    trainer.run(_batches(range(1, 11)))
    assert steps == [6, 9, 10, 13, 16, 19, 20]


def test_accumulation_iterator_without_length_flushes_last_window():
    model, trainer, steps = _sum_trainer(k=3)
    trainer.run(iter(_batches([1, 2, 3, 4, 5, 6, 7])), max_epochs=1)
    assert len(steps) == 3
    assert model.weight.item() == pytest.approx(-(6 / 3 + 15 / 3 + 7 / 3) / 64, rel=1e-6)


def test_accumulation_with_scaler_skips_whole_window():
    # Lightning case AMP8: an inf inside a window skips that window's step; the scale halves once
    prec = _fp16_scaled()
    model, trainer, _ = _sum_trainer(k=2, precision=prec)
    data = _batches([1, 2, 3, 4])
    data[2] = (torch.tensor([[float("inf")]]), torch.zeros(1))
    trainer.run(data, max_epochs=1)
    assert model.weight.item() == pytest.approx(-(1 + 2) / 2 / 64, rel=1e-3)
    assert prec.scaler.get_scale() == 512.0


# ---------------------------------------------------------------- clipping (exact numbers)
@pytest.mark.parametrize("scaler", [False, True], ids=["fp32", "fp16-scaler"])
@pytest.mark.parametrize("algorithm, expected", [("norm", [-0.6, -0.8]), ("value", [-1.0, -1.0]), (None, [-3.0, -4.0])])
def test_clipping_after_unscale(algorithm, expected, scaler):
    prec = _fp16_scaled() if scaler else None
    clip = None if algorithm is None else 1.0
    model, trainer, _ = _sum_trainer(
        k=1, clip_val=clip, algorithm=algorithm or "norm", precision=prec, in_features=2, lr=1.0
    )
    trainer.run([(torch.tensor([[3.0, 4.0]]), torch.zeros(1))], max_epochs=1)  # gradient [3, 4], norm 5
    assert model.weight.detach().flatten().tolist() == pytest.approx(expected, rel=1e-5)


def test_clipping_applies_to_accumulated_gradient():
    # two batches of gradient [3, 4] accumulate (divided by k=2) to [3, 4]; norm clip to 2.5 halves it
    model, trainer, _ = _sum_trainer(k=2, clip_val=2.5, in_features=2, lr=1.0)
    trainer.run([(torch.tensor([[3.0, 4.0]]), torch.zeros(1))] * 2, max_epochs=1)
    assert model.weight.detach().flatten().tolist() == pytest.approx([-1.5, -2.0], rel=1e-5)


def test_unscale_is_idempotent_within_a_step():
    model = torch.nn.Linear(2, 1, bias=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    prec = _fp16_scaled()
    with prec.autocast():
        loss = model(torch.tensor([[3.0, 4.0]])).float().sum()
    prec.backward(loss, optimizer)
    prec.unscale_gradients(optimizer)
    prec.clip_gradients(optimizer, 100.0)  # must not unscale a second time
    assert model.weight.grad.flatten().tolist() == [3.0, 4.0]
    assert bool(prec.step(optimizer)) is True


# ---------------------------------------------------------------- DDP no_sync
@contextlib.contextmanager
def _counted_ddp_trainer(tmp_path):
    """A one-process gloo DDP model under create_trainer (accumulate_grad_batches=3) and the list that a
    comm hook appends to at each gradient all-reduce."""
    if dist.is_initialized():
        pytest.skip("a process group already exists in this test process")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        ddp = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(1, 1, bias=False))
        reductions: list[int] = []

        def counting_hook(state, bucket):
            reductions.append(1)
            fut = torch.futures.Future()
            fut.set_result(bucket.buffer())
            return fut

        ddp.register_comm_hook(None, counting_hook)
        optimizer = torch.optim.SGD(ddp.parameters(), lr=1.0 / 64)
        yield (
            create_trainer(
                ddp, optimizer, lambda y_pred, y: y_pred.sum(), {"accelerator": "cpu", "accumulate_grad_batches": 3}
            ),
            reductions,
        )
    finally:
        dist.destroy_process_group()


def test_ddp_no_sync_during_accumulation(tmp_path):
    with _counted_ddp_trainer(tmp_path) as (trainer, reductions):
        trainer.run(_batches(range(1, 8)), max_epochs=1)
        assert len(reductions) == 3  # batches 3, 6 and 7 (the last) all-reduce; the others accumulate locally


def test_ddp_reduces_every_batch_while_the_epoch_length_is_unknown(tmp_path):
    # the first epoch of a loader without len(): any batch may be the last, whose window steps at EPOCH_COMPLETED
    # with what was reduced so far, so nothing may be skipped (skipping the last one made the ranks diverge)
    with _counted_ddp_trainer(tmp_path) as (trainer, reductions):
        per_epoch = []
        trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: per_epoch.append(len(reductions)))

        class Unsized:
            def __iter__(self):
                return iter(_batches(range(1, 8)))

        trainer.run(Unsized(), max_epochs=2)
        assert per_epoch == [7, 7 + 3]  # then the length is known: batches 3, 6 and 7 reduce


def test_norm_clipping_of_a_fairscale_oss_uses_its_global_norm():
    # fairscale's OSS: each rank holds the reduced gradients of its shard only; torch's clip_grad_norm_ would
    # clip every shard by its own norm
    calls = []
    oss_class = type(
        "OSS",
        (torch.optim.SGD,),
        {"__module__": "fairscale.optim.oss", "clip_grad_norm": lambda self, max_norm: calls.append(max_norm)},
    )
    speed_oss = type("SpeedOSS", (oss_class,), {})
    model = torch.nn.Linear(2, 1, bias=False)
    optimizer = speed_oss(model.parameters(), lr=1.0)
    model(torch.tensor([[3.0, 4.0]])).sum().backward()
    prec = Precision("32-true", "cpu")
    prec.clip_gradients(optimizer, 1.0)
    assert calls == [1.0] and model.weight.grad.flatten().tolist() == [3.0, 4.0]
    prec.clip_gradients(optimizer, 1.0, "value")  # element-wise: the local gradients are enough
    assert calls == [1.0] and model.weight.grad.flatten().tolist() == [1.0, 1.0]


# ---------------------------------------------------------------- apex, XLA, CUDA logic, errors
def test_apex_missing_error_says_how_to_install():
    assert not nvidia_apex_available()
    with pytest.raises(ImportError, match=r"NVIDIA apex.*git clone https://github.com/NVIDIA/apex"):
        Precision("16-mixed", "cpu", amp_backend="apex")
    with pytest.raises(ImportError, match="NVIDIA apex"), pytest.warns(UserWarning, match="legacy spelling"):
        Precision.from_config({"precision": 16, "amp_backend": "apex", "amp_level": "O2"})


def test_unrelated_pypi_apex_is_detected_without_importing_it(tmp_path, monkeypatch):
    fake = tmp_path / "pypi" / "apex"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise RuntimeError('the PyPI apex must never be imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "pypi"))
    monkeypatch.delitem(sys.modules, "apex", raising=False)
    assert not nvidia_apex_available()
    with pytest.raises(ImportError, match="no 'amp' module"):
        Precision("16-mixed", "gpu", amp_backend="apex")
    assert "apex" not in sys.modules
    (fake / "amp").mkdir()  # shaped like NVIDIA apex <= 25.05
    assert nvidia_apex_available()
    assert "apex" not in sys.modules


def test_apex_config_rules():
    with pytest.raises(ValueError, match="amp_backend='apex' needs precision=16"):
        Precision("bf16-mixed", "cpu", amp_backend="apex")
    with pytest.raises(ValueError, match="amp_backend='gpu'"):
        Precision("16-mixed", "cpu", amp_backend="gpu")


@pytest.mark.parametrize(
    "requested, device_type, scaler, effective, dtype, use_scaler, warns",
    [
        ("16-mixed", "cuda", None, "16-mixed", F16, True, False),
        ("16-mixed", "cuda", False, "16-mixed", F16, False, False),
        ("bf16-mixed", "cuda", None, "bf16-mixed", BF16, False, False),
        ("16-mixed", "xla", None, "bf16-mixed", BF16, False, True),
        ("bf16-mixed", "xla", None, "bf16-mixed", BF16, False, False),
        ("16-mixed", "cpu", None, "bf16-mixed", BF16, False, True),
        ("16-mixed", "cpu", True, "16-mixed", F16, True, False),
    ],
)
def test_resolution_without_hardware(requested, device_type, scaler, effective, dtype, use_scaler, warns):
    plan = _resolve(requested, device_type, scaler)
    assert (plan.effective, plan.autocast_dtype, plan.use_scaler, plan.warning is not None) == (
        effective,
        dtype,
        use_scaler,
        warns,
    )


def test_true_precisions_resolve_to_param_dtypes_on_xla():
    assert _resolve("bf16-true", "xla", None).param_dtype == BF16
    assert _resolve("16-true", "xla", None).param_dtype == F16
    with pytest.raises(ValueError, match="no GradScaler"):
        _resolve("16-mixed", "xla", True)


def test_xla_without_torch_xla_is_a_clear_error():
    if importlib.util.find_spec("torch_xla") is not None:
        pytest.skip("torch_xla is installed")
    with pytest.raises(ImportError, match="needs torch_xla"):
        Precision("bf16-mixed", "tpu")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"precision": "fp16"}, ValueError, r"precision='fp16'.*accepted: \['64-true'"),
        ({"precision": 8}, ValueError, "precision=8"),
        ({"precision": "bf16-true "}, ValueError, "precision='bf16-true '"),
        ({"precision": 16.0}, TypeError, "precision=16.0 is a float"),
        ({"precision": None, "accelerator": "npu"}, ValueError, "accelerator='npu'"),
        ({"precision": "bf16-mixed", "scaler": True}, ValueError, "scaler=True only applies to precision='16-mixed'"),
        ({"precision": "16-mixed", "scaler": "yes"}, TypeError, "scaler='yes'"),
        ({"precision": "32-true", "accelerator": "cpu", "device": "cuda:0"}, ValueError, "does not match"),
        ({"precision": "32-true", "device": "warp:9"}, ValueError, "device='warp:9'"),
    ],
)
def test_bad_values(kwargs, error, match):
    kwargs = {"accelerator": "cpu", **kwargs} if "device" not in kwargs else kwargs
    with pytest.raises(error, match=match):
        Precision(**kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_gpu_accelerator_without_cuda_is_refused():
    with pytest.raises(ValueError, match="accelerator='gpu'.*CUDA is not available"):
        Precision("bf16-mixed", "gpu")
    with pytest.raises(ValueError, match="CUDA is not available"):
        Precision("32-true", device="cuda:0")


def test_bad_clip_and_trainer_arguments():
    prec = Precision("32-true", "cpu")
    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="gradient_clip_algorithm='l1'"):
        prec.clip_gradients(optimizer, 1.0, "l1")
    with pytest.raises(ValueError, match="gradient_clip_val=-1.0"):
        prec.clip_gradients(optimizer, -1.0)
    with pytest.raises(TypeError, match="backward expects the loss as a torch.Tensor"):
        prec.backward(1.0)
    with pytest.raises(TypeError, match="model has type"):
        create_trainer(lambda x: x, optimizer, torch.nn.MSELoss())
    with pytest.raises(TypeError, match="optimizer has type"):
        create_trainer(model, "sgd", torch.nn.MSELoss())
    with pytest.raises(TypeError, match="precision='bf16-mixed' has type str"):
        create_trainer(model, optimizer, torch.nn.MSELoss(), precision="bf16-mixed")
    with pytest.raises(ValueError, match="conflicts with the Precision object"):
        create_trainer(model, optimizer, torch.nn.MSELoss(), {"precision": "64-true"}, precision=prec)
    with pytest.raises(ValueError, match="accumulate_grad_batches=0"):
        create_trainer(model, optimizer, torch.nn.MSELoss(), {"accumulate_grad_batches": 0})


def test_trainer_is_a_drop_in_for_create_supervised_trainer():
    from ignite.engine import DeterministicEngine, create_supervised_trainer

    outputs = {}
    for name, factory in (("ignite", create_supervised_trainer), ("speed", create_trainer)):
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        trainer = factory(model, optimizer, torch.nn.MSELoss(), device="cpu")
        trainer.run(_regression_data(), max_epochs=2)
        outputs[name] = (trainer.state.output, model.weight.detach().clone())
    assert outputs["speed"][0] == outputs["ignite"][0]
    assert torch.equal(outputs["speed"][1], outputs["ignite"][1])
    model = torch.nn.Linear(4, 1)
    det = create_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), torch.nn.MSELoss(), deterministic=True)
    assert isinstance(det, DeterministicEngine)
    assert precision_of(det).effective_precision == "32-true"
