"""Unit tests of ignite_speed.distributed that need no second process and no accelerator."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import subprocess
import sys
import types
import warnings
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from ignite_speed.config import SpeedConfig
from ignite_speed.distributed import (
    DeepSpeedCheckpoint,
    ModelState,
    OptimizerState,
    _guard,
    attach_set_epoch,
    checkpoint_objects,
    current_strategy,
    deepspeed_config_for,
    detect_launcher,
    launch,
    plan_launch,
    prepare,
    prepare_dataloader,
    rebuild_optimizer,
    resolve_strategy,
    unwrap_model,
    warn_if_not_launched,
)
from ignite_speed.distributed.xla import install_xla_shims, xla_optimizer
from ignite_speed.loop.trainer_parts import TrainerParts
from ignite_speed.step.trainer import create_trainer, precision_of

HAS_XLA = importlib.util.find_spec("torch_xla") is not None


def plan(env: dict | None = None, cuda: int = 0, **flags):
    return plan_launch(SpeedConfig(**flags), env=env or {}, cuda_count=cuda)


# ---------------------------------------------------------------- launch plans
@pytest.mark.parametrize(
    "flags, backend, nproc, strategy",
    [
        ({}, None, 1, "single_device"),
        ({"accelerator": "cpu", "devices": 2}, "gloo", 2, "ddp"),
        ({"accelerator": "cpu", "devices": "3"}, "gloo", 3, "ddp"),
        ({"accelerator": "cpu", "devices": 1, "strategy": "fsdp"}, "gloo", 1, "fsdp"),
        ({"accelerator": "cpu", "devices": 2, "strategy": "ddp_spawn"}, "gloo", 2, "ddp"),
        ({"accelerator": "cpu", "devices": 2, "strategy": "zero"}, "gloo", 2, "zero"),
        ({"accelerator": "cpu", "devices": 2, "strategy": "deepspeed_stage_3"}, "gloo", 2, "deepspeed_stage_3"),
        ({"accelerator": "cpu", "devices": 1, "strategy": "ddp"}, "gloo", 1, "ddp"),
    ],
)
def test_cpu_plans(flags, backend, nproc, strategy) -> None:
    p = plan(**flags)
    assert (p.accelerator, p.backend, p.nproc_per_node, p.strategy, p.nnodes) == ("cpu", backend, nproc, strategy, 1)


def test_gpu_plans_from_device_count() -> None:
    assert plan(cuda=4, accelerator="gpu").nproc_per_node == 4  # "auto" = all visible GPUs
    assert plan(cuda=4).accelerator == "gpu"  # accelerator="auto" picks CUDA when present
    p = plan(cuda=4, accelerator="gpu", devices=-1)
    assert (p.backend, p.nproc_per_node, p.strategy) == ("nccl", 4, "ddp")
    p = plan(cuda=4, accelerator="gpu", devices=[1, 3])
    assert (p.nproc_per_node, p.device_ids) == (2, (1, 3))
    p = plan(cuda=1, accelerator="gpu", devices=1)
    assert (p.backend, p.strategy) == (None, "single_device")
    assert plan(cuda=1, accelerator="gpu", devices=1, strategy="fsdp").backend == "nccl"


def test_legacy_flags_reach_the_plan() -> None:
    with pytest.warns(FutureWarning):
        p = plan(cuda=2, gpus=2)
    assert (p.accelerator, p.nproc_per_node, p.backend) == ("gpu", 2, "nccl")
    with pytest.warns(FutureWarning):
        p = plan(num_processes=2)
    assert (p.accelerator, p.nproc_per_node, p.strategy) == ("cpu", 2, "ddp")
    with pytest.warns(FutureWarning):
        assert plan(accelerator="ddp", devices=2).strategy == "ddp"
    with pytest.warns(FutureWarning):
        assert plan(plugins="ddp_sharded", devices=2).strategy == "ddp_sharded"
    with pytest.warns(FutureWarning):
        p = plan(tpu_cores=[3])
    assert (p.accelerator, p.nproc_per_node, p.device_ids, p.strategy) == ("tpu", 1, (2,), "single_xla")


def test_tpu_plans() -> None:
    p = plan(accelerator="tpu")
    assert (p.nproc_per_node, p.world_size, p.strategy, p.backend) == (None, None, "xla", "xla-tpu")
    assert plan(accelerator="xla", devices=1).strategy == "single_xla"


@pytest.mark.parametrize(
    "flags, cuda, exc, words",
    [
        ({"accelerator": "gpu"}, 0, ValueError, "no CUDA device"),
        ({"accelerator": "gpu", "devices": 3}, 2, ValueError, "devices=3"),
        ({"accelerator": "gpu", "devices": [0, 2]}, 2, ValueError, "[2]"),
        ({"accelerator": "cpu", "devices": -1}, 0, TypeError, "devices=-1"),
        ({"accelerator": "cpu", "devices": [0, 1]}, 0, TypeError, "devices=[0, 1]"),
        ({"accelerator": "mps", "devices": 2}, 0, ValueError, "MPS has exactly one device"),
        ({"accelerator": "mps", "strategy": "ddp"}, 0, ValueError, "accelerator='mps'"),
        ({"accelerator": "tpu", "strategy": "ddp"}, 0, ValueError, "accelerator='tpu'"),
        ({"accelerator": "tpu", "strategy": "fsdp"}, 0, ValueError, "accelerator='tpu'"),
        ({"accelerator": "tpu", "devices": [0, 1]}, 0, ValueError, "one core"),
        ({"accelerator": "cpu", "strategy": "xla"}, 0, ValueError, "accelerator='tpu'"),
        ({"accelerator": "cpu", "devices": 2, "strategy": "single_device"}, 0, ValueError, "single_device"),
        ({"accelerator": "cpu", "strategy": "fsdp_cpu_offload"}, 0, ValueError, "fsdp_cpu_offload"),
        ({"accelerator": "cpu", "num_nodes": 2, "master_addr": "10.0.0.1"}, 0, ValueError, "node_rank"),
        ({"accelerator": "cpu", "num_nodes": 2, "node_rank": 1}, 0, ValueError, "master_addr"),
        ({"accelerator": "tpu", "num_nodes": 2, "node_rank": 0, "master_addr": "h"}, 0, ValueError, "num_nodes=2"),
        ({"devices": 0}, 0, ValueError, "devices=0"),
        ({"num_nodes": 0}, 0, ValueError, "num_nodes=0"),
        ({"strategy": "horovod"}, 0, ValueError, "horovod"),
        ({"strategy": "ddp_fully_sharded"}, 0, ValueError, "ddp_fully_sharded"),
    ],
)
def test_impossible_combinations_are_clear_errors(flags, cuda, exc, words) -> None:
    with pytest.raises(exc) as info:
        plan(cuda=cuda, **flags)
    assert words in str(info.value)


def test_multinode_from_flags_and_environment() -> None:
    p = plan(accelerator="cpu", devices=2, num_nodes=2, node_rank=1, master_addr="10.0.0.1")
    assert (p.nnodes, p.node_rank, p.master_addr, p.master_port, p.world_size) == (2, 1, "10.0.0.1", 29500, 4)
    p = plan({"NODE_RANK": "1", "MASTER_ADDR": "h0", "MASTER_PORT": "1234"}, accelerator="cpu", num_nodes=2)
    assert (p.node_rank, p.master_addr, p.master_port, p.launcher) == (1, "h0", 1234, None)
    with pytest.raises(ValueError, match="NODE_RANK=3"):
        plan({"NODE_RANK": "3", "MASTER_ADDR": "h0"}, accelerator="cpu", num_nodes=2)
    with pytest.raises(ValueError, match="not an integer"):
        plan({"NODE_RANK": "x", "MASTER_ADDR": "h0"}, accelerator="cpu", num_nodes=2)


def test_external_launchers_are_detected() -> None:
    torchrun = {
        "RANK": "3",
        "LOCAL_RANK": "1",
        "WORLD_SIZE": "4",
        "LOCAL_WORLD_SIZE": "2",
        "GROUP_RANK": "1",
        "MASTER_ADDR": "h0",
        "MASTER_PORT": "29400",
    }
    assert detect_launcher(torchrun) == "torchrun"
    assert detect_launcher({"SLURM_JOB_ID": "1", "SLURM_PROCID": "0", "SLURM_NTASKS": "8"}) == "slurm"
    assert detect_launcher({"SLURM_JOB_ID": "1", "SLURM_PROCID": "0", "SLURM_NTASKS": "1"}) is None
    assert detect_launcher({}) is None
    p = plan(torchrun, accelerator="cpu")
    assert (p.launcher, p.nproc_per_node, p.nnodes, p.node_rank, p.strategy) == ("torchrun", 2, 2, 1, "ddp")
    assert plan(torchrun, accelerator="cpu", devices=2, num_nodes=2).world_size == 4
    with pytest.raises(ValueError, match="torchrun started 2 processes"):
        plan(torchrun, accelerator="cpu", devices=3)
    with pytest.raises(ValueError, match="WORLD_SIZE=4"):
        plan(torchrun, accelerator="cpu", num_nodes=3)


def test_resolve_strategy() -> None:
    assert resolve_strategy("auto", "cpu", 1) == "single_device"
    assert resolve_strategy("auto", "gpu", 8) == "ddp"
    assert resolve_strategy("ddp_find_unused_parameters_true", "gpu", 2) == "ddp"
    assert resolve_strategy("single_tpu", "tpu", 1) == "single_xla"
    with pytest.raises(ValueError, match="use strategy='xla'"):
        resolve_strategy("single_xla", "tpu", None)


# ---------------------------------------------------------------- launch (single process)
def _record(local_rank: int, out: list, value: int, *, key: str = "") -> None:
    out.append((local_rank, value, key, torch.distributed.is_initialized()))


def test_launch_single_process_runs_here() -> None:
    calls: list = []
    p = launch({"accelerator": "cpu"}, _record, calls, 7, key="k")
    assert calls == [(0, 7, "k", False)] and p.backend is None


def test_launch_rejects_bad_arguments() -> None:
    with pytest.raises(TypeError, match="not callable"):
        launch({}, "fn")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="timedelta"):
        launch({}, _record, [], 1, timeout=60)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="devices=0"):
        launch({"devices": 0}, _record, [], 1)


# ---------------------------------------------------------------- prepare (single process)
def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))


def test_prepare_single_device_keeps_objects() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    m, o = prepare(model, opt, {"accelerator": "cpu"})
    assert m is model and o is opt
    assert current_strategy({"accelerator": "cpu"}) == "single_device"
    m, o = prepare(_model(), lambda p: torch.optim.Adam(p, lr=1e-3), {"accelerator": "cpu", "strategy": "ddp"})
    assert isinstance(m, nn.Sequential) and isinstance(o, torch.optim.Adam)  # world size 1: no DDP wrapper


@pytest.mark.parametrize("strategy", ["fsdp", "ddp_sharded", "deepspeed", "deepspeed_stage_3"])
def test_sharding_strategies_need_a_process_group(strategy: str) -> None:
    model = _model()
    with pytest.raises(ValueError, match="ignite_speed.launch"):
        prepare(model, torch.optim.SGD(model.parameters(), lr=0.1), {"accelerator": "cpu", "strategy": strategy})


def test_prepare_rejects_bad_inputs() -> None:
    with pytest.raises(TypeError, match="torch.nn.Module"):
        prepare("model", None, {})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="optimizer="):
        prepare(_model(), "sgd", {"accelerator": "cpu"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="factory returned"):
        prepare(_model(), lambda p: 3, {"accelerator": "cpu"})  # type: ignore[arg-type, return-value]


def test_fairscale_fsdp_is_refused_on_cpu() -> None:
    # A module whose class is fairscale's FSDP (by name and module); fairscale itself needs CUDA for it.
    cls = type("FullyShardedDataParallel", (nn.Module,), {"__module__": "fairscale.nn.data_parallel"})
    wrapped = cls()
    wrapped.inner = _model()
    with pytest.raises(ValueError, match="fairscale's FullyShardedDataParallel, which needs CUDA"):
        prepare(wrapped, lambda p: torch.optim.SGD(p, lr=0.1), {"accelerator": "cpu", "strategy": "fsdp"})


def test_rebuild_optimizer_follows_replaced_parameters() -> None:
    model = _model()
    opt = torch.optim.SGD(
        [{"params": model[0].parameters(), "lr": 0.5}, {"params": model[2].parameters()}], lr=0.1, momentum=0.9
    )
    names = {id(p): n for n, p in model.named_parameters()}
    assert rebuild_optimizer(opt, names, model) is opt
    clone = _model()  # new Parameter objects with the same names
    new = rebuild_optimizer(opt, names, clone)
    assert type(new) is torch.optim.SGD and new is not opt
    assert [g["lr"] for g in new.param_groups] == [0.5, 0.1] and new.defaults["momentum"] == 0.9
    assert {id(p) for g in new.param_groups for p in g["params"]} == {id(p) for p in clone.parameters()}
    clone(torch.randn(2, 4)).sum().backward()
    opt.state[next(iter(model.parameters()))]["momentum_buffer"] = torch.zeros(1)
    with pytest.raises(ValueError, match="already holds state"):
        rebuild_optimizer(opt, names, clone)
    stranger = torch.optim.SGD([nn.Parameter(torch.zeros(3))], lr=0.1)
    with pytest.raises(ValueError, match="not in the model"):
        rebuild_optimizer(stranger, {}, clone)


# ---------------------------------------------------------------- DeepSpeed config
def test_deepspeed_config_from_flags() -> None:
    ds = deepspeed_config_for({"strategy": "deepspeed"})
    # DeepSpeed's own default gradient_clipping is 1.0; without gradient_clip_val nothing is clipped (as in DDP)
    assert ds == {
        "zero_optimization": {"stage": 2},
        "gradient_clipping": 0.0,
        "train_micro_batch_size_per_gpu": 1,
        "zero_allow_untested_optimizer": True,
    }
    ds = deepspeed_config_for(
        {
            "strategy": "deepspeed_stage_3_offload",
            "precision": "bf16-mixed",
            "accumulate_grad_batches": 4,
            "gradient_clip_val": 1.0,
        }
    )
    assert ds["zero_optimization"] == {
        "stage": 3,
        "offload_optimizer": {"device": "cpu"},
        "offload_param": {"device": "cpu"},
    }
    assert ds["bf16"] == {"enabled": True} and ds["gradient_accumulation_steps"] == 4
    assert ds["gradient_clipping"] == 1.0
    assert deepspeed_config_for({"strategy": "deepspeed_stage_2_offload"})["zero_optimization"] == {
        "stage": 2,
        "offload_optimizer": {"device": "cpu"},
    }
    given = {"zero_optimization": {"stage": 1}, "train_batch_size": 32}
    ds = deepspeed_config_for({"strategy": "deepspeed", "deepspeed_config": given})
    assert ds == {
        "zero_optimization": {"stage": 1},
        "train_batch_size": 32,
        "gradient_clipping": 0.0,
        "zero_allow_untested_optimizer": True,
    }
    # ZeRO takes any torch optimizer (SGD too), unless the given config says otherwise
    strict = {"zero_allow_untested_optimizer": False}
    assert (
        deepspeed_config_for({"strategy": "deepspeed", "deepspeed_config": strict})["zero_allow_untested_optimizer"]
        is False
    )
    assert given == {"zero_optimization": {"stage": 1}, "train_batch_size": 32}
    # a clipping value in the DeepSpeed config is kept; gradient_clip_val=0/None given as a flag must agree
    clipped = {"gradient_clipping": 0.5}
    assert deepspeed_config_for({"strategy": "deepspeed", "deepspeed_config": clipped})["gradient_clipping"] == 0.5
    assert deepspeed_config_for({"strategy": "deepspeed", "gradient_clip_val": 0})["gradient_clipping"] == 0.0
    assert deepspeed_config_for({"strategy": "deepspeed", "gradient_clip_val": None})["gradient_clipping"] == 0.0
    with pytest.raises(ValueError, match=r"gradient_clip_val=0.0 \(no clipping\) conflicts"):
        deepspeed_config_for({"strategy": "deepspeed", "gradient_clip_val": 0, "deepspeed_config": clipped})


def test_deepspeed_config_file_and_conflicts(tmp_path: Path) -> None:
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 3}, "gradient_accumulation_steps": 2}))
    assert deepspeed_config_for({"strategy": "deepspeed", "deepspeed_config": str(path)})["zero_optimization"] == {
        "stage": 3
    }
    with pytest.raises(ValueError, match="stage 1 but deepspeed_config has zero_optimization.stage=3"):
        deepspeed_config_for({"strategy": "deepspeed_stage_1", "deepspeed_config": str(path)})
    with pytest.raises(ValueError, match="accumulate_grad_batches=4 conflicts"):
        deepspeed_config_for({"strategy": "deepspeed", "deepspeed_config": str(path), "accumulate_grad_batches": 4})
    with pytest.raises(ValueError, match="is not a file"):
        deepspeed_config_for({"strategy": "deepspeed", "deepspeed_config": str(tmp_path / "missing.json")})
    with pytest.raises(ValueError, match="gradient_clip_algorithm='value'"):
        deepspeed_config_for({"strategy": "deepspeed", "gradient_clip_val": 1.0, "gradient_clip_algorithm": "value"})
    with pytest.raises(ValueError, match="not a DeepSpeed strategy"):
        deepspeed_config_for({"strategy": "ddp"})


# ---------------------------------------------------------------- data
def _data(n: int = 20) -> TensorDataset:
    return TensorDataset(torch.arange(n).float().unsqueeze(1))


def test_prepare_dataloader_single_process() -> None:
    loader = prepare_dataloader(_data(), {"accelerator": "cpu"}, batch_size=4)
    assert loader.batch_size == 4 and [int(v) for b in loader for v in b[0]] == list(range(20))
    shuffled = prepare_dataloader(_data(), None, batch_size=4, shuffle=True, seed=3)
    assert isinstance(shuffled.sampler, DistributedSampler) and shuffled.sampler.num_replicas == 1
    assert sorted(int(v) for b in shuffled for v in b[0]) == list(range(20))
    existing = DataLoader(_data(), batch_size=5)
    assert prepare_dataloader(existing, None) is existing
    with pytest.raises(TypeError, match="cannot be applied to an existing DataLoader"):
        prepare_dataloader(existing, None, batch_size=3)
    with pytest.raises(TypeError, match="accepted: a torch Dataset or DataLoader"):
        prepare_dataloader(3, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shuffle=True together with sampler"):
        prepare_dataloader(_data(), None, shuffle=True, sampler=range(20))


def test_attach_set_epoch_reshuffles_every_epoch() -> None:
    sampler = DistributedSampler(_data(), num_replicas=2, rank=0, shuffle=True, seed=5)
    loader = DataLoader(_data(), batch_size=10, sampler=sampler)
    seen: list[list[int]] = []
    engine = Engine(lambda e, b: seen.append([int(v) for v in b[0]]))
    assert attach_set_epoch(engine, loader) is not None
    engine.run(loader, max_epochs=3)
    for epoch in range(3):
        expected = DistributedSampler(_data(), num_replicas=2, rank=0, shuffle=True, seed=5)
        expected.set_epoch(epoch)
        assert seen[epoch] == list(expected), epoch
    assert seen[0] != seen[1]
    assert attach_set_epoch(Engine(lambda e, b: None), DataLoader(_data())) is None


# ---------------------------------------------------------------- checkpoints (single process)
def test_model_and_optimizer_state_round_trip_through_ignite_checkpoint(tmp_path: Path) -> None:
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    x, y = torch.randn(16, 4), torch.randn(16, 1)

    def step(engine: Engine, batch: object) -> float:
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    trainer = Engine(step)
    objects = checkpoint_objects(model, opt)
    assert set(objects) == {"model", "optimizer"}
    trainer.add_event_handler(
        Events.COMPLETED, Checkpoint({"trainer": trainer, **objects}, DiskSaver(str(tmp_path), require_empty=False))
    )
    trainer.run([0, 1, 2], max_epochs=2)
    [path] = list(tmp_path.glob("*.pt"))
    fresh = _model()
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=0.01)
    Checkpoint.load_objects({"model": ModelState(fresh), "optimizer": OptimizerState(fresh_opt, fresh)}, str(path))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))
    assert fresh_opt.state_dict()["state"][0]["step"] == 6


def test_checkpoint_helpers_reject_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="accepted: a torch.nn.Module"):
        ModelState("m")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="DeepSpeedEngine"):
        DeepSpeedCheckpoint(_model(), tmp_path)
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        OptimizerState(3)  # type: ignore[arg-type]
    wrapped = nn.Module()
    wrapped.module = _model()
    assert unwrap_model(wrapped) is wrapped.module


# ---------------------------------------------------------------- XLA adapter (without torch_xla)
def test_install_xla_shims_maps_removed_names() -> None:
    runtime = types.SimpleNamespace(world_size=lambda: 8, global_ordinal=lambda: 3, local_ordinal=lambda: 1)
    new_xm = types.SimpleNamespace()  # torch-xla >= 2.8: the legacy names are gone
    assert install_xla_shims(new_xm, runtime) == ["xrt_world_size", "get_ordinal", "get_local_ordinal"]
    assert (new_xm.xrt_world_size(), new_xm.get_ordinal(), new_xm.get_local_ordinal()) == (8, 3, 1)
    old_xm = types.SimpleNamespace(xrt_world_size=lambda: 2, get_ordinal=lambda: 0, get_local_ordinal=lambda: 0)
    assert install_xla_shims(old_xm, runtime) == [] and old_xm.xrt_world_size() == 2


def test_xla_optimizer_reduces_gradients_before_each_step() -> None:
    calls: list[str] = []
    xm = types.SimpleNamespace(
        reduce_gradients=lambda opt: calls.append("reduce"), mark_step=lambda: calls.append("mark_step")
    )
    model = _model()
    opt = xla_optimizer(torch.optim.SGD(model.parameters(), lr=0.1), xm)
    assert isinstance(opt, torch.optim.SGD) and xla_optimizer(opt, xm) is opt
    before = [p.detach().clone() for p in model.parameters()]
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    assert calls == ["reduce", "mark_step"]
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert "state" in opt.state_dict()


@pytest.fixture
def fake_torch_xla(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """torch_xla as far as prepare() and create_trainer use it, on the CPU; returns the calls made to it."""
    calls: list[str] = []
    xm = types.ModuleType("torch_xla.core.xla_model")
    xm.reduce_gradients = lambda opt: calls.append("reduce_gradients")  # type: ignore[attr-defined]
    xm.mark_step = lambda: calls.append("mark_step")  # type: ignore[attr-defined]
    xm.optimizer_step = lambda opt, *a, **k: (calls.append("optimizer_step"), opt.step())  # type: ignore[attr-defined]
    xr = types.ModuleType("torch_xla.runtime")
    xr.world_size, xr.global_ordinal, xr.local_ordinal = lambda: 1, lambda: 0, lambda: 0  # type: ignore[attr-defined]
    core = types.ModuleType("torch_xla.core")
    core.xla_model = xm  # type: ignore[attr-defined]
    xla = types.ModuleType("torch_xla")
    xla.__version__, xla.core, xla.runtime = "2.9.0", core, xr  # type: ignore[attr-defined]
    xla.device = lambda: torch.device("cpu")  # type: ignore[attr-defined]
    for module in (xla, core, xm, xr):
        module.__spec__ = importlib.machinery.ModuleSpec(module.__name__, None)
        monkeypatch.setitem(sys.modules, module.__name__, module)
    return calls


@pytest.mark.skipif(HAS_XLA, reason="torch_xla is installed (tox -e xla runs the real one)")
def test_create_trainer_steps_prepares_xla_optimizer_once_per_window(fake_torch_xla: list[str]) -> None:
    # prepare() wraps the optimizer so that its step() reduces gradients across replicas and cuts the graph;
    # create_trainer's step must use it as it is (xm.optimizer_step would reduce a second time)
    cfg = {"accelerator": "tpu", "devices": 1, "accumulate_grad_batches": 2, "gradient_clip_val": 1.0}
    model, opt = prepare(_model(), lambda p: torch.optim.SGD(p, lr=0.05), cfg)
    assert getattr(opt, "_ignite_speed_xla", False) and fake_torch_xla == []
    trainer = create_trainer(model, opt, nn.functional.mse_loss, cfg)
    assert precision_of(trainer).device_type == "xla"
    x = torch.randn(20, 4)
    data = [(x[i : i + 4], x[i : i + 4].sum(1, keepdim=True)) for i in range(0, 20, 4)]
    losses: list[float] = []
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: losses.append(e.state.output))
    trainer.run(data, max_epochs=3)
    # 5 batches, windows of 2: steps after batches 2, 4 and 5 of each epoch
    assert fake_torch_xla == ["reduce_gradients", "mark_step"] * 9
    assert losses[-1] < losses[0]
    # an optimizer that prepare() did not wrap still goes through xm.optimizer_step
    from ignite_speed import Precision

    plain = torch.optim.SGD(_model().parameters(), lr=0.1)
    fake_torch_xla.clear()
    Precision("32-true", "tpu").step(plain)
    assert fake_torch_xla == ["optimizer_step"]


def test_create_trainer_sends_batches_where_prepare_put_the_model() -> None:
    # prepare() puts the model on this rank's GPU or XLA device; without device= the batches follow it there
    from ignite_speed.step.trainer import _batch_device

    elsewhere = nn.Linear(2, 1, device="meta")  # stands for a cuda:1 or xla:0 parameter
    assert _batch_device(elsewhere, "tpu") == _batch_device(elsewhere, "gpu") == torch.device("meta")
    assert _batch_device(nn.Linear(2, 1), "auto") == torch.device("cpu")
    assert _batch_device(nn.Linear(2, 1), "cpu") is None and _batch_device(nn.Module(), "auto") is None


@pytest.mark.skipif(HAS_XLA, reason="torch_xla is installed")
def test_tpu_without_torch_xla_is_a_clear_import_error() -> None:
    with pytest.raises(ImportError, match="accelerator='tpu' needs torch_xla"):
        prepare(_model(), lambda p: torch.optim.SGD(p, lr=0.1), {"accelerator": "tpu", "devices": 1})


@pytest.mark.skipif(not HAS_XLA, reason="needs torch_xla (tox -e xla)")
def test_xla_single_process_training_bf16() -> None:
    model, opt = prepare(
        _model().to(torch.bfloat16), lambda p: torch.optim.SGD(p, lr=0.1), {"accelerator": "tpu", "devices": 1}
    )
    device = next(model.parameters()).device
    assert device.type == "xla"
    x, y = torch.randn(32, 4, dtype=torch.bfloat16).to(device), torch.randn(32, 1, dtype=torch.bfloat16).to(device)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.float().cpu()))
    assert losses[-1] < losses[0]


# ---------------------------------------------------------------- create_trainer with a DeepSpeed engine
class DeepSpeedEngine(nn.Module):
    """The calls create_trainer makes on deepspeed's DeepSpeedEngine (recognised by its class name), with
    DeepSpeed's rules: the loss is divided by gradient_accumulation_steps, step() steps on a boundary only,
    clipping is the engine's. Records the boundary of every backward."""

    def __init__(self, module: nn.Module, gas: int = 1, clipping: float = 0.0, bf16: bool = False) -> None:
        super().__init__()
        self.module = module
        self.optimizer = torch.optim.SGD(module.parameters(), lr=0.05)
        self.gas, self.clipping, self.bf16 = gas, clipping, bf16
        self.device = torch.device("cpu")
        self.boundary: bool | None = None
        self.boundaries: list[bool | None] = []
        self.micro_steps = self.global_steps = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)

    def gradient_accumulation_steps(self) -> int:
        return self.gas

    def gradient_clipping(self) -> float:
        return self.clipping

    def fp16_enabled(self) -> bool:
        return False

    def bfloat16_enabled(self) -> bool:
        return self.bf16

    def set_gradient_accumulation_boundary(self, is_boundary: bool) -> None:
        self.boundary = is_boundary

    def backward(self, loss: torch.Tensor) -> torch.Tensor:
        self.boundaries.append(self.boundary)
        (loss / self.gas).backward()
        return loss / self.gas

    def step(self) -> None:
        boundary = self.boundary if self.boundary is not None else (self.micro_steps + 1) % self.gas == 0
        if boundary:
            if self.clipping:
                torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.clipping)
            self.optimizer.step()
            self.optimizer.zero_grad()
            self.global_steps += 1
        self.micro_steps += 1


