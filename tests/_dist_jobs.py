"""Multi-process jobs for tests/test_distributed_mp.py, test_fairscale.py and test_deepspeed.py.

Run as a script (``python tests/_dist_jobs.py JOB OUT_DIR [options]``) in a subprocess, so the test
can bound it with a timeout. Every function spawned on the ranks lives at module level (picklable).
Rank 0 writes ``OUT_DIR/<job>.json``; the tests assert on it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import sys
import warnings
from typing import Any

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ignite.distributed as idist  # noqa: E402
from ignite.engine import Engine, Events  # noqa: E402
from ignite.handlers import Checkpoint, DiskSaver  # noqa: E402
from torch.utils.data import TensorDataset  # noqa: E402

from ignite_speed.distributed import (  # noqa: E402
    attach_set_epoch,
    checkpoint_objects,
    launch,
    prepare,
    prepare_dataloader,
)
from ignite_speed.step.trainer import create_trainer  # noqa: E402

TIMEOUT = datetime.timedelta(seconds=60)
EPOCHS = 3
# The flags of the create_trainer jobs. With 4 batches per rank and epoch, windows of 3 batches end at the 3rd
# and the last (4th) batch of each epoch: 2 optimizer steps per epoch, so max_steps=5 stops at the 3rd batch of
# epoch 3 (iteration 11). DeepSpeed's own micro-step counter would step at batches 3, 6, 9, ... instead.
TRAINER_FLAGS = {"accumulate_grad_batches": 3, "gradient_clip_val": 0.1, "max_steps": 5}


class Unsized:
    """A loader seen without a length, as Ignite sees an iterable dataset: the first epoch's length is known
    only when it ends, so its last window is closed at EPOCH_COMPLETED."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def __iter__(self) -> Any:
        return iter(self.loader)


def _step_counter(model: Any, opt: Any) -> Any:
    """A function returning the number of optimizer steps really taken so far."""
    if hasattr(model, "global_steps"):  # DeepSpeed engine
        return lambda: int(model.global_steps)
    count = [0]
    opt.register_step_post_hook(lambda *_: count.__setitem__(0, count[0] + 1))
    return lambda: count[0]


def make_data(n: int = 64) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=g)
    y = (x @ torch.linspace(-1, 1, 8)).unsqueeze(1) + 0.1 * torch.randn(n, 1, generator=g)
    return TensorDataset(x, y)


def make_model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))


def flat_params(state: dict[str, torch.Tensor]) -> list[float]:
    return torch.cat([v.detach().float().flatten().cpu() for _, v in sorted(state.items())]).tolist()


def train(
    cfg: dict[str, Any],
    ckpt_dir: str,
    *,
    resume_from: str | None = None,
    ds_engine_step: bool = False,
    lr: float = 0.05,
    speedups: bool = False,
    create: bool = False,
    unsized: bool = False,
    save_at: int | None = None,
) -> dict[str, Any]:
    """Train EPOCHS epochs with ``cfg``'s strategy; save a checkpoint after epoch 2; optionally start
    from ``resume_from``. With ``speedups`` the trainer runs under ``attach_speedups`` and its state is
    checkpointed too. With ``create`` the documented path ``prepare`` + ``create_trainer`` (SGD with
    momentum, ``cfg``'s accumulation and clipping) replaces the hand-written step; ``unsized`` hides the
    loader's length. ``save_at``: the checkpoint after that iteration instead (inside an accumulation window,
    say). Returns per-epoch mean losses (all ranks; a last partial epoch too), the final full
    parameters and, with ``create``, the optimizer steps taken and counted."""
    name = cfg.pop("_name", cfg["strategy"])
    if create:
        model, opt = prepare(make_model(), lambda p: torch.optim.SGD(p, lr=lr, momentum=0.9), cfg)
    else:
        model, opt = prepare(make_model(), lambda p: torch.optim.Adam(p, lr=lr), cfg)
    loader = prepare_dataloader(make_data(), cfg, batch_size=8, shuffle=True)
    device = next(iter(model.parameters())).device
    loss_fn = nn.MSELoss()

    def step(engine: Engine, batch: Any) -> float:
        model.train()
        x, y = (t.to(device) for t in batch)
        if ds_engine_step:
            loss = loss_fn(model(x), y)
            model.backward(loss)
            model.step()
        else:
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
        return float(loss.item())

    trainer = create_trainer(model, opt, loss_fn, cfg) if create else Engine(step)
    steps_taken = _step_counter(model, opt)
    attach_set_epoch(trainer, loader)
    epoch_losses: list[float] = []
    running: list[float] = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: running.append(e.state.output))

    @trainer.on(Events.EPOCH_COMPLETED)
    @trainer.on(Events.COMPLETED)
    def _epoch_done(engine: Engine) -> None:
        if running:  # (COMPLETED: an epoch that max_steps ended early)
            mean = idist.all_reduce(sum(running) / len(running)) / idist.get_world_size()
            epoch_losses.append(float(mean))
            running.clear()

    objects = checkpoint_objects(model, opt, directory=os.path.join(ckpt_dir, "ds"))
    to_save = {"trainer": trainer, **objects}
    sp = None
    if speedups:
        from ignite_speed.speedups import attach_speedups

        sp = attach_speedups(trainer, cfg={**cfg, "max_epochs": EPOCHS} if create else {"max_epochs": EPOCHS})
        to_save["speedups"] = sp
    saver = Checkpoint(to_save, DiskSaver(ckpt_dir, require_empty=False), filename_prefix=name, n_saved=1)
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED(once=save_at) if save_at else Events.EPOCH_COMPLETED(once=2), saver
    )
    if resume_from is not None:
        Checkpoint.load_objects(to_load=to_save, checkpoint=resume_from)
    steps_before = steps_taken()
    trainer.run(Unsized(loader) if unsized else loader, max_epochs=EPOCHS)
    if "deepspeed" in objects:
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(model.module.parameters())):
            full = {k: v.clone() for k, v in model.module.state_dict().items()}
    else:
        full = objects["model"].state_dict()
    sharded = cfg["strategy"].startswith(("fsdp", "deepspeed_stage_3"))
    replicas_equal = (
        None if sharded else _replicas_equal(idist.all_gather(torch.tensor(flat_params(_local_params(model)))))
    )
    return {
        "losses": epoch_losses,
        "params": flat_params(full) if idist.get_rank() == 0 else None,
        "checkpoint": os.path.join(ckpt_dir, saver.last_checkpoint) if saver.last_checkpoint else None,
        "replicas_equal": replicas_equal,
        "iteration": trainer.state.iteration,
        "steps_taken": steps_taken() - steps_before,  # in this run (a resumed one starts after the checkpoint)
        "global_step": sp.global_step if sp is not None else None,
        "stop_reason": str(sp.stop_reason.value) if sp is not None and sp.stop_reason is not None else None,
    }


