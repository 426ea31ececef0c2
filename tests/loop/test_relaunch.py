"""Preemption-safe runs end to end (issue 19): a training job (tests/_relaunch_job.py, ``autoresume=True``, a
``Checkpoint`` with ``n_saved=2``) is sent real signals at chosen moments and relaunched with the same command until
it exits 0; it must end exactly as one uninterrupted run (``torch.equal`` weights through JSON floats, iteration,
epoch, optimizer steps, validation runs, stop reason and message).

The moments are drawn with a seeded ``random.Random`` (reproducible): inside a training batch, inside a validation
run, inside a checkpoint save (before the file is written) and right after a save. The job pauses at the drawn
moment until the signal has reached it, so the signal lands exactly there on a loaded machine too. Every job is a
subprocess in its own session, bounded by a timeout after which its whole process group is killed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ignite_speed import PREEMPTED_EXIT_CODE

pytestmark = pytest.mark.slow  # training jobs in subprocesses, 2-process gloo jobs, torchrun

TESTS = Path(__file__).parents[1]
SCRIPT = TESTS / "_relaunch_job.py"
JOB_TIMEOUT_S = 90
PHASES = ("batch", "val", "save", "saved")
COMPARED = ("iteration", "epoch", "global_step", "reason", "message", "val_at", "weights")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(TESTS.parent), "PYTHONWARNINGS": "ignore", "PYTHONFAULTHANDLER": "1"}


def _command(mode: str, ckpt: Path, out: Path, *flags: str) -> list[str]:
    return [sys.executable, str(SCRIPT), mode, str(ckpt), str(out), *flags]


def _descendants(root: int) -> list[int]:
    """The processes under ``root`` (Linux ``/proc``): torchrun starts its workers in sessions of their own."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill a job that ran past its deadline: its process group and every process under it."""
    tree = _descendants(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def _start(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )


def _wait(proc: subprocess.Popen, deadline: float) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=max(deadline - time.monotonic(), 1))
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise AssertionError(f"job timed out after {JOB_TIMEOUT_S} s: {proc.args}") from None
    return proc.returncode, out


def _attempt(
    cmd: list[str], out: Path, pause: tuple[str, int, tuple[int, ...]] | None, sig: signal.Signals = signal.SIGTERM
) -> tuple[int, str, bool]:
    """One launch; with ``pause`` = (phase, k, ranks), send ``sig`` to those ranks when they stand at the k-th
    ``phase`` of this attempt. Returns the exit code, the output, and whether the signal was sent."""
    markers = [Path(f"{out}.paused.{rank}") for rank in (0, 1)]
    for path in markers:
        path.unlink(missing_ok=True)
    spec = Path(f"{out}.pause")
    if pause is None:
        spec.unlink(missing_ok=True)
    else:
        spec.write_text(f"{pause[0]} {pause[1]} {','.join(map(str, pause[2]))}")
    proc = _start(cmd)
    deadline = time.monotonic() + JOB_TIMEOUT_S
    sent = False
    try:
        if pause is not None:
            wanted = [markers[rank] for rank in pause[2]]
            while proc.poll() is None and time.monotonic() < deadline and not all(p.exists() for p in wanted):
                time.sleep(0.01)
            if all(p.exists() for p in wanted):
                for path in wanted:
                    os.kill(int(path.read_text()), sig)
                sent = True
        code, text = _wait(proc, deadline)
    finally:
        if proc.poll() is None:
            _kill_group(proc)
    return code, text, sent


def _result(out: Path, rank: int = 0) -> dict[str, Any]:
    return json.loads(Path(f"{out}.rank{rank}.json").read_text())


def _results(out: Path, ranks: int) -> dict[str, Any]:
    """Rank 0's result, with every rank's under ``"ranks"``."""
    every = [_result(out, rank) for rank in range(ranks)]
    return {**every[0], "ranks": every}


def _reference(tmp_path: Path, mode: str, *flags: str) -> subprocess.Popen:
    """The uninterrupted run (started at once: it runs beside the relaunch loop)."""
    return _start(_command(mode, tmp_path / "ref_ckpt", tmp_path / "ref", *flags))


