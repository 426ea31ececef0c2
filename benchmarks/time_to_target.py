"""Time to the same accuracy: the demo's run through pytorch-lightning 2.6.6 and through ignite-speed.

Both train the demo's model (``ignite_speed.demo``: an MLP on scikit-learn's bundled digits, no download)
with the same seed, the same batches in the same order, the same optimizer and learning-rate schedule,
and the demo's flags: ``max_epochs=40``, ``max_time="00:00:02:00"``, ``val_check_interval=0.5``, the
sanity check of 2 batches and early stopping on ``val_acc`` (``mode="max"``, ``stopping_threshold=0.99``,
``patience=6``). Checked: both stop in the same epoch for the same reason, with the same validation
accuracies, and their test accuracies are within 0.5 points. Measured: the wall time of ``trainer.run``
against ``Trainer.fit`` (sanity check, training and validation) and of the whole job (set-up, training,
test), runs interleaved, next to ignite-speed with ``batched_fetch=False`` (the training loop alone) and a
hand-written PyTorch loop of the same epochs and validation runs, over the loaders as they are and over
``with_batched_fetch`` copies (the torch work, with no framework); the best of them (the cost without
interference from other work on the machine) and the median are reported.

    python benchmarks/time_to_target.py              # 9 interleaved repeats of each, under a minute on 2 cores
    python benchmarks/time_to_target.py --repeats 1  # a quick look

Goal (issue "Time to result"): ignite-speed's wall time <= 0.5x Lightning's. Measured 0.44-0.45x (fit, best
of 9; README), of which ``batched_fetch`` brings the step from 0.59-0.63x.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
import warnings
from typing import Any

import torch

from ignite_speed import SpeedConfig, with_batched_fetch
from ignite_speed.demo import DEMO_DEFAULTS, make_loaders, make_model, train_with_speedups

MONITOR = "val_acc"


def accuracy(model: torch.nn.Module, data: Any) -> float:
    """Percent of correctly classified samples of ``data``."""
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in data:
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
    return 100.0 * correct / total


def run_ignite_speed(seed: int, batched_fetch: bool = True) -> dict[str, Any]:
    t0 = time.perf_counter()
    cfg = SpeedConfig.from_any(DEMO_DEFAULTS, batched_fetch=batched_fetch)
    result, speedups = train_with_speedups(cfg, seed=seed, progress=False)
    total = time.perf_counter() - t0
    report = speedups.report()
    return {
        "fit_seconds": result.seconds,
        "total_seconds": total,
        "epochs": result.epochs,
        "stopped_epoch": speedups.early_stopping.stopped_epoch,
        "stop_reason": result.stop_reason,
        "val_runs": result.val_runs,
        "val_acc": [v.value for v in report.validations],
        "test_acc": result.test_acc,
    }


def run_torch(seed: int, epochs: int, batched_fetch: bool = False) -> dict[str, Any]:
    """The torch work: a hand-written PyTorch loop over the same batches for the same ``epochs``, validating at
    the same batches (every half epoch) with no early-stopping logic, no sanity check and no framework."""
    t0 = time.perf_counter()
    train_loader, val_loader, test_loader = make_loaders(seed)
    if batched_fetch:
        train_loader, val_loader, test_loader = (with_batched_fetch(d) for d in (train_loader, val_loader, test_loader))
    net, optimizer, scheduler = make_model(seed)
    loss_fn = torch.nn.CrossEntropyLoss()
    half = len(train_loader) // 2
    val_acc = []
    t_fit = time.perf_counter()
    for _ in range(epochs):
        for i, (x, y) in enumerate(train_loader, 1):
            net.train()
            optimizer.zero_grad()
            loss = loss_fn(net(x), y)
            loss.backward()
            optimizer.step()
            loss.item()
            if i % half == 0:
                val_acc.append(accuracy(net, val_loader) / 100.0)
        scheduler.step()
    fit_seconds = time.perf_counter() - t_fit
    test_acc = accuracy(net, test_loader)
    return {
        "fit_seconds": fit_seconds,
        "total_seconds": time.perf_counter() - t0,
        "epochs": epochs,
        "stopped_epoch": epochs - 1,
        "stop_reason": "fixed epochs",
        "val_runs": len(val_acc),
        "val_acc": val_acc,
        "test_acc": test_acc,
    }


def run_lightning(seed: int) -> dict[str, Any]:
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import EarlyStopping

    t0 = time.perf_counter()
    train_loader, val_loader, test_loader = make_loaders(seed)
    net, optimizer, scheduler = make_model(seed)
    es_flags = dict(DEMO_DEFAULTS["early_stopping"])

    class Digits(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.loss_fn = torch.nn.CrossEntropyLoss()
            self.correct = self.seen = 0
            self.val_acc: list[float] = []

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            return self.loss_fn(self.net(x), y)

        def on_validation_epoch_start(self) -> None:
            self.correct = self.seen = 0

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            self.correct += int((self.net(x).argmax(1) == y).sum())
            self.seen += len(y)

        def on_validation_epoch_end(self) -> None:
            acc = self.correct / self.seen
            self.log(MONITOR, acc)
            if not self.trainer.sanity_checking:
                self.val_acc.append(acc)

        def configure_optimizers(self) -> Any:
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    module = Digits()
    early_stopping = EarlyStopping(**es_flags)
    flags = {k: v for k, v in DEMO_DEFAULTS.items() if k != "early_stopping"}
    trainer = pl.Trainer(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
        callbacks=[early_stopping],
        **flags,
    )
    t_fit = time.perf_counter()
    trainer.fit(module, train_loader, val_loader)
    fit_seconds = time.perf_counter() - t_fit
    test_acc = accuracy(net, test_loader)
    total = time.perf_counter() - t0
    reason = "early_stopping" if early_stopping.stopped_epoch or trainer.should_stop else "max_epochs"
    return {
        "fit_seconds": fit_seconds,
        "total_seconds": total,
        "epochs": trainer.current_epoch,
        "stopped_epoch": early_stopping.stopped_epoch,
        "stop_reason": reason,
        "val_runs": len(module.val_acc),
        "val_acc": module.val_acc,
        "test_acc": test_acc,
    }


LABELS = {
    "ignite_speed": "ignite-speed",
    "lightning": "Lightning",
    "ignite_speed_unbatched": "ignite-speed, batched_fetch=False",
    "plain_pytorch": "plain PyTorch",
    "plain_pytorch_batched": "plain PyTorch, batched fetch",
}


def named_runs(*runs: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    return list(zip(LABELS, runs))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=9, help="interleaved runs of each (default: 9)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    try:
        import pytorch_lightning  # noqa: F401
    except ImportError:
        print("needs pytorch-lightning 2.6.6: pip install 'ignite-speed[lightning]'", file=sys.stderr)
        return 2
    for name in ("lightning", "pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)  # as the demo: a tiny model, steady timings on a busy machine

    run_ignite_speed(args.seed)  # warm-up of both (first-call costs of torch and of each framework)
    run_lightning(args.seed)
    ours, theirs, unbatched, floor, floor_batched = [], [], [], [], []
    for _ in range(args.repeats):
        ours.append(run_ignite_speed(args.seed))
        theirs.append(run_lightning(args.seed))
        unbatched.append(run_ignite_speed(args.seed, batched_fetch=False))
        floor.append(run_torch(args.seed, ours[-1]["epochs"]))
        floor_batched.append(run_torch(args.seed, ours[-1]["epochs"], batched_fetch=True))

    a, b = ours[-1], theirs[-1]

    def stats(runs: list[dict[str, Any]], key: str) -> dict[str, float]:
        values = [r[key] for r in runs]
        return {"best": min(values), "median": statistics.median(values)}

    timing = {
        name: {key: stats(runs, key) for key in ("fit_seconds", "total_seconds")}
        for name, runs in named_runs(ours, theirs, unbatched, floor, floor_batched)
    }
    same_curve = len(a["val_acc"]) == len(b["val_acc"]) and all(
        abs(x - y) < 1e-9 for x, y in zip(a["val_acc"], b["val_acc"])
    )
    ratios = {
        f"{key}_{stat}": timing["ignite_speed"][key][stat] / timing["lightning"][key][stat]
        for key in ("fit_seconds", "total_seconds")
        for stat in ("best", "median")
    }
    fit_ratio_to_lightning = {
        name: timing[name]["fit_seconds"]["best"] / timing["lightning"]["fit_seconds"]["best"] for name in timing
    }
    result = {
        "ignite_speed": {k: v for k, v in a.items() if k not in ("val_acc", "fit_seconds", "total_seconds")},
        "lightning": {k: v for k, v in b.items() if k not in ("val_acc", "fit_seconds", "total_seconds")},
        **{
            name: {k: v for k, v in runs[-1].items() if k not in ("val_acc", "fit_seconds", "total_seconds")}
            for name, runs in named_runs(ours, theirs, unbatched, floor, floor_batched)[2:]
        },
        "timing": timing,
        "same_stop_epoch": a["stopped_epoch"] == b["stopped_epoch"] and a["epochs"] == b["epochs"],
        "same_val_acc_per_run": same_curve,
        "test_acc_gap_points": a["test_acc"] - b["test_acc"],
        "ratio": ratios,
        "fit_ratio_to_lightning_best": fit_ratio_to_lightning,
        "repeats": args.repeats,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{'':30}{'fit best/median (s)':>21}{'job best/median (s)':>21}{'epochs':>8}{'stopped':>9}"
            f"{'val runs':>10}{'test acc':>10}  stop"
        )
        for key, name in LABELS.items():
            r, t = result[key], timing[key]
            print(
                f"{name:30}{t['fit_seconds']['best']:11.3f} /{t['fit_seconds']['median']:7.3f}"
                f"{t['total_seconds']['best']:12.3f} /{t['total_seconds']['median']:7.3f}{r['epochs']:8d}"
                f"{r['stopped_epoch']:9d}{r['val_runs']:10d}{r['test_acc']:9.2f}%  {r['stop_reason']}"
            )
        print(
            f"same stop epoch: {result['same_stop_epoch']}; same val_acc in every validation run: {same_curve}; "
            f"test accuracy gap {result['test_acc_gap_points']:+.2f} points (goal: within 0.5)"
        )
        print(
            f"wall-time ratio ignite-speed / Lightning (goal <= 0.50), best of {args.repeats} interleaved runs: "
            f"fit {ratios['fit_seconds_best']:.2f}, whole job {ratios['total_seconds_best']:.2f}; medians: fit "
            f"{ratios['fit_seconds_median']:.2f}, whole job {ratios['total_seconds_median']:.2f}"
        )
        print(
            "fit time against Lightning's, best of each: "
            + ", ".join(
                f"{LABELS[name]} {ratio:.2f}" for name, ratio in fit_ratio_to_lightning.items() if name != "lightning"
            )
        )
    ok = result["same_stop_epoch"] and abs(result["test_acc_gap_points"]) <= 0.5
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
