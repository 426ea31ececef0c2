"""Mixed-precision throughput: fp32 vs bf16-mixed vs 16-mixed, and ignite-speed's overhead vs plain torch.amp.

For a small conv net and a transformer block, each precision is measured twice on the same model, data and
optimizer: once with ``ignite_speed.create_trainer`` (an Ignite Engine) and once with a hand-written
``torch.autocast`` + ``GradScaler`` loop that also calls ``loss.item()`` per batch (as the trainer's default
output does). Windows of the two alternate, so clock drift hits both; each reported time is the median
per-iteration time over the timed windows, after one warm-up window each.

Needs only torch and pytorch-ignite; downloads nothing. Usage::

    python benchmarks/amp.py            # on a GPU: full sizes, about 1-2 minutes on an H100
    python benchmarks/amp.py --quick    # tiny sizes, for a CPU smoke run

A JSON summary is printed to stdout (a table goes to stderr) and written to ``$OUT/amp.json`` when ``OUT``
is set (or to ``--out``). Goals on an H100: bf16/fp16 at least 2x fp32, adapter overhead at most 2%.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import ignite  # noqa: E402
from ignite.engine import Events  # noqa: E402

from ignite_speed.step.precision import Precision  # noqa: E402
from ignite_speed.step.trainer import create_trainer, precision_of  # noqa: E402

PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")
GOAL_SPEEDUP, GOAL_OVERHEAD_PCT = 2.0, 2.0


class ConvNet(nn.Module):
    def __init__(self, width: int = 64, classes: int = 100) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for i, c_out in enumerate((width, width * 2, width * 4, width * 8)):
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=1 if i == 0 else 2, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


class TransformerBlock(nn.Module):
    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        self.block = nn.TransformerEncoderLayer(
            d_model, heads, dim_feedforward=4 * d_model, dropout=0.0, batch_first=True, norm_first=True
        )
        self.head = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(x))


def _workloads(quick: bool, device: torch.device) -> dict[str, tuple[Callable[[], nn.Module], list, Callable]]:
    g = torch.Generator().manual_seed(0)
    if quick:
        conv_bs, img, width, tf_bs, seq, d_model, heads = 8, 32, 8, 4, 32, 64, 4
    else:
        conv_bs, img, width, tf_bs, seq, d_model, heads = 256, 64, 64, 16, 512, 1024, 16

    def pool(make: Callable[[], tuple[torch.Tensor, torch.Tensor]]) -> list:
        return [tuple(t.to(device) for t in make()) for _ in range(4)]

    conv_data = pool(
        lambda: (torch.randn(conv_bs, 3, img, img, generator=g), torch.randint(0, 100, (conv_bs,), generator=g))
    )
    tf_data = pool(
        lambda: (torch.randn(tf_bs, seq, d_model, generator=g), torch.randn(tf_bs, seq, d_model, generator=g))
    )
    return {
        "convnet": (lambda: ConvNet(width), conv_data, nn.CrossEntropyLoss()),
        "transformer_block": (lambda: TransformerBlock(d_model, heads), tf_data, nn.MSELoss()),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class HandLoop:
    """The reference: what a user writes with torch.amp directly."""

    def __init__(self, model: nn.Module, loss_fn: Callable, prec: Precision, device: torch.device) -> None:
        self.model, self.loss_fn, self.device = model, loss_fn, device
        self.optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        self.dtype = prec.autocast_dtype  # the same effective choice the adapter made (bf16 for 16-mixed on CPU)
        self.scaler = torch.amp.GradScaler(device.type) if prec.scaler is not None else None

    def run(self, batches: list) -> None:
        model, opt, scaler = self.model, self.optimizer, self.scaler
        model.train()
        for x, y in batches:
            opt.zero_grad()
            with torch.autocast(self.device.type, dtype=self.dtype) if self.dtype else contextlib.nullcontext():
                loss = self.loss_fn(model(x), y)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            loss.item()


class AdapterLoop:
    """The same step through ignite_speed.create_trainer (an Ignite Engine with its events)."""

    def __init__(self, model: nn.Module, loss_fn: Callable, precision: str, device: torch.device) -> None:
        self.device = device
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # 16-mixed on CPU warns that it runs as bf16-mixed
            self.trainer = create_trainer(model, optimizer, loss_fn, {"precision": precision}, device=device)
        self.precision = precision_of(self.trainer)
        self.seconds = 0.0

        @self.trainer.on(Events.EPOCH_STARTED)
        def _start(engine: Any) -> None:
            _sync(device)
            self._t0 = time.perf_counter()

        @self.trainer.on(Events.EPOCH_COMPLETED)
        def _stop(engine: Any) -> None:
            _sync(device)
            self.seconds = time.perf_counter() - self._t0

    def run(self, batches: list) -> None:
        self.trainer.run(batches, max_epochs=1)


def _measure(
    name: str,
    build: Callable[[], nn.Module],
    data: list,
    loss_fn: Callable,
    precision: str,
    device: torch.device,
    iters: int,
    windows: int,
) -> dict[str, Any]:
    torch.manual_seed(0)
    base = build().to(device)
    if device.type == "cuda" and name == "convnet":
        base = base.to(memory_format=torch.channels_last)
        data = [(x.contiguous(memory_format=torch.channels_last), y) for x, y in data]
    adapter = AdapterLoop(copy.deepcopy(base), loss_fn, precision, device)
    hand = HandLoop(copy.deepcopy(base), loss_fn, adapter.precision, device)
    batches = [data[i % len(data)] for i in range(iters)]

    def time_hand() -> float:
        _sync(device)
        t0 = time.perf_counter()
        hand.run(batches)
        _sync(device)
        return time.perf_counter() - t0

    def time_adapter() -> float:
        adapter.run(batches)
        return adapter.seconds

    time_hand(), time_adapter()  # warm-up (cuDNN autotuning, allocator, lazy inits)
    hand_s, adapter_s = [], []
    for w in range(windows):  # alternate which goes first, so neither always follows the other
        first, second = (time_hand, time_adapter) if w % 2 == 0 else (time_adapter, time_hand)
        a, b = first(), second()
        hand_s.append(a if first is time_hand else b)
        adapter_s.append(b if first is time_hand else a)
    hand_ms = statistics.median(hand_s) / iters * 1e3
    adapter_ms = statistics.median(adapter_s) / iters * 1e3
    batch_size = data[0][0].shape[0]
    return {
        "model": name,
        "precision": precision,
        "effective_precision": adapter.precision.effective_precision,
        "batch_size": batch_size,
        "hand_ms_per_iter": round(hand_ms, 4),
        "adapter_ms_per_iter": round(adapter_ms, 4),
        "overhead_pct": round((adapter_ms / hand_ms - 1) * 100, 2),
        "adapter_samples_per_s": round(batch_size / adapter_ms * 1e3, 1),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few windows (CPU smoke run)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--iters", type=int, default=None, help="iterations per timed window")
    parser.add_argument("--windows", type=int, default=None, help="timed windows per measurement (median taken)")
    parser.add_argument("--models", default="convnet,transformer_block")
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--out", default=None, help="JSON path (default: $OUT/amp.json when OUT is set)")
    parser.add_argument(
        "--no-tf32",
        action="store_true",
        help="true fp32 baseline: turn off cuDNN's TF32 convolutions (on by default in torch)",
    )
    args = parser.parse_args(argv)
    if args.no_tf32:
        torch.backends.cudnn.allow_tf32 = False

    device = torch.device(args.device)
    iters = args.iters or (3 if args.quick else 25)
    windows = args.windows or (3 if args.quick else 7)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    workloads = _workloads(args.quick, device)
    results = []
    for name in args.models.split(","):
        build, data, loss_fn = workloads[name]
        for precision in args.precisions.split(","):
            if precision == "bf16-mixed" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
                continue
            r = _measure(name, build, data, loss_fn, precision, device, iters, windows)
            results.append(r)
            if device.type == "cuda":
                torch.cuda.empty_cache()  # the measurement's models are gone; start the next one clean
            print(
                f"{name:18s} {precision:11s} hand {r['hand_ms_per_iter']:9.3f} ms  adapter "
                f"{r['adapter_ms_per_iter']:9.3f} ms  overhead {r['overhead_pct']:+6.2f}%",
                file=sys.stderr,
            )

    for r in results:  # speed-up of each precision over fp32 on the same model (hand-written loops)
        base = next((b for b in results if b["model"] == r["model"] and b["precision"] == "32-true"), None)
        r["speedup_vs_fp32"] = round(base["hand_ms_per_iter"] / r["hand_ms_per_iter"], 3) if base else None
    low = [r for r in results if r["precision"] != "32-true"]
    summary = {
        "benchmark": "amp",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "ignite": ignite.__version__,
        "quick": args.quick,
        "iters_per_window": iters,
        "windows": windows,
        "settings": {
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "optimizer": "SGD(momentum=0.9)",
            "convnet_channels_last": device.type == "cuda",
        },
        "goals": {
            "min_speedup_vs_fp32": GOAL_SPEEDUP,
            "max_overhead_pct": GOAL_OVERHEAD_PCT,
            "speedup_met": all((r["speedup_vs_fp32"] or 0) >= GOAL_SPEEDUP for r in low) if low else None,
            "overhead_met": all(r["overhead_pct"] <= GOAL_OVERHEAD_PCT for r in results),
        },
        "results": results,
    }
    text = json.dumps(summary, indent=2)
    print(text)
    out = args.out or (os.path.join(os.environ["OUT"], "amp.json") if os.environ.get("OUT") else None)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
    return summary


if __name__ == "__main__":
    main()