def _relaunch_until_done(
    cmd: list[str], out: Path, plan: list[tuple[str, int, tuple[int, ...]]], ranks: int = 1, before_launch: Any = None
) -> list[dict]:
    """Run ``cmd`` once per pause of ``plan`` (each must be preempted: exit 75) and then until it exits 0
    (``before_launch(i)`` runs before the i-th launch)."""
    attempts: list[dict] = []
    for pause in [*plan, None]:
        for rank in range(ranks):
            Path(f"{out}.rank{rank}.json").unlink(missing_ok=True)
        if before_launch is not None:
            before_launch(len(attempts))
        code, text, sent = _attempt(cmd, out, pause)
        assert sent == (pause is not None), f"{pause} never came (exit {code}):\n{text[-3000:]}"
        expected = 0 if pause is None else PREEMPTED_EXIT_CODE
        assert code == expected, f"attempt {len(attempts)} ({pause}): exit {code}, expected {expected}\n{text[-4000:]}"
        attempts.append({"pause": pause, **_results(out, ranks)})
    return attempts


def _seeded_plan(seed: int, ranks: tuple[int, ...] = (0,)) -> list[tuple[str, int, tuple[int, ...]]]:
    rng = random.Random(seed)
    phases = list(PHASES)
    rng.shuffle(phases)
    return [(phase, rng.randint(1, 2), ranks) for phase in phases]


def _assert_same_run(attempts: list[dict], reference: dict) -> None:
    final = attempts[-1]
    for key in COMPARED:
        assert final[key] == reference[key], (key, final[key], reference[key])  # floats: exact through JSON
    for attempt in attempts[:-1]:
        assert attempt["reason"] == "preempted" and attempt["exit_code"] == PREEMPTED_EXIT_CODE
        received = [r for rank in attempt.get("ranks", [attempt]) for r in rank["received"]]
        assert received and received[0][0] == "SIGTERM"
        assert attempt["message"].startswith("SIGTERM received at epoch ")
    # every relaunch resumed from a checkpoint the attempt before it left
    for before, after in zip(attempts, attempts[1:]):
        assert after["resumed_from"] is not None
        assert os.path.basename(after["resumed_from"]) in before["files"]
    assert attempts[0]["resumed_from"] is None


@pytest.mark.parametrize(
    ("name", "flags", "seed"),
    [
        ("plain", (), 19),
        ("accumulate_shuffled", ("--accum", "3", "--shuffle"), 20),
        ("early_stopping", ("--early-stop", "--shuffle"), 21),
    ],
)
def test_sigterm_at_random_moments_and_relaunch_ends_as_one_uninterrupted_run(tmp_path, name, flags, seed):
    reference = _reference(tmp_path, "single", *flags)
    out = tmp_path / "run"
    plan = _seeded_plan(seed)
    if name == "early_stopping":  # the stop comes at the 3rd validation (iteration 12): pause before it
        plan = [(phase, 1, ranks) for phase, _, ranks in plan[:3]]
    try:
        attempts = _relaunch_until_done(_command("single", tmp_path / "ckpt", out, *flags), out, plan)
        code, text = _wait(reference, time.monotonic() + JOB_TIMEOUT_S)
    finally:
        if reference.poll() is None:
            _kill_group(reference)
    assert code == 0, text[-4000:]
    ref = _result(tmp_path / "ref")
    if name == "early_stopping":
        assert ref["reason"] == "early_stopping" and ref["iteration"] == 3 * 4 and ref["val_at"] == [4, 8, 12]
    else:
        assert (ref["reason"], ref["iteration"], ref["epoch"]) == ("max_epochs", 40, 5)
        assert ref["val_at"] == list(range(4, 41, 4))
    assert ref["global_step"] == (ref["iteration"] if name != "accumulate_shuffled" else 5 * 3)
    _assert_same_run(attempts, ref)


def _newest_checkpoint(folder: Path) -> Path:
    return max(folder.glob("checkpoint_*.pt"), key=lambda f: int(f.stem.rsplit("_", 1)[1]))


