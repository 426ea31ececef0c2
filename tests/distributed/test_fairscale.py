"""fairscale ``ddp_sharded`` (OSS + ShardedDataParallel) on 2 gloo processes; skipped without fairscale.

Run in its own env: ``tox -e fairscale``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("fairscale", reason="fairscale is not installed (tox -e fairscale)")

from tests.distributed.test_distributed_mp import JOBS, check_strategies, check_trainer, run_job  # noqa: E402

pytestmark = pytest.mark.slow  # 2 gloo processes per job


def test_ddp_sharded_matches_ddp_and_resumes(tmp_path: Path) -> None:
    # The job calls the default optimizer.zero_grad(); prepare's OSS keeps zeroed gradients, which is what
    # keeps ShardedDataParallel on DDP's numbers under torch 2 (set_to_none=True silently diverges).
    run_job(str(JOBS), "strategies", str(tmp_path), "--strategies", "ddp,ddp_sharded")
    result = json.loads((tmp_path / "strategies.json").read_text())
    check_strategies(result, ["ddp", "ddp_sharded"])


def test_create_trainer_under_ddp_sharded_matches_ddp_and_counts_steps(tmp_path: Path) -> None:
    # accumulation skips ShardedDataParallel's reduction (no_sync) until a window's last batch; the last window
    # of an epoch of unknown length is reduced (model.reduce()) before its step; clipping uses OSS's global norm
    run_job(str(JOBS), "trainer", str(tmp_path), "--strategies", "ddp,ddp_sharded")
    check_trainer(json.loads((tmp_path / "trainer.json").read_text()), ["ddp", "ddp_sharded"])
