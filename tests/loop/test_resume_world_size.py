"""A relaunch with another number of processes, for real: a checkpoint of a 2-process gloo run resumed by one
process, and a 1-process checkpoint resumed by 2 processes. Refused by default with the saved and the new
values; with ``allow_resume_changes=True`` the interrupted epoch ends at the checkpoint's batch and the next
epoch runs under the new number of processes (exact counts)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

from ignite_speed import StopReason
from tests.helpers import run_job_process
from tests.loop.test_resume_rules import _build, _crash, _load

pytestmark = pytest.mark.slow  # multi-process jobs (2 gloo processes)

JOB = Path(__file__).parents[1] / "_layout_job.py"
ROOT = JOB.parent.parent


def _run_job(job: str, ckpt_dir: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "PYTHONWARNINGS": "ignore",
    }
    proc = run_job_process([sys.executable, str(JOB), job, str(ckpt_dir)], 150, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


def test_a_2_process_checkpoint_resumed_by_1_process(tmp_path):
    _run_job("write", tmp_path)  # 3 batches per process and epoch; checkpoint_4: epoch 2, after batch 1
    saved = torch.load(tmp_path / "checkpoint_4.pt", weights_only=True)
    assert saved["speedups"]["loop"]["data"]["layout"] == {
        "world_size": 2,
        "batch_size": 4,
        "data_length": 3,
        "train_batches": 3,
        "accumulate_grad_batches": 1,
        "limit_train_batches": None,
    }
    run = _build(tmp_path / "one")
    _load(run, tmp_path / "checkpoint_4.pt")
    with pytest.raises(
        ValueError,
        match=r"\(saved -> now\): world_size \(number of processes\) 2 -> 1, batches of the "
        r"training data \(per process\) 3 -> 6, batches per epoch \(per process\) 3 -> 6\. "
        r"Resume with the saved setup, or set allow_resume_changes=True",
    ):
        run["trainer"].run(run["data"])

    run = _build(tmp_path / "two", allow_resume_changes=True)
    _load(run, tmp_path / "checkpoint_4.pt")
    with pytest.warns(
        UserWarning,
        match=r"world_size \(number of processes\) 2 -> 1, .*\): the interrupted epoch 2 "
        r"\(1-based\) ends after its batch 1 of 3, its remaining batches are skipped; "
        r"training continues with epoch 3 under the new setup",
    ):
        run["trainer"].run(run["data"])
    assert run["record"]["epochs_completed"] == [(2, 4), (3, 10)]
    sp = run["sp"]
    assert (sp.progress.total_batches, sp.global_step, sp.progress.epochs_done, sp.stop_reason) == (
        10,
        10,
        3,
        StopReason.MAX_EPOCHS,
    )


def test_a_1_process_checkpoint_resumed_by_2_processes(tmp_path):
    _crash(tmp_path, at=10)  # 6 batches per epoch; checkpoint_8: epoch 2, after batch 2
    _run_job("resume", tmp_path)
    for rank in (0, 1):
        record = json.loads((tmp_path / f"resume_{rank}.json").read_text())
        assert record["refused"].startswith(
            "cannot resume from the checkpoint: it was written under another setup, and the data order or the "
            "counting of optimizer steps would change (saved -> now): world_size (number of processes) 1 -> 2, "
            "batches of the training data (per process) 6 -> 3, batches per epoch (per process) 6 -> 3. "
        )
        assert record["warnings"] == [
            "resuming under another setup (allow_resume_changes=True; saved -> now: world_size (number of processes) "
            "1 -> 2, batches of the training data (per process) 6 -> 3, batches per epoch (per process) 6 -> 3): the "
            "interrupted epoch 2 (1-based) ends after its batch 2 of 6, its remaining batches are skipped; training "
            "continues with epoch 3 under the new setup, with the epoch, step and batch counters kept"
        ]
        # epoch 2 ends at iteration 8; epoch 3 has 3 batches per process
        assert record["epochs_completed"] == [[2, 8], [3, 11]]
        assert (record["iteration"], record["global_step"], record["epochs_done"], record["stop_reason"]) == (
            11,
            11,
            3,
            "max_epochs",
        )
