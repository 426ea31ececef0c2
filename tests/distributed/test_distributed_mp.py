"""Real multi-process jobs on CPU/gloo: ddp, zero, fsdp, multi-node over loopback, torchrun.

Each job runs ``tests/_dist_jobs.py`` in a subprocess bounded by a timeout, and every process group
has a 60 s collective timeout, so a hang fails the test instead of blocking CI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ignite_speed.distributed import free_port
from tests.helpers import run_job_process, run_job_processes

pytestmark = pytest.mark.slow  # multi-process jobs (2 gloo processes)

JOBS = Path(__file__).parents[1] / "_dist_jobs.py"
ROOT = JOBS.parent.parent


def run_job(*args: str, timeout: float = 150, module: bool = False) -> subprocess.CompletedProcess:
    cmd = [sys.executable, *(["-m", "torch.distributed.run"] if module else []), *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = run_job_process(cmd, timeout, cwd=ROOT, env=env)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def close(a: list[float], b: list[float], tol: float) -> bool:
    return len(a) == len(b) and max(abs(x - y) for x, y in zip(a, b)) <= tol


def check_strategies(result: dict, names: list[str], tol: float = 1e-6) -> None:
    """Shared assertions: loss goes down, same numbers as DDP, exact resume from the epoch-2 checkpoint."""
    assert result["world_size"] == 2 and result["backend"] == "gloo"
    reference = result["ddp"]["run"]
    for name in names:
        run, resumed = result[name]["run"], result[name]["resumed"]
        losses = run["losses"]
        assert len(losses) == 3 and losses[2] < losses[1] < losses[0], (name, losses)
        assert close(losses, reference["losses"], tol), (name, losses, reference["losses"])
        assert close(run["params"], reference["params"], tol), name
        if run["replicas_equal"] is not None:
            assert run["replicas_equal"], f"{name}: ranks hold different parameters"
        # Resuming from the epoch-2 checkpoint replays epoch 3 exactly (model, optimizer, trainer, sampler epoch).
        assert run["checkpoint"] and os.path.basename(run["checkpoint"]).endswith("_8.pt")
        assert close(resumed["losses"], losses[2:], tol), (name, resumed["losses"], losses)
        assert close(resumed["params"], run["params"], tol), f"{name}: resumed run ends elsewhere"


def check_trainer(result: dict, names: list[str], tol: float = 1e-6) -> None:
    """Shared assertions of the ``trainer`` job (``prepare`` + ``create_trainer`` + ``attach_speedups`` with
    accumulate_grad_batches=3, gradient_clip_val=0.1, max_steps=5; see TRAINER_FLAGS in _dist_jobs.py): every
    strategy computes DDP's losses and parameters, takes exactly the optimizer steps the loop counts, resumes
    exactly, and closes the last window of an epoch whose length is unknown."""
    assert result["world_size"] == 2 and result["backend"] == "gloo"
    assert result["launch_warnings"] == [] and result["warned_inside_job"] is False
    reference = result["ddp"]["run"]
    assert reference["losses"][2] < reference["losses"][1] < reference["losses"][0], reference["losses"]
    for name in names:
        run, resumed, unsized = (result[name][k] for k in ("run", "resumed", "unsized"))
        for kind, r in (("run", run), ("unsized", unsized)):
            # 2 steps per epoch (after batches 3 and 4 of 4): max_steps=5 stops at batch 3 of epoch 3
            assert (r["iteration"], r["steps_taken"], r["global_step"], r["stop_reason"]) == (11, 5, 5, "max_steps"), (
                name,
                kind,
                r["iteration"],
                r["steps_taken"],
                r["global_step"],
            )
            assert close(r["losses"], reference["losses"], tol), (name, kind, r["losses"], reference["losses"])
            assert close(r["params"], reference["params"], tol), (
                name,
                kind,
                max(abs(a - b) for a, b in zip(r["params"], reference["params"])),
            )
            if r["replicas_equal"] is not None:
                assert r["replicas_equal"], f"{name} ({kind}): ranks hold different parameters"
        assert run["checkpoint"] and os.path.basename(run["checkpoint"]).endswith("_8.pt")
        # resumed after epoch 2 (4 steps): the 5th and last step, the same epoch 3, the same parameters
        assert (resumed["iteration"], resumed["steps_taken"], resumed["global_step"]) == (11, 1, 5), name
        assert close(resumed["losses"], run["losses"][2:], tol), (name, resumed["losses"], run["losses"])
        assert close(resumed["params"], run["params"], tol), f"{name}: resumed run ends elsewhere"
    if "mid_window" in result.get("ddp", {}):
        mid, resumed = result["ddp"]["mid_window"], result["ddp"]["resumed_mid_window"]
        assert mid["checkpoint"].endswith("_6.pt") and mid["params"] == reference["params"]
        # resumed inside the window: the window's remaining steps and the rest, with identical parameters
        assert (resumed["iteration"], resumed["steps_taken"], resumed["global_step"]) == (11, 3, 5)
        assert resumed["params"] == reference["params"], "a resume inside an accumulation window ends elsewhere"
        assert resumed["replicas_equal"]


def test_create_trainer_under_ddp_zero_fsdp_matches_ddp_and_counts_steps(tmp_path: Path) -> None:
    run_job(str(JOBS), "trainer", str(tmp_path), "--strategies", "ddp,zero,fsdp")
    check_trainer(json.loads((tmp_path / "trainer.json").read_text()), ["ddp", "zero", "fsdp"])


def test_ddp_zero_fsdp_train_match_and_resume(tmp_path: Path) -> None:
    run_job(str(JOBS), "strategies", str(tmp_path), "--strategies", "ddp,zero,fsdp")
    result = json.loads((tmp_path / "strategies.json").read_text())
    # prepare_dataloader: each rank reads half of the 64 samples, together all of them.
    assert result["shard_sizes"] == 32 and result["union_size"] == 64
    check_strategies(result, ["ddp", "zero", "fsdp"])
    # FSDP checkpoints hold the full (gathered) tensors, loadable into a plain model.
    import torch

    sys.path.insert(0, str(JOBS.parent))
    from _dist_jobs import make_model

    state = torch.load(result["fsdp"]["run"]["checkpoint"], weights_only=True)["model"]
    make_model().load_state_dict(state)
    assert tuple(state["0.weight"].shape) == (16, 8) and type(state["0.weight"]) is torch.Tensor


def test_multinode_two_launches_over_loopback(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def two_launches() -> list[list[str]]:
        port = str(free_port())
        return [
            [sys.executable, str(JOBS), "multinode", str(tmp_path), "--node-rank", str(r), "--port", port]
            for r in (0, 1)
        ]

    for proc in run_job_processes(two_launches, 120, cwd=ROOT, env=env):
        assert proc.returncode == 0, proc.stderr[-4000:]
    records = [json.loads((tmp_path / f"multinode_rank{r}.json").read_text()) for r in (0, 1)]
    assert [(r["rank"], r["local_rank"], r["node_rank"]) for r in records] == [(0, 0, 0), (1, 0, 1)]
    assert all(r["world_size"] == 2 and r["nnodes"] == 2 for r in records)
    assert records[0]["params"] == records[1]["params"]
    # rank 0 alone asks to stop at iteration 6 (an agreement batch, every 2): both ranks stop at the next
    # agreement, for the same reason.
    assert [r["stopped_at"] for r in records] == [8, 8]
    assert records[0]["stop_reason"] == records[1]["stop_reason"]


def test_torchrun_started_job_is_not_spawned_again(tmp_path: Path) -> None:
    run_job(
        "--nproc_per_node=2",
        f"--master_port={free_port()}",
        str(JOBS),
        "torchrun",
        str(tmp_path),
        module=True,
        timeout=120,
    )
    records = [json.loads((tmp_path / f"torchrun_rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["main_process"] for r in records), "launch() spawned processes under torchrun"
    assert [r["rank"] for r in records] == [0, 1] and all(r["world_size"] == 2 for r in records)
    assert records[0]["params"] == records[1]["params"]
    assert [r["stopped_at"] for r in records] == [8, 8]  # asked at 6 on rank 0, agreed at the next agreement


FINISH_TOGETHER_JOB = """
import atexit, os, sys, time
from ignite_speed.distributed import launch

def job(local_rank, out):
    import ignite.distributed as idist
    if idist.get_rank() == 1:  # done at once; note when its interpreter exits
        atexit.register(lambda: open(os.path.join(out, "rank1_exit"), "w").write(repr(time.time())))
    else:  # still busy (say, writing the last checkpoint)
        time.sleep(1.5)
        open(os.path.join(out, "rank0_done"), "w").write(repr(time.time()))

if __name__ == "__main__":
    launch({"accelerator": "cpu", "devices": 2}, job, sys.argv[1])
"""


def test_launch_lets_no_rank_exit_before_every_rank_returned(tmp_path: Path) -> None:
    # a rank that is done waits for the others before its process exits, so that a failure while it exits
    # (the launcher then terminates the other ranks) cannot cut their last work short
    script = tmp_path / "finish_together.py"
    script.write_text(FINISH_TOGETHER_JOB)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = run_job_process([sys.executable, str(script), str(tmp_path)], 120, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0_done = float((tmp_path / "rank0_done").read_text())
    rank1_exit = float((tmp_path / "rank1_exit").read_text())
    assert rank1_exit >= rank0_done, (rank1_exit, rank0_done)
