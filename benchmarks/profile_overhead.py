"""Per-batch cost of the run profile's fine split (``profile=True``) on ``overhead_tiny.py``'s tiny step.

The default profile (training, validation, sanity check, checkpoint saves) runs no code per batch; the fine
split (waiting for data, step, handlers) reads the clock around the step and the loop's per-batch handler.
This benchmark times the same ``attach_speedups`` config (``overhead_tiny.py``'s "all flags" and "max_epochs
only") with ``profile=False`` and ``profile=True`` in interleaved pairs, in one process, and reports the
median of the per-pair differences in us per batch and as a share of the bare Ignite step (timed in the same
rounds): pairs cancel the slow drifts of a shared machine's load.

    python benchmarks/profile_overhead.py            # about a minute on 2 CPU cores
    python benchmarks/profile_overhead.py --quick    # a few seconds (smoke test)
    python benchmarks/profile_overhead.py --micro    # the wrappers' own cost alone: steady on a busy machine
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import warnings

import torch
from overhead_tiny import ALL_FLAGS, EPOCHS, Variant, run_bare, run_speedups, settle_gc, tiny_model

CONFIGS = {"all flags + terminate_on_nan": (ALL_FLAGS, True), "max_epochs only": ({"max_epochs": EPOCHS}, False)}


def measure(total_batches: int, repeats: int) -> dict[str, dict[str, float]]:
    pairs = {
        name: (Variant(name, flags, validates), Variant(name + " + profile", {**flags, "profile": True}, validates))
        for name, (flags, validates) in CONFIGS.items()
    }
    for off, on in pairs.values():  # warm-up
        run_bare(tiny_model(), off, total_batches)
        run_speedups(tiny_model(), off, total_batches)
        run_speedups(tiny_model(), on, total_batches)
    settle_gc()
    times: dict[str, tuple[list[float], list[float], list[float]]] = {name: ([], [], []) for name in pairs}
    for r in range(repeats):
        for name, (off, on) in pairs.items():
            bare, plain, profiled = times[name]
            bare.append(run_bare(tiny_model(), off, total_batches))
            first, second = (off, on) if r % 2 == 0 else (on, off)
            a = run_speedups(tiny_model(), first, total_batches)
            b = run_speedups(tiny_model(), second, total_batches)
            plain.append(a if first is off else b)
            profiled.append(b if first is off else a)
    per_batch = 1e6 / total_batches
    rows = {}
    for name, (bare, plain, profiled) in times.items():
        added = per_batch * statistics.median(p - q for p, q in zip(profiled, plain))
        bare_us = per_batch * statistics.median(bare)
        rows[name] = {
            "bare_us_per_batch": bare_us,
            "profile_off_us_per_batch": per_batch * statistics.median(plain),
            "profile_on_us_per_batch": per_batch * statistics.median(profiled),
            "added_us_per_batch": added,
            "added_share_of_bare_step": added / bare_us,
        }
    return rows


def micro(calls: int = 200_000, repeats: int = 7) -> dict[str, float]:
    """The fine split's own per-batch cost, without the noise of whole runs: calls of the timed wrappers
    (the process function's and the loop's per-batch handler's) against calls of what they wrap, with a step
    and a handler that do nothing; the fastest of ``repeats`` rounds, in us per batch."""
    import timeit

    from ignite.engine import Engine, Events

    from ignite_speed import attach_speedups
    from ignite_speed._compat import event_handlers, process_function

    trainer = Engine(lambda engine, batch: None)
    speedups = attach_speedups(trainer, None, max_epochs=1)
    loop = speedups.loop
    trainer.run([0])  # (the loop's per-batch handler merged into one, as on a trainer without handlers of its own)
    plain_step, plain_handler = process_function(trainer), event_handlers(trainer, Events.ITERATION_COMPLETED)[0][0]
    loop.timer.instrument(trainer, loop)
    timed_step, timed_handler = process_function(trainer), event_handlers(trainer, Events.ITERATION_COMPLETED)[0][0]
    loop.timer.restore()
    loop.due_batch = lambda *args: 0  # type: ignore[method-assign]  (a batch with nothing due)

    def best(function) -> float:
        return min(timeit.repeat(function, number=calls, repeat=repeats)) / calls * 1e6

    plain = best(lambda: (plain_step(trainer, 0), plain_handler(trainer)))
    timed = best(lambda: (timed_step(trainer, 0), timed_handler(trainer)))
    return {"plain_us_per_batch": plain, "timed_us_per_batch": timed, "added_us_per_batch": timed - plain}


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--batches", type=int, default=3000)
    parser.add_argument("--micro", action="store_true", help="only the wrappers' own cost (steady on a busy machine)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.getLogger("ignite").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    if args.micro:
        row = micro()
        print(
            f"fine split's wrappers: {row['added_us_per_batch']:.2f} us per batch (step + loop handler, nothing "
            f"else: {row['plain_us_per_batch']:.2f} us plain, {row['timed_us_per_batch']:.2f} us timed)"
        )
        print(json.dumps(row))
        return {"micro": row}
    n, repeats = (120, 2) if args.quick else (args.batches, args.repeats)
    rows = measure(n, repeats)
    print(f"profile=True vs profile=False, tiny step, {n} batches per run, medians of {repeats} interleaved pairs")
    for name, row in rows.items():
        print(
            f"{name:<30} bare {row['bare_us_per_batch']:7.1f} us/b  off {row['profile_off_us_per_batch']:7.1f}  "
            f"on {row['profile_on_us_per_batch']:7.1f}  added {row['added_us_per_batch']:+6.2f} us/b "
            f"({100 * row['added_share_of_bare_step']:+.2f}% of the bare step)"
        )
    print(json.dumps(rows))
    return rows


if __name__ == "__main__":
    main()
