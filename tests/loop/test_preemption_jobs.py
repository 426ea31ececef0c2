"""Preemption with real processes: a training script sent SIGTERM by the test exits with
PREEMPTED_EXIT_CODE after saving, and its relaunch resumes to the weights of an uninterrupted run; on 2 gloo
processes, a signal to rank 1 alone stops both ranks at the same batch (jobs in tests/_preempt_job.py and
tests/_fault_jobs.py, each bounded by a timeout)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ignite_speed import PREEMPTED_EXIT_CODE
from tests.helpers import run_rank_job

pytestmark = pytest.mark.slow  # training scripts in subprocesses, and a 2-process gloo job

TESTS = Path(__file__).parents[1]
sys.path.insert(0, str(TESTS))
SCRIPT = TESTS / "_preempt_job.py"
JOB_TIMEOUT_S = 60


def _launch(ckpt: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(TESTS.parent), "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(ckpt), str(out), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=JOB_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err


def test_sigterm_to_a_training_script_exits_75_and_its_relaunch_resumes_exactly(tmp_path):
    reference = _launch(tmp_path / "ref_ckpt", tmp_path / "ref.json")
    preempted = _launch(tmp_path / "ckpt", tmp_path / "run.json")
    started = tmp_path / "run.json.started"
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not started.exists() and preempted.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert started.exists(), preempted.communicate()[1][-3000:]
    preempted.send_signal(signal.SIGTERM)
    code, err = _finish(preempted)
    assert code == PREEMPTED_EXIT_CODE == 75, err[-3000:]
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["reason"] == "preempted" and 3 <= run["iteration"] < 30
    assert run["message"].startswith("SIGTERM received at epoch ")
    assert f"checkpoint_{run['iteration']}.pt" in run["files"]  # the save at the stop

    code, err = _finish(_launch(tmp_path / "ckpt", tmp_path / "resumed.json", "resume"))
    assert code == 0, err[-3000:]
    code, err = _finish(reference)
    assert code == 0, err[-3000:]
    resumed, ref = (json.loads((tmp_path / name).read_text()) for name in ("resumed.json", "ref.json"))
    assert resumed["start"] == run["iteration"]
    assert (resumed["iteration"], resumed["reason"]) == (ref["iteration"], ref["reason"]) == (30, "max_epochs")
    assert (resumed["weight"], resumed["bias"]) == (ref["weight"], ref["bias"])  # floats, exact through JSON


def test_a_signal_to_rank_1_stops_both_ranks_at_the_same_batch(tmp_path):
    from _fault_jobs import PREEMPT_BATCHES, PREEMPT_SIGNAL_AT, SYNC_EVERY

    results: list[dict[str, Any]] = [
        r["preempt"] for r in run_rank_job(str(TESTS / "_fault_jobs.py"), "preempt", tmp_path, timeout=JOB_TIMEOUT_S)
    ]
    # rank 1 is signalled during batch 3; the agreement at batch 4 carries the request, the one at 6 reads it
    assert (PREEMPT_SIGNAL_AT, SYNC_EVERY, PREEMPT_BATCHES) == (3, 2, 8)
    for r in results:
        assert (r["iteration"], r["epoch"], r["error"], r["stop_reason"]) == (6, 1, None, "preempted")
        assert r["stop_message"] == "SIGUSR1 received at epoch 0 (0-based), iteration 3: preempted, saving and stopping"
        assert (r["exit_code"], r["saved"]) == (PREEMPTED_EXIT_CODE, ["checkpoint_6.pt"])
    assert results[0]["received"] == [] and results[1]["received"] == [["SIGUSR1", 3]]
