"""What ``RayTunePruning`` checks when it is built (no Ray needed: it imports Ray only when a run starts)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import pytest
import torch
from ignite.engine import Engine

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from ignite_speed import attach_speedups  # noqa: E402
from ignite_speed.loop.trainer_parts import TrainerParts  # noqa: E402
from ignite_speed.search.ray_tune import RayTunePruning  # noqa: E402
from tests.helpers import run_on_two_gloo_ranks, run_rank_job  # noqa: E402


@pytest.mark.parametrize("to_save", [{}, {"optimizer": torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1)}])
def test_a_to_save_without_the_model_is_refused_with_the_fix(to_save):
    """A trial that Ray resumes from its checkpoint (a pause, a failure) would go on with fresh weights."""
    with pytest.raises(ValueError, match=r"holds no torch.nn.Module.*accepted: the model in to_save"):
        RayTunePruning("val_acc", to_save=to_save)


def test_the_flag_without_to_save_is_refused_before_anything_is_attached():
    trainer, evaluator = Engine(lambda e, b: 0.0), Engine(lambda e, b: None)
    with pytest.raises(ValueError, match=r"RayTunePruning\(to_save=\{\}\) holds no torch.nn.Module"):
        attach_speedups(trainer, evaluator, {"pruning": {"trial": "ray_tune", "monitor": "val_acc"}}, val_data=[0])
    assert TrainerParts.find(trainer) is None  # nothing attached: a corrected call can attach


def test_the_model_among_other_objects_is_accepted():
    model = torch.nn.Linear(1, 1)
    handler = RayTunePruning("val_acc", to_save={"model": model, "optimizer": torch.optim.SGD(model.parameters(), 0.1)})
    assert handler.to_save["model"] is model


def job_rank(local_rank: int, out_dir: str) -> None:
    import ignite.distributed as idist

    model = torch.nn.Linear(1, 1)
    errors = []
    for build in (
        lambda: RayTunePruning("val_acc", to_save={"model": model}),
        lambda: attach_speedups(
            Engine(lambda e, b: 0.0),
            Engine(lambda e, b: None),
            {"pruning": {"trial": "ray_tune", "monitor": "val_acc", "to_save": {"model": model}}},
            val_data=[0],
        ),
    ):
        try:
            build()
            errors.append(None)
        except ValueError as exc:
            errors.append(str(exc))
    with open(os.path.join(out_dir, f"ray_ranks_{idist.get_rank()}.json"), "w") as f:
        json.dump(errors, f)


@pytest.mark.slow  # 2 gloo processes
def test_a_trial_that_trains_in_several_processes_is_refused_on_every_rank(tmp_path: Any):
    """Processes started inside a Ray trial have no Tune session (``tune.report`` only warns there): their
    trial would silently never be reported, pruned or resumed. Refused on both ranks as the handler is built,
    before anything is attached or trained (no rank waits for another). No Ray needed: it is imported when a
    run starts."""
    for errors in run_rank_job(os.path.abspath(__file__), "ray_ranks", tmp_path, timeout=60):
        assert len(errors) == 2
        for error in errors:
            assert error is not None and "training runs in 2 processes, but Ray Tune's report and checkpoint" in error
            assert "accepted: a trial that trains in one process, or OptunaPruning" in error


if __name__ == "__main__":
    run_on_two_gloo_ranks(job_rank, int(sys.argv[3]), sys.argv[2])