class Unsized:
    """A re-iterable without len(): Ignite learns the first epoch's length at its end."""

    def __init__(self, data: list) -> None:
        self.data = data

    def __iter__(self):
        return iter(self.data)


def _regression(n: int = 10) -> list:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(n * 4, 4, generator=g)
    return [(x[i : i + 4], x[i : i + 4].sum(1, keepdim=True)) for i in range(0, n * 4, 4)]


@pytest.mark.parametrize("sized", [True, False], ids=["len", "no-len"])
def test_create_trainer_drives_a_deepspeed_engine_on_ignite_speeds_windows(sized: bool) -> None:
    # DeepSpeed's own micro-step counter would step after batches 3, 6, 9, 12, ... across epochs; create_trainer
    # marks the windows as ignite-speed counts them (every 3rd batch of an epoch and its last), and the result is
    # the plain optimizer's
    cfg = {"accelerator": "cpu", "accumulate_grad_batches": 3, "gradient_clip_val": 0.5}
    data = _regression(10)
    engine = DeepSpeedEngine(_model(), gas=3, clipping=0.5)
    trainer = create_trainer(engine, engine.optimizer, nn.functional.mse_loss, cfg)
    assert TrainerParts.find(trainer).accumulate == 3 and precision_of(trainer).effective_precision == "32-true"
    modes: list[bool] = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: modes.append(engine.training))
    trainer.run(data if sized else Unsized(data), max_epochs=2)
    epoch = [False, False, True] * 3 + [True]
    if sized:
        assert engine.boundaries == epoch * 2
    else:  # the first epoch's last batch is not known as such: its window ends with one more backward (loss x 0)
        assert engine.boundaries == epoch[:-1] + [False, True] + epoch
    assert engine.global_steps == 8 and all(modes) and engine.training
    reference = _model()
    opt = torch.optim.SGD(reference.parameters(), lr=0.05)
    create_trainer(reference, opt, nn.functional.mse_loss, cfg).run(data, max_epochs=2)
    for a, b in zip(engine.module.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)