def _local_params(model: nn.Module) -> dict[str, torch.Tensor]:
    out = {}
    for name, p in model.named_parameters():
        local = p.to_local() if hasattr(p, "to_local") else p
        out[name] = local
    return out


def _replicas_equal(gathered: torch.Tensor) -> bool:
    n = idist.get_world_size()
    chunks = gathered.reshape(n, -1) if gathered.numel() % n == 0 else None
    if chunks is None:
        return False
    return all(torch.equal(chunks[0], chunks[i]) for i in range(1, n))


def job_strategies(local_rank: int, out_dir: str, strategies: list[str], speedups: bool = False) -> None:
    base = {"accelerator": "cpu", "devices": 2}
    results: dict[str, Any] = {"world_size": idist.get_world_size(), "backend": idist.backend()}
    # prepare_dataloader: each rank reads its own half, the union is the whole data set.
    loader = prepare_dataloader(make_data(), base, batch_size=8, shuffle=True)
    seen = idist.all_gather(torch.cat([b[0][:, 0] for b in loader]))
    results["shard_sizes"] = len(loader.sampler)  # type: ignore[arg-type]
    results["union_size"] = len({round(v, 6) for v in seen.tolist()})
    for strategy in strategies:
        cfg = {**base, "strategy": strategy}
        if strategy == "deepspeed_stage_0":  # plain data parallel through DeepSpeed
            cfg = {**base, "strategy": "deepspeed", "deepspeed_config": {"zero_optimization": {"stage": 0}}}
        ckpt = os.path.join(out_dir, strategy)
        cfg["_name"] = strategy
        run = train(cfg, ckpt, ds_engine_step=strategy.startswith("deepspeed"), speedups=speedups)
        idist.barrier()
        resumed = train(
            cfg,
            os.path.join(out_dir, strategy + "_resumed"),
            resume_from=run["checkpoint"],
            ds_engine_step=strategy.startswith("deepspeed"),
            speedups=speedups,
        )
        results[strategy] = {"run": run, "resumed": resumed}
    if idist.get_rank() == 0:
        with open(os.path.join(out_dir, "strategies.json"), "w") as fh:
            json.dump(results, fh)


