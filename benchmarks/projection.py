"""The fast_dev_run projection against the full run it projects, on the real clock.

Each measurement is a fresh process (as a user's fast_dev_run and full run are: both pay the first imports
and first calls): one runs the fast_dev_run and prints its projection, another the full run and prints its
wall time. The error is projection / full wall - 1, the median of ``--repeats`` pairs. The scenarios sleep
known times (data, step, validation, handlers, one-off costs); ``demo`` is ``python -m ignite_speed.demo
--max_epochs 10 --early_stopping null`` (a real MLP). Run it on another tree with ``PYTHONPATH=that/tree``.

    PYTHONPATH=$PWD python benchmarks/projection.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from typing import Any

SCENARIOS: dict[str, dict[str, Any]] = {
    # name: the sleeps (seconds) and the flags of the full run
    "20 ms step, 20 ms val batches, 2 epochs": dict(
        step=0.02, val=0.02, batches=10, val_batches=3, flags={"max_epochs": 2, "val_check_interval": 0.5}
    ),
    "30 ms step, 20 ms val batches, 3 epochs": dict(
        step=0.03, val=0.02, batches=12, val_batches=4, flags={"max_epochs": 3}
    ),
    "slow data + handler, 0.3 s at start": dict(
        data=0.01,
        step=0.005,
        handler=0.004,
        val=0.01,
        batches=25,
        val_batches=5,
        once=0.3,
        flags={"max_epochs": 3, "val_check_interval": 0.25},
    ),
    "demo (MLP on digits, 10 epochs)": dict(demo=True, flags={"max_epochs": 10, "early_stopping": None}),
}


def child(name: str, fast_dev_run: Any) -> dict[str, float]:
    spec = SCENARIOS[name]
    flags = dict(spec["flags"])
    if fast_dev_run:
        flags["fast_dev_run"] = fast_dev_run
    if spec.get("demo"):
        from ignite_speed import SpeedConfig
        from ignite_speed.demo import DEMO_DEFAULTS, train_with_speedups

        result, speedups = train_with_speedups(SpeedConfig.from_any({**DEMO_DEFAULTS, **flags}), progress=False)
        wall = result.seconds
    else:
        from sleep_timed import sleep_run  # (a script's own folder is on its path)

        speedups, wall = sleep_run(spec, flags)
    projection = speedups.report().projection
    return {"wall": wall, "projection": None if projection is None else projection.seconds}


def measure(name: str, fast_dev_run: Any) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", name, json.dumps(fast_dev_run)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=2)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], json.loads(args.child[1]))))
        return
    print(f"{'scenario':<42}{'fast_dev_run':>13}{'projected':>11}{'full run':>10}{'error':>8}")
    for name in SCENARIOS:
        for fast_dev_run in (True, 4):
            errors, pairs = [], []
            for _ in range(args.repeats):  # (interleaved: a change of the machine's load hits both)
                projected = measure(name, fast_dev_run)["projection"]
                wall = measure(name, False)["wall"]
                errors.append(projected / wall - 1)
                pairs.append((projected, wall))
            i = errors.index(statistics.median(errors))
            print(
                f"{name:<42}{str(fast_dev_run):>13}{pairs[i][0]:>10.2f}s{pairs[i][1]:>9.2f}s{100 * errors[i]:>+7.0f}%",
                flush=True,
            )


if __name__ == "__main__":
    main()