def test_create_trainer_casts_inputs_for_a_bf16_engine_and_warns_about_kept_gradients() -> None:
    seen: list[torch.dtype] = []
    module = _model().to(torch.bfloat16)
    module.register_forward_pre_hook(lambda m, args: seen.append(args[0].dtype))
    engine = DeepSpeedEngine(module, gas=3, bf16=True)
    cfg = {"accelerator": "cpu", "precision": "bf16-mixed", "accumulate_grad_batches": 3}
    trainer = create_trainer(engine, engine.optimizer, nn.functional.mse_loss, cfg)
    assert seen == [] and precision_of(trainer).effective_precision == "bf16-mixed"
    # an epoch that ends inside a window: DeepSpeed cannot drop what it accumulated, which is said
    trainer.add_event_handler(Events.ITERATION_COMPLETED(once=4), lambda e: e.terminate_epoch())
    with pytest.warns(UserWarning, match="DeepSpeed has no call to discard"):
        trainer.run(_regression(6), max_epochs=2)
    assert set(seen) == {torch.bfloat16} and len(seen) == 10


def test_create_trainer_refuses_a_deepspeed_engine_configured_otherwise() -> None:
    engine = DeepSpeedEngine(_model(), gas=2, clipping=1.0)
    ok = {"accumulate_grad_batches": 2, "gradient_clip_val": 1.0}
    create_trainer(engine, engine.optimizer, nn.functional.mse_loss, ok)
    create_trainer(engine, None, nn.functional.mse_loss, ok)
    for flags, match in [
        (
            {"gradient_clip_val": 1.0},
            "accumulate_grad_batches=1 but the DeepSpeed engine accumulates gradient_accumulation_steps=2",
        ),
        ({**ok, "gradient_clip_val": 0.5}, "gradient_clip_val=0.5 but the DeepSpeed engine clips"),
        ({**ok, "gradient_clip_val": None}, "gradient_clip_val=None but"),
        ({**ok, "gradient_clip_algorithm": "value"}, "gradient_clip_algorithm='value'"),
        ({**ok, "precision": "bf16-mixed"}, "trains in fp32"),
    ]:
        with pytest.raises(ValueError, match=match):
            create_trainer(engine, engine.optimizer, nn.functional.mse_loss, flags)
    with pytest.raises(TypeError, match="not the DeepSpeed engine's optimizer"):
        create_trainer(engine, torch.optim.SGD(engine.parameters(), lr=0.1), nn.functional.mse_loss, ok)
    from ignite_speed import Precision

    with pytest.raises(ValueError, match="precision= cannot be combined with a DeepSpeed engine"):
        create_trainer(engine, engine.optimizer, nn.functional.mse_loss, ok, precision=Precision("32-true", "cpu"))


