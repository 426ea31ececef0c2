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
from ignite_speed.search.ray_tune import (  # noqa: E402
    RayTunePruning,
    apply_config_changes,
    optimizer_hyperparameters,
)
from tests.helpers import run_on_two_gloo_ranks, run_rank_job  # noqa: E402


@pytest.mark.parametrize(
    "to_save, shown",
    [({}, "{}"), ({"optimizer": torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1)}, "{'optimizer': <SGD>}")],
)
def test_a_to_save_without_the_model_is_refused_with_the_fix(to_save, shown):
    """A trial that Ray resumes from its checkpoint (a pause, a failure) would go on with fresh weights. The
    message shows the keys and types (an optimizer's repr spans lines)."""
    with pytest.raises(ValueError, match=r"holds no torch.nn.Module.*accepted: the model in to_save") as err:
        RayTunePruning("val_acc", to_save=to_save)
    assert str(err.value).startswith(f"RayTunePruning(to_save={shown}) holds no torch.nn.Module")


def test_the_flag_without_to_save_is_refused_before_anything_is_attached():
    trainer, evaluator = Engine(lambda e, b: 0.0), Engine(lambda e, b: None)
    with pytest.raises(ValueError, match=r"RayTunePruning\(to_save=\{\}\) holds no torch.nn.Module"):
        attach_speedups(trainer, evaluator, {"pruning": {"trial": "ray_tune", "monitor": "val_acc"}}, val_data=[0])
    assert TrainerParts.find(trainer) is None  # nothing attached: a corrected call can attach


def test_the_model_among_other_objects_is_accepted():
    model = torch.nn.Linear(1, 1)
    handler = RayTunePruning("val_acc", to_save={"model": model, "optimizer": torch.optim.SGD(model.parameters(), 0.1)})
    assert handler.to_save["model"] is model


def test_a_run_outside_a_ray_tune_trial_is_refused_before_the_first_batch():
    """Called outside ``Tuner.fit`` (a user trying the trainable by hand), Ray's report only warns: the run
    would train to the end and report nothing."""
    pytest.importorskip("ray.tune", reason="Ray Tune is an optional extra (tox -e raytune)")
    model = torch.nn.Linear(1, 1)
    trainer, evaluator = Engine(lambda e, b: 0.0), Engine(lambda e, b: None)
    flag = {"trial": "ray_tune", "monitor": "val_acc", "to_save": {"model": model}}
    attach_speedups(trainer, evaluator, {"max_epochs": 1, "pruning": flag}, val_data=[0])
    with pytest.raises(ValueError) as err:
        trainer.run([0, 1])
    assert str(err.value).startswith(
        "RayTunePruning(monitor='val_acc', unit='steps') reports to the Ray Tune trial this process runs, but it runs "
        "in none"
    )
    assert "accepted: the function run by tune.Tuner(train_fn, ...).fit(), or pruning=None" in str(err.value)
    assert trainer.state.iteration == 0


def _trial_objects(lr: float) -> dict[str, Any]:
    """An optimizer and its LR scheduler as a trial's code builds them from its config's ``lr``."""
    torch.manual_seed(0)
    optimizer = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=lr, momentum=0.9)
    return {"optimizer": optimizer, "scheduler": torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.5)}


def _resumed(new_lr: float, saved_built: Any) -> tuple[dict[str, Any], list[Any]]:
    """A trial built with ``new_lr`` that loads the state of one built with lr 0.01 and decayed twice."""
    old = _trial_objects(0.01)
    for _ in range(2):
        old["optimizer"].step()  # (no gradients: the order torch expects, and nothing trained)
        old["scheduler"].step()
    new = _trial_objects(new_lr)
    built = optimizer_hyperparameters(new)
    for key in new:
        new[key].load_state_dict(old[key].state_dict())
    return new, apply_config_changes(new, saved_built, built)


def test_a_config_that_changed_the_lr_sets_it_after_the_load_and_rebases_the_scheduler():
    """PBT's explore: the trial's code built lr 0.05 where the checkpoint's trial built 0.01."""
    new, changes = _resumed(0.05, optimizer_hyperparameters(_trial_objects(0.01)))
    assert changes == [("optimizer", 0, "lr", 0.01, 0.05), ("optimizer", 0, "initial_lr", 0.01, 0.05)]
    assert new["optimizer"].param_groups[0]["lr"] == 0.05 and new["scheduler"].base_lrs == [0.05]
    assert new["optimizer"].param_groups[0]["momentum"] == 0.9  # unchanged: the checkpoint's


@pytest.mark.parametrize("saved", ["same", "older checkpoint"])
def test_an_unchanged_config_keeps_the_checkpoints_values_the_decayed_lr_included(saved):
    built = optimizer_hyperparameters(_trial_objects(0.01)) if saved == "same" else {}
    new, changes = _resumed(0.01, built)
    assert changes == []
    assert new["optimizer"].param_groups[0]["lr"] == 0.0025 and new["scheduler"].base_lrs == [0.01]


def test_the_hyperparameters_are_plain_data_of_each_param_group():
    hyper = optimizer_hyperparameters({"optimizer": torch.optim.Adam(torch.nn.Linear(1, 1).parameters(), lr=0.1)})
    assert hyper["optimizer"][0]["lr"] == 0.1 and hyper["optimizer"][0]["betas"] == (0.9, 0.999)
    assert "params" not in hyper["optimizer"][0]


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
