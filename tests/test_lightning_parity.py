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


def test_lightning_parity():
    mismatches, deviations = [], 0
    for sc in all_scenarios(0, SEEDS):
        if deliberate_deviation(sc):
            deviations += 1
            continue
        oracle = oracle_lightning.run(sc)
        ours = run_ignite_speed.run(sc)
        msg = run_ignite_speed.compare(oracle, ours)
        if msg:
            mismatches.append(f"scenario {sc['id']} flags={sc['flags']} es={sc.get('early_stopping')}: {msg}")
    assert not mismatches, f"{len(mismatches)} of {SEEDS - deviations} scenarios differ:\n" + "\n".join(mismatches[:20])
