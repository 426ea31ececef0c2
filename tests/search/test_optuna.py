"""Optuna trials pruned through the stop controller (ignite_speed/search/optuna_trial.py): the step and value
reported at every validation run, the prune at the step a real pruner decides, ``TrialPruned`` from the
objective's one line, per-trial ``max_time`` and ``fast_dev_run``, and a trial preempted and relaunched with a
file-backed storage that continues the same trial. Skipped when Optuna is not installed (tox env ``optuna``)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import pytest
from ignite.engine import Engine

optuna = pytest.importorskip("optuna", reason="Optuna is an optional extra (tox -e optuna)")

from ignite_speed import attach_speedups  # noqa: E402
from ignite_speed.search.optuna_trial import OptunaPruning, continue_or_ask, raise_if_pruned  # noqa: E402
from tests.helpers import run_job_process, scored_trial_engines  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)
BATCHES = 4
JOB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_optuna_job.py")


def _objective(trial: Any, flags: dict[str, Any], clock: Any = None, seen: list | None = None) -> float:
    """A trial of 2 epochs of 4 batches: ``val_acc`` of the k-th validation run is ``quality * k``."""
    quality = trial.suggest_float("quality", 0.0, 1.0)
    trainer, evaluator, _ = scored_trial_engines(lambda k: round(quality * k, 6))

    cfg = {
        "max_epochs": 2,
        "val_check_interval": 2,
        "num_sanity_val_steps": 0,
        "pruning": {"trial": trial, "monitor": "val_acc"},
        **flags,
    }
    speedups = attach_speedups(trainer, evaluator, cfg, val_data=[0])
    if clock is not None:
        speedups.loop.clock.time_source = clock
    trainer.run(list(range(BATCHES)))
    if seen is not None:
        seen.append(speedups)
    raise_if_pruned(trainer)  # the one line: optuna.TrialPruned when the trial was pruned
    return evaluator.state.metrics["val_acc"]


def _study(pruner: Any, *qualities: float) -> Any:
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for q in qualities:
        study.enqueue_trial({"quality": q})
    return study


def test_a_trial_is_pruned_at_the_step_the_pruner_prunes_and_ends_with_trial_pruned():
    # ThresholdPruner prunes a value below 0.5 from step 4 on (its warm-up: steps 0..3)
    study = _study(optuna.pruners.ThresholdPruner(lower=0.5, n_warmup_steps=4), 1.0, 0.1)
    seen: list = []
    study.optimize(lambda t: _objective(t, {}, seen=seen), n_trials=2)
    good, bad = study.trials
    assert good.state == optuna.trial.TrialState.COMPLETE and good.value == 4.0
    assert good.intermediate_values == {2: 1.0, 4: 2.0, 6: 3.0, 8: 4.0}
    assert bad.state == optuna.trial.TrialState.PRUNED
    assert bad.intermediate_values == {2: 0.1, 4: 0.2}
    assert seen[1].stop_reason.value == "pruned" and seen[1].stop_message == "pruned at steps 4: val_acc=0.2"
    assert seen[1].trainer.state.iteration == 4


def test_epochs_are_reported_in_hundredths_of_an_epoch():
    study = _study(optuna.pruners.NopPruner(), 0.5)
    study.optimize(
        lambda t: _objective(t, {"pruning": {"trial": t, "monitor": "val_acc", "unit": "epochs"}}), n_trials=1
    )
    assert study.trials[0].intermediate_values == {50: 0.5, 100: 1.0, 150: 1.5, 200: 2.0}


@pytest.mark.parametrize(
    "unit, flags, clock_step, reported",
    [
        # 2 batches per optimizer step, validation after every batch: steps 0, 1, 1, 2, 2, 3, 3, 4
        (
            "steps",
            {"accumulate_grad_batches": 2, "val_check_interval": 1},
            None,
            {0: 0.5, 1: 1.0, 2: 2.0, 3: 3.0, 4: 4.0},
        ),
        # every clock read 0.1 s later: the 4 validation runs fall in the training's seconds 0, 0, 1, 1
        ("seconds", {}, 0.1, {0: 0.5, 1: 1.5}),
    ],
)
def test_validation_runs_at_an_already_reported_step_warn_once_with_the_fix(unit, flags, clock_step, reported):
    """Optuna keeps one value per step: the later runs at a step are not reported, and the user is told so."""
    ticks = iter(range(100_000))
    clock = None if clock_step is None else (lambda: next(ticks) * clock_step)
    study = _study(optuna.pruners.NopPruner(), 0.5)
    with pytest.warns(UserWarning) as caught:
        pruning = lambda t: {"trial": t, "monitor": "val_acc", "unit": unit}  # noqa: E731
        study.optimize(lambda t: _objective(t, {**flags, "pruning": pruning(t)}, clock=clock), n_trials=1)
    same_step = [str(w.message) for w in caught if "two validation runs at Optuna step" in str(w.message)]
    assert len(same_step) == 1 and f"OptunaPruning(unit={unit!r})" in same_step[0]
    assert "Optuna keeps one value per step" in same_step[0] and "accepted: a unit and schedule" in same_step[0]
    assert study.trials[0].intermediate_values == reported


def test_min_epochs_and_the_pruners_warm_up_combine():
    # the pruner would prune from step 2 on; min_epochs=1 defers the stop to the end of epoch 1 (iteration 4)
    study = _study(optuna.pruners.ThresholdPruner(lower=0.5), 0.1)
    seen: list = []
    study.optimize(lambda t: _objective(t, {"min_epochs": 1}, seen=seen), n_trials=1)
    assert study.trials[0].state == optuna.trial.TrialState.PRUNED
    assert study.trials[0].intermediate_values == {2: 0.1, 4: 0.2}
    assert seen[0].trainer.state.iteration == 4 and seen[0].stop_message == "pruned at steps 2: val_acc=0.1"


def test_per_trial_max_time_ends_a_trial_that_is_not_pruned():
    ticks = iter(range(100_000))  # each clock read: one second more
    study = _study(optuna.pruners.NopPruner(), 1.0)
    seen: list = []
    study.optimize(
        lambda t: _objective(t, {"max_time": {"seconds": 5}}, clock=lambda: float(next(ticks)), seen=seen), n_trials=1
    )
    assert seen[0].stop_reason.value == "max_time"
    assert study.trials[0].state == optuna.trial.TrialState.COMPLETE
    assert len(study.trials[0].intermediate_values) < 4  # reports up to the stop, then the trial's value


def test_fast_dev_run_inside_a_trial_reports_nothing_and_projects_the_run():
    study = _study(optuna.pruners.ThresholdPruner(lower=100.0), 1.0)
    seen: list = []
    study.optimize(lambda t: _objective(t, {"fast_dev_run": True}, seen=seen), n_trials=1)
    assert "pruning" not in seen[0].loop.handlers.names() and study.trials[0].intermediate_values == {}
    assert seen[0].projection is not None and study.trials[0].state == optuna.trial.TrialState.COMPLETE


@pytest.mark.parametrize(
    "flag, message",
    [
        ({"trial": "optuna", "monitor": "val_acc"}, "pruning={'trial': 'optuna'}: accepted: an optuna.trial.Trial or"),
        ({"monitor": "val_acc"}, "pruning={'trial': None}: accepted"),
        ("val_acc", "pruning='val_acc' has type str; accepted: None, or {"),
        ({"trial": "ray_tune", "monitor": "val_acc", "unit": "batch"}, "pruning(unit='batch'): accepted: one of"),
        ({"trial": "ray_tune", "monitor": "val_acc", "patience": 3}, "pruning has unknown keys ['patience']"),
    ],
)
def test_bad_pruning_flags_name_the_value_and_what_is_accepted(flag, message):
    with pytest.raises((ValueError, TypeError)) as err:
        attach_speedups(Engine(lambda e, b: 0.0), Engine(lambda e, b: None), {"pruning": flag}, val_data=[0])
    assert message in str(err.value)


def test_pruning_without_an_evaluator_is_refused():
    trial = optuna.create_study().ask()
    with pytest.raises(ValueError, match="reports the validation runs, but attach_speedups got no evaluator"):
        attach_speedups(Engine(lambda e, b: 0.0), None, {"pruning": {"trial": trial, "monitor": "val_acc"}})


def test_pruning_with_validation_disabled_is_refused_and_leaves_the_trainer_as_it_was():
    """``limit_val_batches=0`` (or no val_data): no validation run would report the trial; refused at
    ``attach_speedups``, and the trainer takes a corrected call."""
    trial = optuna.create_study().ask()
    trainer, evaluator, runs = scored_trial_engines(lambda k: 0.5)
    flags = {"max_epochs": 1, "num_sanity_val_steps": 0, "pruning": {"trial": trial, "monitor": "val_acc"}}
    for bad, val_data in (({"limit_val_batches": 0}, [0]), ({}, None)):
        with pytest.raises(ValueError, match="but validation is disabled .limit_val_batches=0, or no or empty val_d"):
            attach_speedups(trainer, evaluator, {**flags, **bad}, val_data=val_data)
    attach_speedups(trainer, evaluator, flags, val_data=[0])
    trainer.run(list(range(BATCHES)))
    assert runs == [4] and trial.storage.get_trial(trial._trial_id).intermediate_values == {4: 0.5}


def test_the_handler_alone_without_a_validation_schedule_is_refused_when_the_run_starts():
    """Attached by hand with no ValidationSchedule (none at attach, none at run start): no validation run would
    report the trial; refused before the first batch, like the engine-neutral handler."""
    trial = optuna.create_study().ask()
    trainer, _, runs = scored_trial_engines(lambda k: 0.5)
    OptunaPruning(trial, "val_acc").attach(trainer)
    with pytest.raises(ValueError, match="but no ValidationSchedule is attached to the trainer, so the trial would"):
        trainer.run(list(range(BATCHES)), max_epochs=1)
    assert trainer.state.iteration == 0 and trial.storage.get_trial(trial._trial_id).intermediate_values == {}


def test_the_handler_takes_a_trial_only():
    with pytest.raises(TypeError, match="OptunaPruning\\(trial=FrozenTrial\\): accepted: an optuna.trial.Trial"):
        OptunaPruning(optuna.trial.create_trial(value=1.0), "val_acc")


def test_continue_or_ask_opens_the_running_trial_of_a_run_key():
    study = optuna.create_study()
    first = continue_or_ask(study, "job-a")
    first.suggest_float("lr", 0.0, 1.0)
    other = continue_or_ask(study, "job-b")
    again = continue_or_ask(study, "job-a")
    assert (first.number, other.number, again.number) == (0, 1, 0)
    assert again.suggest_float("lr", 0.0, 1.0) == first.params["lr"]


@pytest.mark.slow
def test_a_preempted_and_relaunched_trial_continues_the_same_trial_with_the_values_of_an_uninterrupted_one(tmp_path):
    journal = str(tmp_path / "journal.log")
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(journal))
    study = optuna.create_study(study_name="relaunch", storage=storage)
    for _ in range(2):
        study.enqueue_trial({"lr": 0.01})

    def launch(key: str, *extra: str) -> tuple[int, dict[str, Any], str]:
        ckpt = tmp_path / key
        ckpt.mkdir(exist_ok=True)
        out = str(tmp_path / f"{key}.json")
        proc = run_job_process(
            [sys.executable, JOB, journal, key, str(ckpt), out, *extra],
            timeout=120,
            env={**os.environ, "PYTHONWARNINGS": "default"},
        )
        with open(out) as fh:
            return proc.returncode, json.load(fh), proc.stderr

    code1, first, err1 = launch("preempted", "--preempt-at", "6")
    code2, second, err2 = launch("preempted")
    code3, plain, err3 = launch("plain")
    assert (code1, first["reason"], first["iteration"]) == (75, "preempted", 6), err1[-2000:]
    assert (code2, second["reason"], second["number"]) == (0, "max_epochs", first["number"]), err2[-2000:]
    assert second["resumed_from"] is not None
    assert (code3, plain["reason"]) == (0, "max_epochs"), err3[-2000:]
    assert all("already reported" not in err for err in (err1, err2, err3))
    trials = optuna.load_study(study_name="relaunch", storage=storage).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2, [
        (t.number, t.state, t.values, t.intermediate_values, t.user_attrs) for t in trials
    ]
    assert sorted(trials[0].intermediate_values) == [4, 8, 12, 16, 20, 24]
    assert trials[0].intermediate_values == trials[1].intermediate_values  # exact: floats equal
    assert trials[0].value == trials[1].value and second["weights"] == plain["weights"]