# ---------------------------------------------------------------- a distributed config in a process nobody launched
@pytest.fixture
def not_launched(monkeypatch: pytest.MonkeyPatch) -> None:
    if torch.distributed.is_initialized():
        pytest.skip("a process group exists in this test process")
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "SLURM_JOB_ID", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(_guard, "_warned", False)


def test_distributed_config_outside_a_launched_job_warns_once(not_launched: None) -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    cfg = {"accelerator": "cpu", "devices": 2}
    with pytest.warns(
        UserWarning,
        match=r"create_trainer: the config asks for a distributed job \(devices=2\).*one "
        r"process.*ignite_speed\.launch\(cfg, fn\).*torchrun",
    ) as record:
        create_trainer(model, opt, nn.functional.mse_loss, cfg)
    assert record[0].filename == __file__  # points at the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process
        prepare(model, opt, cfg)
        create_trainer(model, opt, nn.functional.mse_loss, cfg)
        assert not warn_if_not_launched(cfg, "attach_speedups")
    _guard._warned = False
    with pytest.warns(UserWarning, match=r"prepare: the config asks for a distributed job \(devices=2\)"):
        prepare(model, opt, {**cfg, "strategy": "zero"})


def test_attach_speedups_outside_a_launched_job_warns_at_the_callers_line(not_launched: None) -> None:
    from ignite.engine import Engine

    from ignite_speed import attach_speedups

    with pytest.warns(
        UserWarning, match=r"attach_speedups: the config asks for a distributed job \(devices=2\)"
    ) as record:
        attach_speedups(Engine(lambda e, b: None), cfg={"accelerator": "cpu", "devices": 2})
    assert record[0].filename == __file__