def job_trainer(local_rank: int, out_dir: str, strategies: list[str]) -> None:
    """The documented path ``prepare`` + ``create_trainer`` + ``attach_speedups`` under each strategy, with
    TRAINER_FLAGS: a run with a checkpoint after epoch 2, the run resumed from it, and a run on a loader
    without a length."""
    from ignite_speed.distributed import warn_if_not_launched

    base = {"accelerator": "cpu", "devices": 2, **TRAINER_FLAGS}
    results: dict[str, Any] = {"world_size": idist.get_world_size(), "backend": idist.backend()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for strategy in strategies:
            cfg: dict[str, Any] = {**base, "strategy": strategy}
            if strategy == "deepspeed_stage_0":
                cfg = {**base, "strategy": "deepspeed", "deepspeed_config": {"zero_optimization": {"stage": 0}}}
            ckpt = os.path.join(out_dir, strategy)
            run = train({**cfg, "_name": strategy}, ckpt, create=True, speedups=True)
            idist.barrier()
            resumed = train(
                {**cfg, "_name": strategy}, ckpt + "_resumed", resume_from=run["checkpoint"], create=True, speedups=True
            )
            unsized = train({**cfg, "_name": strategy}, ckpt + "_unsized", create=True, speedups=True, unsized=True)
            results[strategy] = {"run": run, "resumed": resumed, "unsized": unsized}
            if strategy == "ddp":
                # a checkpoint inside an accumulation window (iteration 6: batch 2 of the window of batches 1-3 of
                # epoch 2): each rank replays its own window batches (no_sync) on resume
                mid = train({**cfg, "_name": "ddp_mid"}, ckpt + "_mid", create=True, speedups=True, save_at=6)
                idist.barrier()
                results[strategy]["mid_window"] = mid
                results[strategy]["resumed_mid_window"] = train(
                    {**cfg, "_name": "ddp_mid"},
                    ckpt + "_mid_resumed",
                    resume_from=mid["checkpoint"],
                    create=True,
                    speedups=True,
                )
    # devices=2 inside the launched job: prepare, create_trainer (and attach_speedups) stay silent
    results["launch_warnings"] = [str(w.message) for w in caught if "ignite_speed.launch" in str(w.message)]
    results["warned_inside_job"] = warn_if_not_launched({**base, "strategy": "fsdp"}, "attach_speedups")
    if idist.get_rank() == 0:
        with open(os.path.join(out_dir, "trainer.json"), "w") as fh:
            json.dump(results, fh)


def job_ranks(local_rank: int, out_dir: str, name: str) -> None:
    """DDP on whatever world ``launch`` made: ranks, process identity, replica equality, a stop that
    one rank requests is taken by every rank on the same iteration."""
    cfg = {"accelerator": "cpu", "strategy": "ddp"}
    model, opt = prepare(make_model(), lambda p: torch.optim.SGD(p, lr=0.05), cfg)
    loader = prepare_dataloader(make_data(), cfg, batch_size=4, shuffle=True)

    def step(engine: Engine, batch: Any) -> float:
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(batch[0]), batch[1])
        loss.backward()
        opt.step()
        return float(loss.item())

    trainer = Engine(step)
    attach_set_epoch(trainer, loader)
    stopped_at = None
    try:
        from ignite_speed.speedups import attach_speedups

        speed = attach_speedups(trainer, cfg={"max_epochs": 5})
        speed.loop.sync_every_n_batches = 2  # the ranks agree on stop requests every 2 batches

        @trainer.on(Events.ITERATION_COMPLETED(once=6))
        def _ask(engine: Engine) -> None:
            if idist.get_rank() == 0:
                speed.request_stop("rank 0 asks")
    except ImportError:
        speed = None
    trainer.run(loader, max_epochs=5)
    stopped_at = trainer.state.iteration
    record = {
        "rank": idist.get_rank(),
        "local_rank": local_rank,
        "world_size": idist.get_world_size(),
        "node_rank": idist.get_node_rank(),
        "nnodes": idist.get_nnodes(),
        "main_process": multiprocessing.current_process().name == "MainProcess",
        "stopped_at": stopped_at,
        "stop_reason": str(speed.stop_reason.value) if speed is not None else None,
        "params": flat_params(model.module.state_dict() if hasattr(model, "module") else model.state_dict()),
    }
    with open(os.path.join(out_dir, f"{name}_rank{idist.get_rank()}.json"), "w") as fh:
        json.dump(record, fh)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("job")
    parser.add_argument("out_dir")
    parser.add_argument("--strategies", default="ddp,zero,fsdp")
    parser.add_argument("--node-rank", type=int, default=None)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--speedups", action="store_true", help="strategies: train under attach_speedups")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.job == "strategies":
        launch(
            {"accelerator": "cpu", "devices": 2},
            job_strategies,
            args.out_dir,
            args.strategies.split(","),
            args.speedups,
            timeout=TIMEOUT,
        )
    elif args.job == "trainer":
        launch(
            {"accelerator": "cpu", "devices": 2}, job_trainer, args.out_dir, args.strategies.split(","), timeout=TIMEOUT
        )
    elif args.job == "multinode":
        launch(
            {
                "accelerator": "cpu",
                "devices": 1,
                "num_nodes": 2,
                "node_rank": args.node_rank,
                "master_addr": "127.0.0.1",
                "master_port": args.port,
            },
            job_ranks,
            args.out_dir,
            "multinode",
            timeout=TIMEOUT,
        )
    elif args.job == "torchrun":
        launch({"accelerator": "cpu", "devices": 2}, job_ranks, args.out_dir, "torchrun", timeout=TIMEOUT)
    else:
        raise SystemExit(f"unknown job {args.job!r}")


if __name__ == "__main__":
    main()
