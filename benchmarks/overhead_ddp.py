"""Per-step overhead of ``attach_speedups`` in a 2-process DDP job (gloo, CPU) on a tiny training step.

Two processes train ``DistributedDataParallel(Linear(8, 1))`` (batch 16, plain SGD, one thread each,
the same ready-made batches in memory on both ranks) through bare Ignite and through Ignite with
``attach_speedups``, for the same number of batches with the same validation runs. Configs:

* every loop flag (``benchmarks/overhead.py``'s ``FLAGS``: limits, ``max_time``, ``min_*``, validation
  every half epoch, early stopping) plus ``terminate_on_nan=True``: 3 epochs, 6 validation runs of 4
  batches, against bare Ignite validating on the same schedule;
* ``{"max_epochs": 1, "limit_val_batches": 0}`` (evaluator and validation data given, validation off):
  1 epoch, against bare Ignite without validation.

The bare and the ``attach_speedups`` runs alternate in one job (a barrier before each run, so that both
ranks start it together) and the table reports rank 0's medians over the repeats; "added" is the
median of the per-repeat differences; "min ratio" compares each side's fastest run. The process group has a timeout and every rank a deadline, so a
lost or stuck rank ends the job with an error instead of hanging it.

    python benchmarks/overhead_ddp.py           # about 1-2 minutes on 2 CPU cores
    python benchmarks/overhead_ddp.py --quick   # a few seconds after start-up (smoke test)

Goal: ``attach_speedups`` with every loop flag on <= 1.03x the bare DDP step time.
"""

from __future__ import annotations

import argparse
import datetime
import faulthandler
import gc
import json
import logging
import os
import sys
import tempfile
import warnings
from typing import Any

import torch
from overhead_tiny import ALL_FLAGS, Variant, measure, print_table, tiny_model

VARIANTS: list[Variant] = [
    Variant("all flags + terminate_on_nan", ALL_FLAGS, validates=True),
    Variant("max_epochs=1, limit_val_batches=0", {"max_epochs": 1, "limit_val_batches": 0}, evaluator=True),
]


def ddp_model() -> torch.nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    # Same seed on every rank (DDP also broadcasts rank 0's weights), so both ranks do identical work.
    return DistributedDataParallel(tiny_model())


def worker(local_rank: int, total_batches: int, repeats: int, deadline_s: float, out_path: str) -> None:
    """One rank: the interleaved measurements; rank 0 writes its rows to ``out_path`` as JSON."""
    import ignite.distributed as idist

    # Hard stop for anything the process group's timeout does not cover (a rank stuck outside a
    # collective): dump every thread's stack and exit, which makes the launcher end the other rank.
    faulthandler.dump_traceback_later(deadline_s, exit=True)
    warnings.filterwarnings("ignore")
    logging.getLogger("ignite").setLevel(logging.ERROR)
    torch.set_num_threads(1)  # two processes share the two cores
    try:
        rows = measure(VARIANTS, total_batches, repeats, make_model=ddp_model, barrier=idist.barrier)
    finally:
        # measure() froze the collector's view of the objects alive after its warm-up; hand them back so
        # that the launcher's final collection can free leftover DDP models before the group goes away.
        gc.unfreeze()
        faulthandler.cancel_dump_traceback_later()
    if idist.get_rank() == 0:
        with open(out_path, "w") as f:
            json.dump({"world_size": idist.get_world_size(), "rows": rows}, f)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from ignite_speed import launch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few seconds after start-up: few batches, 2 repeats")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batches", type=int, default=1500, help="training batches per run")
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds any collective (barrier, DDP's all-reduce) may wait for the other rank",
    )
    parser.add_argument("--deadline", type=float, default=900.0, help="seconds after which each rank gives up")
    args = parser.parse_args(argv)
    n, repeats = (60, 2) if args.quick else (args.batches, args.repeats)
    deadline = min(args.deadline, 120.0) if args.quick else args.deadline
    # Quiets the launcher's start and end notes (Ignite keeps the level of a logger that already exists).
    logging.getLogger("ignite.distributed.launcher.Parallel").setLevel(logging.WARNING)
    fd, out_path = tempfile.mkstemp(prefix="overhead_ddp_", suffix=".json")
    os.close(fd)
    try:
        launch(
            {"accelerator": "cpu", "devices": 2, "strategy": "ddp"},
            worker,
            n,
            repeats,
            deadline,
            out_path,
            timeout=datetime.timedelta(seconds=args.timeout),
        )
        with open(out_path) as f:
            measured = json.load(f)
    finally:
        os.remove(out_path)
    rows = measured["rows"]
    print_table(
        rows,
        f"DDP, {measured['world_size']} gloo processes: Linear(8, 1), batch 16, SGD, 1 thread each; "
        f"{n} training batches per run; rank 0's medians of {repeats} interleaved repeats",
    )
    total = rows[VARIANTS[0].name]
    print(f"all flags vs bare: {total['ratio']:.3f} (goal <= 1.03: {'met' if total['ratio'] <= 1.03 else 'not met'})")
    result: dict[str, Any] = {
        "benchmark": "overhead_ddp",
        "world_size": measured["world_size"],
        "batches_per_run": n,
        "repeats": repeats,
        "bare_us_per_step": total["bare_us_per_batch"],
        "speedups_us_per_step": total["speedups_us_per_batch"],
        "speedups_vs_bare": total["ratio"],
        "configs": rows,
    }
    print(json.dumps(result))
    sys.stdout.flush()
    return result


if __name__ == "__main__":
    main()
