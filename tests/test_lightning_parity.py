"""Differential test against pytorch-lightning 2.6.6 on random configs (skipped when it is not installed).

The scenarios, the Lightning oracle and the ignite-speed runner are copies of
``shared/tools/lightning-parity`` (tests/parity/), plus ``deliberate_deviation`` listing the
documented deviations. Run more seeds with ``PARITY_SEEDS=1000 pytest tests/test_lightning_parity.py``.
"""

from __future__ import annotations

import os

import pytest

pytest.importorskip("pytorch_lightning")

from tests.parity import oracle_lightning, run_ignite_speed  # noqa: E402
from tests.parity.scenarios import all_scenarios, deliberate_deviation  # noqa: E402

SEEDS = int(os.environ.get("PARITY_SEEDS", "400"))


@pytest.mark.parametrize("mode", ["attach_speedups", "handlers"])
def test_lightning_parity(mode):
    """Every scenario matches Lightning: through attach_speedups, and built from the individually imported
    handlers attached in a seeded random order (overfit_batches / fast_dev_run are flags, not handlers)."""
    mismatches, checked = [], 0
    for sc in all_scenarios(0, SEEDS):
        if deliberate_deviation(sc):
            continue
        if mode == "handlers" and ("overfit_batches" in sc["flags"] or "fast_dev_run" in sc["flags"]):
            continue
        checked += 1
        oracle = oracle_lightning.run(sc)
        if mode == "handlers":
            msg = run_ignite_speed.compare(oracle, run_ignite_speed.run_handlers(sc), run_ignite_speed.KEYS[:3])
        else:
            msg = run_ignite_speed.compare(oracle, run_ignite_speed.run(sc))
        if msg:
            mismatches.append(f"scenario {sc['id']} flags={sc['flags']} es={sc.get('early_stopping')}: {msg}")
    assert checked > SEEDS // 2
    assert not mismatches, f"{len(mismatches)} of {checked} scenarios differ:\n" + "\n".join(mismatches[:20])


@pytest.mark.parametrize("precision", ["32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true"])
def test_validation_metrics_under_precision_equal_lightnings(precision):
    """The same seeded run trained and validated by Lightning and by create_trainer + Ignite's
    create_supervised_evaluator + attach_speedups: every validation metric of every run is equal (issue 26: the
    evaluator ran without autocast under *-mixed, and crashed on the cast model under *-true)."""
    from tests.parity import precision_runs

    lightning = precision_runs.run_lightning(precision)
    assert len(lightning) == precision_runs.EPOCHS
    assert precision_runs.run_ignite_speed(precision) == lightning
