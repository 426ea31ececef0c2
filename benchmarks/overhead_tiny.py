"""Per-batch overhead of ``attach_speedups`` on a tiny training step, in total and flag by flag.

The step is as cheap as a real step gets (``Linear(8, 1)``, batch 16, plain SGD, one thread, ready-made
batches in memory), so the loop controls' own per-batch cost is a visible share of it. Each variant
attaches ``attach_speedups`` with one group of flags (every variant sets ``max_epochs``, so that all
train the same batches); the "all flags" variant uses ``benchmarks/overhead.py``'s ``FLAGS`` plus
``terminate_on_nan=True``. Each is timed against bare Ignite doing the same work: variants that
validate (every half epoch, 4 batches) are compared with bare Ignite validating on the same schedule.
Runs are interleaved (bare, variant A, bare, variant B, ...) in one process, and the table reports
medians over the repeats; "added" is the median of the per-repeat differences to the bare run next to
it, which cancels slow drifts in machine load; "min ratio" compares each side's fastest run, which other
jobs on the same cores disturb least.

    python benchmarks/overhead_tiny.py           # about 2 minutes on 2 idle CPU cores
    python benchmarks/overhead_tiny.py --quick   # a few seconds (smoke test)

Goal: every loop flag on (with ``terminate_on_nan``) costs <= 1.03x bare Ignite's time per batch.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from ignite.engine import Engine, Events
from overhead import FLAGS, ignite_engines, make_data

BATCH, WIDTH = 16, 8
EPOCHS: int = FLAGS["max_epochs"]
# The validation part of FLAGS: every half epoch, 4 batches, no sanity check (bare Ignite has none).
VALIDATION: dict[str, Any] = {
    k: FLAGS[k] for k in ("val_check_interval", "check_val_every_n_epoch", "limit_val_batches", "num_sanity_val_steps")
}
ALL_FLAGS: dict[str, Any] = {**FLAGS, "terminate_on_nan": True}


@dataclass(frozen=True)
class Variant:
    """One ``attach_speedups`` config (it sets ``max_epochs``), timed against bare Ignite doing the same work."""

    name: str
    flags: dict[str, Any]
    validates: bool = False  # validates every half epoch, 4 batches (and so does its bare run)
    evaluator: bool = False  # gets the evaluator and validation data even though its flags turn validation off

    @property
    def epochs(self) -> int:
        return int(self.flags["max_epochs"])


def one_flag(name: str, validates: bool = False, **flags: Any) -> Variant:
    return Variant(name, {"max_epochs": EPOCHS, **flags}, validates)


VARIANTS: list[Variant] = [
    Variant("all flags + terminate_on_nan", ALL_FLAGS, validates=True),
    one_flag("max_epochs only"),
    one_flag("max_steps", max_steps=FLAGS["max_steps"]),
    one_flag("max_time", max_time=FLAGS["max_time"]),
    one_flag("min_epochs + min_steps", min_epochs=FLAGS["min_epochs"], min_steps=FLAGS["min_steps"]),
    one_flag("limit_train_batches", limit_train_batches=FLAGS["limit_train_batches"]),
    one_flag("val_check_interval=0.5", validates=True, **VALIDATION),
    # Early stopping needs validation runs to watch, so this one includes the validation schedule:
    # its own cost is its row minus the val_check_interval row.
    one_flag("early_stopping (+ validation)", validates=True, early_stopping=FLAGS["early_stopping"], **VALIDATION),
    one_flag("terminate_on_nan", terminate_on_nan=True),
]


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Linear(WIDTH, 1)


def settle_gc() -> None:
    """Move everything alive now (torch, Ignite, imported modules) out of the collector's reach.

    A full collection scans all of it (about 0.2 s after importing torch): it would land in whichever
    timed run happens to trigger one, and make the collection before each run as slow as a whole run.
    Call once, after the warm-up; ``gc.unfreeze()`` undoes it."""
    gc.collect()
    gc.freeze()


def timed_run(trainer: Engine, data: Any, barrier: Callable[[], None] | None, **run_kwargs: Any) -> float:
    """Seconds spent in ``trainer.run``; everything before it (building, attaching) is untimed."""
    # Garbage left by the previous run (engines sit in reference cycles) is collected now, not in the
    # middle of this run, so each run pays only for its own allocations.
    gc.collect()
    if barrier is not None:
        barrier()
    t0 = time.perf_counter()
    trainer.run(data, **run_kwargs)
    return time.perf_counter() - t0


def run_bare(
    model: torch.nn.Module, variant: Variant, total_batches: int, barrier: Callable[[], None] | None = None
) -> float:
    """Bare Ignite doing ``variant``'s work: ``total_batches`` over its epochs and, when it validates,
    4 validation batches every half epoch (what ``val_check_interval=0.5, limit_val_batches=4`` does)."""
    per_epoch = total_batches // variant.epochs
    train, val = make_data(per_epoch, batch=BATCH, width=WIDTH)
    trainer, evaluator = ignite_engines(model)
    if variant.validates:

        @trainer.on(Events.ITERATION_COMPLETED(every=per_epoch // 2))
        def _validate(engine: Engine) -> None:
            evaluator.state.max_epochs = None
            evaluator.run(val, max_epochs=1, epoch_length=FLAGS["limit_val_batches"])

    return timed_run(trainer, train, barrier, max_epochs=variant.epochs)


def run_speedups(
    model: torch.nn.Module, variant: Variant, total_batches: int, barrier: Callable[[], None] | None = None
) -> float:
    """``attach_speedups`` with ``variant``'s flags; checks that it trained and validated as bare Ignite does."""
    from ignite_speed import attach_speedups

    per_epoch = total_batches // variant.epochs
    train, val = make_data(per_epoch, batch=BATCH, width=WIDTH)
    trainer, evaluator = ignite_engines(model)
    if variant.validates or variant.evaluator:
        sp = attach_speedups(trainer, evaluator, variant.flags, val_data=val, model=model)
    else:
        sp = attach_speedups(trainer, None, variant.flags, model=model)
    elapsed = timed_run(trainer, train, barrier)
    val_runs = 2 * variant.epochs if variant.validates else 0
    assert sp.progress.total_batches == variant.epochs * per_epoch and sp.progress.val_runs == val_runs, (
        variant,
        sp.progress,
    )
    return elapsed


