"""Ray Tune trials on the local machine (ignite_speed/search/ray_tune.py), one job of two small searches in a
subprocess bounded by a timeout (tests/search/_ray_job.py): ASHA-stopped trials end with ``pruned``, and a trial
that a scheduler pauses and Ray resumes from its ignite-speed checkpoint ends with the weights of a never-paused
one, also where the scheduler changed its ``lr`` meanwhile (PBT's explore: the new ``lr`` is used). Skipped when Ray Tune is not installed (tox env ``raytune``); slow (about 2 minutes on 2 idle cores, 7 on busy ones)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import pytest

pytest.importorskip("ray.tune", reason="Ray Tune is an optional extra (tox -e raytune)")

from tests.helpers import run_job_process  # noqa: E402

pytestmark = pytest.mark.slow
JOB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_ray_job.py")


@pytest.fixture(scope="module")
def searched(tmp_path_factory: Any) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("ray_tune")
    proc = run_job_process(
        [sys.executable, JOB, str(out)], timeout=900
    )  # (Ray starts an actor per trial attempt: 6 here; slow on 2 busy cores)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(out / "result.json") as fh:
        return json.load(fh)


def test_asha_stopped_trials_end_pruned_at_the_rung_and_the_best_trains_to_the_end(searched):
    trials = searched["asha"]
    assert trials["q1.0.attempt0"]["reason"] == "max_epochs" and trials["q1.0.attempt0"]["iteration"] == 18
    for name, value in (("q0.4", 2.4), ("q0.1", 0.6)):
        trial = trials[f"{name}.attempt0"]
        # grace_period 6 (steps): the first rung; each later trial is below the best one there
        assert (trial["reason"], trial["iteration"]) == ("pruned", 6)
        assert trial["message"] == f"pruned at steps 6: val_acc={value}"


def test_a_paused_and_resumed_trial_ends_with_the_weights_of_a_never_paused_one(searched):
    runs = searched["pause"]
    assert runs["pauseFalse.attempt0"]["reason"] == "max_epochs"
    assert runs["pauseTrue.attempt0"]["reason"] == "pruned"  # Ray ended the paused attempt at its 2nd report
    resumed = runs["pauseTrue.attempt1"]
    assert (resumed["reason"], resumed["iteration"]) == ("max_epochs", 18)
    assert resumed["val_at"] == [6, 9, 12, 15, 18]  # it validated again where it was paused: reported once
    assert searched["pause_weights_equal"] is True


def test_a_trial_resumed_with_a_new_lr_trains_on_with_it_as_pbt_expects(searched):
    """The checkpoint's optimizer holds the old ``lr``; the trial's config (PBT's explore) says another: the new
    one is set after the checkpoint loads, and the trial ends with the weights of a never-paused trial whose
    own code switched to that ``lr`` after the same batch."""
    runs = searched["explore"]
    assert runs["exploreTrue.attempt0"]["lrs"] == {"1": 0.01}
    resumed = runs["exploreTrue.attempt1"]
    assert (resumed["reason"], resumed["iteration"]) == ("max_epochs", 18)
    assert resumed["lrs"] == {"7": 0.005}  # from the first batch after the pause
    assert resumed["config_changes"] == [["optimizer", 0, "lr", 0.01, 0.005]]
    assert runs["exploreFalse.attempt0"]["lrs"] == {"1": 0.01, "7": 0.005}
    assert runs["exploreFalse.attempt0"]["config_changes"] == []
    assert searched["explore_weights_equal"] is True
