"""Rank faults on 2 real gloo processes through ``attach_speedups`` (jobs in tests/_fault_jobs.py).

* Rank-divergent stop triggers (a stop request, ``max_time`` with clocks that disagree, a NaN loss,
  early stopping on a per-rank metric) end every rank on the same iteration, with the same reason and
  message. The ranks agree on stop requests every ``SYNC_EVERY`` batches (no collective in between), so
  a request that starts on one rank lands at most ``2 * SYNC_EVERY - 1`` batches later, or at the epoch
  end (a blocking sync) if that comes first.
* A rank whose training raises makes the other rank raise too, within a bounded time: at its next stop
  agreement when it gets there, after the process group's timeout when it waits in a DDP all-reduce.

Each job runs in a subprocess bounded by a timeout, and the process group has a 5 s collective
timeout, so a hang fails the test instead of blocking it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

JOBS = Path(__file__).parents[1] / "_fault_jobs.py"
sys.path.insert(0, str(JOBS.parent))

from _fault_jobs import FAILURE_WAIT_S, GROUP_TIMEOUT_S, SYNC_EVERY  # noqa: E402

from tests.helpers import run_rank_job  # noqa: E402

pytestmark = pytest.mark.slow  # 2 gloo processes per job

JOB_TIMEOUT_S = 60


def _run_job(job: str, out: Path) -> list[dict[str, Any]]:
    return run_rank_job(str(JOBS), job, out, timeout=JOB_TIMEOUT_S)


@pytest.fixture(scope="module")
def divergent(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return _run_job("divergent", tmp_path_factory.mktemp("rank_faults_divergent"))


@pytest.fixture(scope="module")
def raised(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return _run_job("raise", tmp_path_factory.mktemp("rank_faults_raise"))


def _agreed(results: list[dict[str, Any]], name: str) -> dict[str, Any]:
    r0, r1 = results[0][name], results[1][name]
    for key in ("iteration", "epoch", "error", "stop_reason", "stop_message"):
        assert r0[key] == r1[key], (name, key, r0[key], r1[key])
    assert r0["error"] is None
    return r0


def test_stop_request_on_one_rank_stops_both(divergent):
    r = _agreed(divergent, "request")
    # asked at iteration 6 (an agreement batch: its sync carries it), read at the next agreement
    assert (r["iteration"], r["stop_reason"], r["stop_message"]) == (
        6 + SYNC_EVERY,
        "user_request",
        "rank 1 asks to stop",
    )


@pytest.mark.parametrize("name", ["max_time_rank1_ahead", "max_time_rank1_slow"])
def test_max_time_follows_rank_0s_clock_only(divergent, name):
    r = _agreed(divergent, name)
    # rank 1's budget (spent from the start, or never) plays no part; rank 0's is spent at iteration 3 and the
    # epoch-end sync at iteration 4 carries it
    assert (r["iteration"], r["stop_reason"]) == (4, "max_time")
    assert r["stop_message"].startswith("max_time=0:00:01 reached after ")


def test_epoch_and_fit_time_modes_follow_rank_0_and_stop_both_at_the_epoch_end(divergent):
    r = _agreed(divergent, "max_time_epoch_mode")
    assert (r["iteration"], r["epoch"], r["stop_reason"]) == (4, 1, "max_time")
    assert r["stop_message"].startswith("max_time=0:00:01 reached after ")
    assert r["stop_message"].endswith(" s of training (checked at the end of epoch 0, 0-based)")
    r = _agreed(divergent, "max_time_fit_mode")
    assert (r["iteration"], r["epoch"], r["stop_reason"]) == (4, 1, "max_time")
    assert r["stop_message"].startswith("max_time=0:00:02: the next epoch (about ")
    assert "would not fit in the " in r["stop_message"]


def test_nan_loss_on_one_rank_stops_both(divergent):
    r = _agreed(divergent, "nan")
    # seen at iteration 5, carried by the sync of the agreement at 6, read at 8
    assert (r["iteration"], r["stop_reason"]) == (8, "non_finite_loss")
    assert r["stop_message"] == "training loss is nan at epoch 1 (0-based), iteration 5; stopping"


def test_early_stopping_on_a_per_rank_metric_stops_both(divergent):
    r = _agreed(divergent, "early_stopping")
    # rank 1's flat metric exhausts patience 1 at the 2nd epoch-end check; rank 0 still improves
    assert (r["iteration"], r["epoch"], r["stop_reason"]) == (8, 2, "early_stopping")
    assert r["stop_message"].startswith("Monitored metric val_loss did not improve in the last 1 records. ")


def test_a_rank_that_raises_makes_the_other_raise_at_its_next_agreement(raised):
    r0, r1 = raised[0]["between_collectives"], raised[1]["between_collectives"]
    # the failing rank re-raises its own exception; the other one learns it where it reads the sync that the
    # failed rank joined: started at the agreement at iteration 6, read at the next one
    assert r1["error"] == "ValueError: boom at iteration 5"
    message = "rank 1 failed at iteration 5: ValueError: boom at iteration 5"
    assert r0["error"] == f"RankFailureError: {message}"
    assert (r1["iteration"], r0["iteration"]) == (5, 6 + SYNC_EVERY)
    assert r0["stop_reason"] == r1["stop_reason"] == "rank_failure"
    assert r0["stop_message"] == r1["stop_message"] == message
    assert r0["ended"] - r1["raised"] < 2.0, "rank 0 did not stop within its next agreement"
    assert r1["ended"] - r1["raised"] < 2.0, "rank 1 waited for a stop sync that was on its way"
    # the failed rank took part in that one sync, so the collectives stayed in step
    assert raised[0]["group_usable"] == raised[1]["group_usable"] == 2.0


def test_a_rank_that_raises_in_a_ddp_job_is_bounded_by_the_group_timeout(raised):
    r0, r1 = raised[0]["in_ddp"], raised[1]["in_ddp"]
    raised_at = r1["raised"]
    # rank 1 re-raises its own error after waiting Speedups.rank_failure_timeout for a stop sync
    assert r1["error"] == "ValueError: boom at iteration 5"
    assert FAILURE_WAIT_S - 0.5 < r1["ended"] - raised_at < FAILURE_WAIT_S + 3
    # rank 0 waits in the DDP all-reduce of its next step: the process group's timeout ends it with an
    # error, not a hang (when the failed rank's process function raises, the launcher ends the job at once)
    assert r0["error"] is not None and "Timed out" in r0["error"]
    assert GROUP_TIMEOUT_S - 0.5 < r0["ended"] - raised_at < GROUP_TIMEOUT_S + 5


def test_package_log_lines_carry_the_rank(divergent):
    assert [r["log_line"] for r in divergent] == ["[rank: 0] probe 7", "[rank: 1] probe 7"]
