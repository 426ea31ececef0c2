"""What ``advise()``'s first finding realises when applied, against what it predicts, on the real clock.

For each scenario: a run, its first finding, the same run with the finding's setting applied; realised =
wall before - wall after. The median of ``--repeats``. Scenarios sleep known times (data, validation,
checkpoint saves), one under early stopping on a fixed curve (val_loss = |iteration - 40|), and the demo
(``python -m ignite_speed.demo --profile true --no_progress``: the README quickstart's configuration,
early stopping included). Run it on another tree with ``PYTHONPATH=that/tree``.

    PYTHONPATH=$PWD python benchmarks/advice.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import sleep_timed


def sleep_run(spec: dict[str, Any], flags: dict[str, Any], setting: dict[str, Any]) -> tuple[Any, float]:
    """The scenario's sleep-timed run with the advised ``setting`` applied (loader arguments to the loader)."""
    loader_args = {k: v for k, v in setting.items() if k in ("num_workers", "persistent_workers", "pin_memory")}
    filters = ("event", "every", "checkpoint_every")  # (checkpoint_every: what the advice said before it said every)
    flags = {**flags, **{k: v for k, v in setting.items() if k not in loader_args and k not in filters}}
    if spec.get("save"):
        spec = {**spec, "save_every": setting.get("every", spec["save_every"] * setting.get("checkpoint_every", 1))}
    return sleep_timed.sleep_run(spec, flags, loader_args)


def demo_run(setting: dict[str, Any]) -> tuple[Any, float]:
    from ignite_speed import SpeedConfig
    from ignite_speed.demo import DEMO_DEFAULTS, train_with_speedups

    result, speedups = train_with_speedups(
        SpeedConfig.from_any({**DEMO_DEFAULTS, "profile": True, **setting}), progress=False
    )
    return speedups, result.seconds


SCENARIOS: dict[str, Any] = {
    "data-bound (40 ms reads, 3 epochs)": (dict(data=0.04, step=0.01, batches=20), {"max_epochs": 3, "profile": True}),
    "validation-heavy (4 runs an epoch)": (
        dict(step=0.01, val=0.03, batches=20, val_batches=4),
        {"max_epochs": 2, "val_check_interval": 0.25, "num_sanity_val_steps": 0},
    ),
    "slow checkpoint saves": (dict(step=0.01, save=0.05, save_every=2, batches=20), {"max_epochs": 1}),
    "validation under early stopping": (
        dict(step=0.01, val=0.02, batches=10, val_batches=3, best=40),
        {
            "max_epochs": 30,
            "val_check_interval": 0.5,
            "num_sanity_val_steps": 0,
            "early_stopping": {"monitor": "val_loss", "patience": 3},
        },
    ),
    "demo --profile true": None,
}


def once(name: str) -> tuple[str, float, float]:
    scenario = SCENARIOS[name]
    run = demo_run if scenario is None else (lambda setting: sleep_run(scenario[0], scenario[1], setting))
    speedups, before = run({})
    advice = speedups.advise()
    if not advice.findings:
        return "(none)", 0.0, 0.0
    finding = advice[0]
    setting = dict(finding.setting)
    if finding.part == "app_handlers" or (scenario is None and "num_workers" in setting):  # (not in the demo's flags)
        return finding.switch, finding.saving, float("nan")
    _, after = run(setting)
    return f"{finding.part}: {setting}", finding.saving, before - after


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"{'scenario':<38}{'first finding':<58}{'predicted':>10}{'realised':>10}{'ratio':>7}")
    for name in SCENARIOS:
        rows = [once(name) for _ in range(args.repeats)]
        ratios = [r[2] / r[1] if r[1] else float("nan") for r in rows]
        median = statistics.median(ratios) if all(r == r for r in ratios) else float("nan")
        row = rows[ratios.index(median)] if median == median else rows[0]
        print(f"{name:<38}{row[0][:57]:<58}{row[1]:>9.2f}s{row[2]:>9.2f}s{100 * median:>6.0f}%", flush=True)


if __name__ == "__main__":
    main()