@pytest.mark.parametrize(
    "flags, warns",
    [
        ({"accelerator": "cpu", "devices": 3}, True),
        ({"accelerator": "cpu", "num_nodes": 2}, True),
        ({"accelerator": "cpu", "strategy": "fsdp"}, True),
        ({"accelerator": "cpu", "devices": 1, "strategy": "deepspeed_stage_2"}, True),
        ({"accelerator": "cpu", "strategy": "ddp_sharded"}, True),
        ({}, False),
        ({"devices": 1}, False),
        ({"devices": "auto"}, False),
        ({"accelerator": "cpu", "strategy": "ddp"}, False),  # one process on CPU, also when launched
        ({"accelerator": "cpu", "devices": 1, "strategy": "ddp"}, False),
        ({"devices": "bogus"}, False),  # a bad config is the caller's to report
    ],
)
def test_which_configs_ask_for_a_launched_job(not_launched: None, flags: dict, warns: bool) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert warn_if_not_launched(flags, "attach_speedups") is warns
    assert len(caught) == int(warns)
    if warns:
        assert "attach_speedups: the config asks for a distributed job" in str(caught[0].message)


def test_a_torchrun_environment_counts_as_launched(not_launched: None) -> None:
    env = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2"}
    assert not warn_if_not_launched({"accelerator": "cpu", "devices": 2}, "attach_speedups", env=env)
    with pytest.warns(UserWarning, match="attach_speedups: the config asks for a distributed job"):
        assert warn_if_not_launched({"accelerator": "cpu", "devices": 2}, "attach_speedups", env={})