def measure(
    variants: list[Variant],
    total_batches: int,
    repeats: int,
    make_model: Callable[[], torch.nn.Module] = tiny_model,
    barrier: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Interleaved repeats of (bare, variant) pairs; medians in us per training batch.

    ``make_model`` builds a fresh model for every run; ``barrier`` (multi-process runs) is passed
    before the timer starts, so that every rank starts each run together."""
    for v in variants:
        if total_batches % (2 * v.epochs):
            raise ValueError(
                f"{total_batches} batches do not split into {v.epochs} epochs of an even number of "
                f"batches (validation runs every half epoch)"
            )
    # Warm-up: imports, lazily loaded modules and the allocator's first pools.
    for v in variants:
        run_bare(make_model(), v, total_batches, barrier)
        run_speedups(make_model(), v, total_batches, barrier)
    settle_gc()
    times: dict[str, tuple[list[float], list[float]]] = {v.name: ([], []) for v in variants}
    for r in range(repeats):
        for v in variants:
            bare, speed = times[v.name]
            # Which run of a pair goes first alternates between repeats, so that whatever one run leaves
            # behind for the next (caches, allocator state) favours neither side.
            if r % 2 == 0:
                bare.append(run_bare(make_model(), v, total_batches, barrier))
                speed.append(run_speedups(make_model(), v, total_batches, barrier))
            else:
                speed.append(run_speedups(make_model(), v, total_batches, barrier))
                bare.append(run_bare(make_model(), v, total_batches, barrier))
    per_batch = 1e6 / total_batches
    rows: dict[str, Any] = {}
    for v in variants:
        bare, speed = times[v.name]
        rows[v.name] = {
            "baseline": "bare + validation" if v.validates else "bare",
            "bare_us_per_batch": per_batch * statistics.median(bare),
            "speedups_us_per_batch": per_batch * statistics.median(speed),
            "added_us_per_batch": per_batch * statistics.median(s - b for s, b in zip(speed, bare)),
            "ratio": statistics.median(speed) / statistics.median(bare),
            # The least disturbed run of each side: steadier than the medians when other jobs share the cores.
            "ratio_of_minimums": min(speed) / min(bare),
        }
    return rows


def print_table(rows: dict[str, Any], title: str) -> None:
    w = max(len("variant"), *map(len, rows))
    header = (
        f"{'variant':<{w}}  {'baseline':<17}  {'bare us/b':>9}  {'speedups us/b':>13}  {'added us/b':>10}  "
        f"{'ratio':>6}  {'min ratio':>9}"
    )
    print(title)
    print(header)
    print("-" * len(header))
    for name, row in rows.items():
        print(
            f"{name:<{w}}  {row['baseline']:<17}  {row['bare_us_per_batch']:>9.1f}  {row['speedups_us_per_batch']:>13.1f}  "
            f"{row['added_us_per_batch']:>+10.1f}  {row['ratio']:>6.3f}  {row['ratio_of_minimums']:>9.3f}"
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few seconds: few batches, 2 repeats")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--batches", type=int, default=3000, help=f"training batches per run ({EPOCHS} epochs)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.getLogger("ignite").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    n, repeats = (120, 2) if args.quick else (args.batches, args.repeats)
    rows = measure(VARIANTS, n, repeats)
    total = rows[VARIANTS[0].name]
    print_table(
        rows,
        f"tiny step: Linear({WIDTH}, 1), batch {BATCH}, SGD, 1 thread; {n} training batches "
        f"per run; medians of {repeats} interleaved repeats",
    )
    print(f"all flags vs bare: {total['ratio']:.3f} (goal <= 1.03: {'met' if total['ratio'] <= 1.03 else 'not met'})")
    result: dict[str, Any] = {
        "benchmark": "overhead_tiny",
        "batches_per_run": n,
        "repeats": repeats,
        "bare_us_per_batch": total["bare_us_per_batch"],
        "speedups_us_per_batch": total["speedups_us_per_batch"],
        "speedups_vs_bare": total["ratio"],
        "flags": rows,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
