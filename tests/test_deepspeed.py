"""DeepSpeed ZeRO stages 0-3 on 2 gloo processes (CPU); skipped without deepspeed.

Run in its own env: ``tox -e deepspeed``. The first run JIT-compiles DeepSpeed's shared-memory comm op
(about a minute, cached in the torch extensions cache); a torch optimizer avoids building DeepSpeed's Adam.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("deepspeed", reason="deepspeed is not installed (tox -e deepspeed)")

sys.path.insert(0, str(Path(__file__).parent))
from test_distributed_mp import JOBS, close, run_job  # noqa: E402

STAGES = ["deepspeed_stage_0", "deepspeed_stage_1", "deepspeed_stage_2", "deepspeed_stage_3"]


def test_zero_stages_train_agree_and_resume(tmp_path: Path) -> None:
    run_job(str(JOBS), "strategies", str(tmp_path), "--strategies", ",".join(["ddp", *STAGES]), timeout=600)
    result = json.loads((tmp_path / "strategies.json").read_text())
    stage0 = result["deepspeed_stage_0"]["run"]
    ddp = result["ddp"]["run"]
    for name in STAGES:
        run, resumed = result[name]["run"], result[name]["resumed"]
        losses = run["losses"]
        assert losses[2] < losses[1] < losses[0], (name, losses)
        # every ZeRO stage computes the same updates as plain data parallel DeepSpeed (stage 0)
        assert close(losses, stage0["losses"], 1e-5) and close(run["params"], stage0["params"], 1e-5), name
        # same trajectory as torch DDP to within a few percent (see the note in docs/distributed.rst)
        assert all(abs(a - b) <= 0.05 * b for a, b in zip(losses[:2], ddp["losses"][:2])), (losses, ddp["losses"])
        if run["replicas_equal"] is not None:
            assert run["replicas_equal"], name
        # DeepSpeedCheckpoint in Ignite's Checkpoint: resuming from epoch 2 replays epoch 3 exactly
        assert close(resumed["losses"], losses[2:], 1e-6), (name, resumed["losses"], losses)
        assert close(resumed["params"], run["params"], 1e-6), name
