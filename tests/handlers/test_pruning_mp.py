"""Pruning on 2 real gloo processes (``idist.Parallel``): only rank 0 asks the search, and both ranks stop at the
same batch with the same reason and message. The job runs in a subprocess bounded by a timeout (a rank that
stopped alone would leave the other one waiting in a collective: the test fails instead of hanging)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import ignite.distributed as idist  # noqa: E402

from ignite_speed.handlers import LoopLimits, Pruning, StopController, ValidationSchedule  # noqa: E402
from tests.helpers import run_on_two_gloo_ranks, run_rank_job, scored_trial_engines  # noqa: E402

pytestmark = pytest.mark.slow  # 2 gloo processes

JOB_TIMEOUT_S = 90
BATCHES = 4  # per rank per epoch


def _scenario(unit: str, prune_at: int, min_epochs: int = 0) -> dict[str, Any]:
    rank = idist.get_rank()
    # rank 1's value is never reported
    trainer, evaluator, runs = scored_trial_engines(lambda k: 0.5 + k / 10 + rank, offset=rank)

    asked: list[tuple[float, float]] = []

    def should_prune(value: float, step: float) -> bool:
        asked.append((value, step))
        return len(asked) >= prune_at

    LoopLimits(max_epochs=5, min_epochs=min_epochs).attach(trainer)
    ValidationSchedule(evaluator, [0], val_check_interval=2, num_sanity_val_steps=0).attach(trainer)
    Pruning("val_acc", should_prune, unit=unit).attach(trainer)
    trainer.run(list(range(BATCHES)))
    controller = StopController.of(trainer)
    assert controller is not None
    return {
        "iteration": trainer.state.iteration,
        "val_at": runs,
        "asked": asked,
        "reason": controller.stop_reason.value,
        "message": controller.stop_message,
    }


def job_prune(local_rank: int, out_dir: str) -> None:
    results = {
        "steps": _scenario("steps", prune_at=3),
        "epochs": _scenario("epochs", prune_at=2),
        "min_epochs": _scenario("steps", prune_at=1, min_epochs=3),
    }
    with open(os.path.join(out_dir, f"prune_{idist.get_rank()}.json"), "w") as f:
        json.dump(results, f)


def main(job: str, out_dir: str, port: int) -> None:
    run_on_two_gloo_ranks({"prune": job_prune}[job], port, out_dir)


@pytest.fixture(scope="module")
def pruned(tmp_path_factory: Any) -> list[dict[str, Any]]:
    return run_rank_job(
        os.path.abspath(__file__), "prune", tmp_path_factory.mktemp("pruning_mp"), timeout=JOB_TIMEOUT_S
    )


def _agreed(results: list[dict[str, Any]], name: str) -> dict[str, Any]:
    r0, r1 = results[0][name], results[1][name]
    for key in ("iteration", "val_at", "reason", "message"):
        assert r0[key] == r1[key], (name, key, r0[key], r1[key])
    assert r1["asked"] == []  # only rank 0 talks to the search
    return r0


def test_both_ranks_stop_at_the_batch_rank_0_was_pruned_at(pruned):
    r = _agreed(pruned, "steps")
    assert r["iteration"] == 6 and r["val_at"] == [2, 4, 6]
    assert r["reason"] == "pruned" and r["message"] == "pruned at steps 6: val_acc=0.8"
    assert r["asked"] == [[0.6, 2], [0.7, 4], [0.8, 6]]  # (JSON)


def test_epochs_unit_on_two_ranks(pruned):
    r = _agreed(pruned, "epochs")
    assert r["iteration"] == 4 and r["message"] == "pruned at epochs 1: val_acc=0.7"
    assert r["asked"] == [[0.6, 0.5], [0.7, 1.0]]


def test_min_epochs_defer_the_prune_on_both_ranks(pruned):
    r = _agreed(pruned, "min_epochs")
    assert r["iteration"] == 12 and r["message"] == "pruned at steps 2: val_acc=0.6"


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