# ---------------------------------------------------------------- lazy imports
def test_optional_engines_are_not_imported() -> None:
    code = (
        "import sys, ignite_speed, ignite_speed.distributed as d; "
        "d.plan_launch({'accelerator': 'cpu', 'devices': 2, 'strategy': 'deepspeed'}); "
        "d.deepspeed_config_for({'strategy': 'deepspeed_stage_3'}); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'deepspeed', 'fairscale', 'torch_xla'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- the stop controller's process group
def test_stop_group_is_reused_and_released_with_the_default_group() -> None:
    # one group per default group; destroy_process_group() frees it (no reference kept until interpreter
    # exit, where gloo's threads would be torn down late); a new default group gets a new stop group
    code = """
import gc, os, weakref, torch.distributed as dist
from ignite_speed.distributed._dist import stop_group
from ignite_speed.distributed import free_port
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
dist.init_process_group("gloo", rank=0, world_size=1)
g = stop_group()
assert g is stop_group() and g is not dist.group.WORLD
ref, world = weakref.ref(g), weakref.ref(dist.group.WORLD)
del g
dist.destroy_process_group(); gc.collect()
assert ref() is None and world() is None, (ref(), world())
assert stop_group() is None
os.environ["MASTER_PORT"] = str(free_port())
dist.init_process_group("gloo", rank=0, world_size=1)
assert stop_group() is not None and stop_group() is stop_group()
dist.destroy_process_group()
print("ok")
"""
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
