"""Per-step overhead of ``attach_speedups`` vs bare Ignite and vs Lightning's Trainer, and batches fetched
vs used under limits.

All three train the same tiny MLP on the same data for the same number of batches, with the same
validation runs (every half epoch). By default the batches are ready-made tensors in memory, so the
figures compare the frameworks' own per-step cost; ``--data dataloader`` feeds them through a
``DataLoader`` instead, whose collation cost all three share. The figures are medians of interleaved repeats, measured in
one process, so they compare like with like on whatever machine runs them.

    python benchmarks/overhead.py            # about a minute on 2 CPU cores
    python benchmarks/overhead.py --data dataloader
    python benchmarks/overhead.py --quick    # a few seconds (smoke test)

Goals (issue 2): speedups <= 1.03x bare Ignite; speedups <= 0.33x Lightning's step time;
batches fetched <= batches used + the DataLoader's prefetch.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
import warnings
from typing import Any

import torch
from ignite.engine import Engine, Events
from torch.utils.data import DataLoader, Dataset, TensorDataset

FLAGS: dict[str, Any] = dict(
    max_epochs=3,
    min_epochs=1,
    max_steps=10_000,
    min_steps=1,
    max_time="00:01:00:00",
    limit_train_batches=1.0,
    limit_val_batches=4,
    val_check_interval=0.5,
    check_val_every_n_epoch=1,
    num_sanity_val_steps=0,
    early_stopping={
        "monitor": "val_loss",
        "patience": 1000,
        "check_finite": True,
        "stopping_threshold": -1.0,
        "divergence_threshold": 1e9,
    },
)


class Batches:
    """Ready-made batches in memory: what each framework costs per step, without a DataLoader's collation."""

    def __init__(self, items: list) -> None:
        self.items = items

    def __iter__(self) -> Any:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


DATA_KIND = "memory"  # or "dataloader" (--data): the same batches through DataLoader(TensorDataset)


def make_data(n_batches: int, batch: int = 32, width: int = 16) -> tuple[Any, Any]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_batches * batch, width, generator=g)
    y = x.sum(1, keepdim=True)
    if DATA_KIND == "dataloader":
        train = DataLoader(TensorDataset(x, y), batch_size=batch)
        val = DataLoader(TensorDataset(x[: 4 * batch], y[: 4 * batch]), batch_size=batch)
        return train, val
    items = [(x[i : i + batch], y[i : i + batch]) for i in range(0, len(x), batch)]
    return Batches(items), Batches(items[:4])


def make_model(width: int = 16) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(width, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))


def ignite_engines(model: torch.nn.Module) -> tuple[Engine, Engine]:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def train_step(engine: Engine, batch: Any) -> float:
        x, y = batch
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    def eval_step(engine: Engine, batch: Any) -> float:
        with torch.no_grad():
            x, y = batch
            return torch.nn.functional.mse_loss(model(x), y).item()

    evaluator = Engine(eval_step)

    @evaluator.on(Events.COMPLETED)
    def _metric(engine: Engine) -> None:
        engine.state.metrics["val_loss"] = float(engine.state.output)

    return Engine(train_step), evaluator


def run_bare(n_batches: int) -> float:
    train, val = make_data(n_batches)
    trainer, evaluator = ignite_engines(make_model())
    half = n_batches // 2

    @trainer.on(Events.ITERATION_COMPLETED(every=half))
    def _validate(engine: Engine) -> None:
        evaluator.state.max_epochs = None
        evaluator.run(val, max_epochs=1, epoch_length=4)

    t0 = time.perf_counter()
    trainer.run(train, max_epochs=FLAGS["max_epochs"])
    return time.perf_counter() - t0


def run_speedups(n_batches: int) -> float:
    from ignite_speed import attach_speedups

    train, val = make_data(n_batches)
    trainer, evaluator = ignite_engines(make_model())
    sp = attach_speedups(trainer, evaluator, FLAGS, val_data=val)
    t0 = time.perf_counter()
    trainer.run(train)
    elapsed = time.perf_counter() - t0
    assert sp.progress.total_batches == FLAGS["max_epochs"] * n_batches and sp.progress.val_runs == 6, sp.progress
    return elapsed


def run_lightning(n_batches: int) -> float | None:
    try:
        import pytorch_lightning as pl
        from pytorch_lightning.callbacks import EarlyStopping
    except ImportError:
        return None
    for name in ("lightning", "pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    train, val = make_data(n_batches)

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = make_model()

        def training_step(self, batch: Any, i: int) -> torch.Tensor:
            x, y = batch
            return torch.nn.functional.mse_loss(self.net(x), y)

        def validation_step(self, batch: Any, i: int) -> None:
            x, y = batch
            self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=1e-3)

    flags = {k: v for k, v in FLAGS.items() if k != "early_stopping"}
    trainer = pl.Trainer(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
        callbacks=[EarlyStopping(**FLAGS["early_stopping"])],
        **flags,
    )
    t0 = time.perf_counter()
    trainer.fit(Module(), train, val)
    return time.perf_counter() - t0


class CountingDataset(Dataset):
    def __init__(self, n: int) -> None:
        self.n, self.fetched = n, 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.fetched += 1
        return torch.ones(4), torch.ones(1)


def fetched_vs_used(limit: int = 5, epochs: int = 4, batch: int = 8, workers: int = 0) -> dict[str, int]:
    """Samples fetched from the dataset vs samples in the batches trained on (no workers: exact count)."""
    from ignite_speed import attach_speedups

    ds = CountingDataset(100 * batch)
    data = DataLoader(ds, batch_size=batch, num_workers=workers)
    trainer = Engine(lambda e, b: None)
    attach_speedups(trainer, None, dict(limit_train_batches=limit, max_epochs=epochs))
    trainer.run(data)
    return {"batches_used": limit * epochs, "batches_fetched": ds.fetched // batch}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batches", type=int, default=1000)
    parser.add_argument(
        "--data",
        choices=["memory", "dataloader"],
        default="memory",
        help="in-memory batches (framework cost only) or a DataLoader over a TensorDataset",
    )
    args = parser.parse_args(argv)
    global DATA_KIND
    DATA_KIND = args.data
    warnings.filterwarnings("ignore")
    logging.getLogger("ignite").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    n, repeats = (40, 2) if args.quick else (args.batches, args.repeats)
    run_bare(n), run_speedups(n)  # warm-up (imports, allocator)
    bare, speed, light = [], [], []
    for _ in range(repeats):  # interleaved, so drifts in machine load hit all three alike
        bare.append(run_bare(n))
        speed.append(run_speedups(n))
        lt = run_lightning(n)
        if lt is not None:
            light.append(lt)
    steps = FLAGS["max_epochs"] * n
    result: dict[str, Any] = {
        "data": DATA_KIND,
        "steps_per_run": steps,
        "bare_ignite_us_per_step": 1e6 * statistics.median(bare) / steps,
        "speedups_us_per_step": 1e6 * statistics.median(speed) / steps,
        "speedups_vs_bare": statistics.median(speed) / statistics.median(bare),
    }
    if light:
        result["lightning_us_per_step"] = 1e6 * statistics.median(light) / steps
        result["speedups_vs_lightning"] = statistics.median(speed) / statistics.median(light)
        result["bare_vs_lightning"] = statistics.median(bare) / statistics.median(light)
    result["fetch"] = fetched_vs_used()
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