def test_two_gloo_ranks_signalled_alone_and_together_relaunch_to_the_uninterrupted_weights(tmp_path):
    """2 DDP ranks (``idist.Parallel``, gloo), shuffled by a ``DistributedSampler``: SIGTERM to rank 1 alone
    inside a batch, then to both ranks inside a validation run, then a relaunch whose newest checkpoint is
    truncated (a save cut short elsewhere than through DiskSaver's rename). Every rank stops at the same batch,
    every relaunch resumes every rank from the file rank 0 chose, and the run ends as the uninterrupted one."""
    from ignite_speed.distributed import free_port

    port = str(free_port())
    reference = _start(_command("gloo", tmp_path / "ref_ckpt", tmp_path / "ref", "--shuffle", "--port", port))
    code, text = _wait(reference, time.monotonic() + JOB_TIMEOUT_S)  # (one 2-process job at a time: 2 cores)
    assert code == 0, text[-4000:]
    ref = _results(tmp_path / "ref", 2)
    assert (ref["reason"], ref["iteration"], ref["epoch"]) == ("max_epochs", 40, 5)

    ckpt, out = tmp_path / "ckpt", tmp_path / "run"
    truncated: list[Path] = []

    def truncate_newest_before_the_last_launch(attempt: int) -> None:
        if attempt == 2:
            newest = _newest_checkpoint(ckpt)
            newest.write_bytes(newest.read_bytes()[:1000])
            truncated.append(newest)

    plan = [("batch", 3, (1,)), ("val", 3, (0, 1))]
    attempts = _relaunch_until_done(
        _command("gloo", ckpt, out, "--shuffle", "--port", port),
        out,
        plan,
        ranks=2,
        before_launch=truncate_newest_before_the_last_launch,
    )
    for attempt in attempts:
        r0, r1 = attempt["ranks"]
        for key in ("iteration", "epoch", "reason", "message", "resumed_from", "val_at", "weights"):
            assert r0[key] == r1[key], (attempt["pause"], key, r0[key], r1[key])
    first, second, last = attempts
    # rank 1 alone got the signal; both stopped, with its message
    assert first["ranks"][0]["received"] == [] and first["ranks"][1]["received"][0][0] == "SIGTERM"
    assert all(r["received"] and r["received"][0][0] == "SIGTERM" for r in second["ranks"])
    # the last launch skipped the truncated newest file on rank 0, and rank 1 loaded what rank 0 chose
    (bad,) = truncated
    assert last["ranks"][0]["skipped"] == [str(bad)] and last["ranks"][1]["skipped"] == []
    assert last["resumed_from"] != str(bad) and os.path.basename(last["resumed_from"]) in second["files"]
    _assert_same_run(attempts, ref)


def _torchrun(ckpt: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        "--max-restarts=2",
        "--monitor-interval=0.1",
        str(SCRIPT),
        "torchrun",
        str(ckpt),
        str(out),
        "--shuffle",
    ]


def test_torchrun_restarts_a_sigkilled_worker_and_autoresume_continues_exactly(tmp_path):
    """``torchrun --max-restarts=2``: rank 1 is killed with SIGKILL (no handler, no save) at its 14th batch,
    after checkpoints at iterations 9 and 12; torchrun ends rank 0 and starts both workers again, which resume
    from the newest checkpoint and end as a never-killed torchrun run."""
    reference = _start(_torchrun(tmp_path / "ref_ckpt", tmp_path / "ref"))
    code, text = _wait(reference, time.monotonic() + JOB_TIMEOUT_S)
    assert code == 0, text[-4000:]
    ref = _results(tmp_path / "ref", 2)
    assert (ref["reason"], ref["iteration"], ref["resumed_from"]) == ("max_epochs", 40, None)

    ckpt, out = tmp_path / "ckpt", tmp_path / "run"
    Path(f"{out}.pause").write_text("kill 14 1")  # read by the first workers only (TORCHELASTIC_RESTART_COUNT 0)
    proc = _start(_torchrun(ckpt, out))
    deadline = time.monotonic() + JOB_TIMEOUT_S
    marker = Path(f"{out}.paused.1")
    try:
        while proc.poll() is None and time.monotonic() < deadline and not marker.exists():
            time.sleep(0.01)
        assert marker.exists(), proc.communicate()[0][-4000:] if proc.poll() is not None else "no pause"
        saved = sorted(int(f.stem.rsplit("_", 1)[1]) for f in ckpt.glob("checkpoint_*.pt"))
        assert saved == [9, 12], saved
        os.kill(int(marker.read_text()), signal.SIGKILL)
        code, text = _wait(proc, deadline)
    finally:
        if proc.poll() is None:
            _kill_group(proc)
    assert code == 0, text[-4000:]
    run = _results(out, 2)
    for key in ("resumed_from", "weights", "iteration"):
        assert run["ranks"][0][key] == run["ranks"][1][key], key
    assert [r["restart_count"] for r in run["ranks"]] == [1, 1]  # the workers that torchrun restarted once
    assert run["resumed_from"] == str(ckpt / "checkpoint_12.pt")
    assert run["received"] == [] and run["reason"] == "max_epochs"
    for key in COMPARED:
        assert run[key] == ref[key], (key, run[key], ref[key])
