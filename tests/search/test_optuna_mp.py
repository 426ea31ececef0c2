"""An Optuna trial trained by 2 real gloo processes (``idist.Parallel``) that the objective's process starts
with the trial as an argument: only rank 0 reports, both ranks stop at the batch of the prune, and the launcher
learns the outcome with ``raise_if_pruned(trial)``. The study lives in the launching process (an in-memory one:
the processes get a ``RemoteTrial`` it serves) or in a journal file it created. A plain copy of an in-memory
trial is refused on both ranks (its reports would never reach the launcher's study). The job runs in a
subprocess bounded by a timeout."""

from __future__ import annotations

import json
import os
import pickle
import sys
from typing import Any

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

optuna = pytest.importorskip("optuna", reason="Optuna is an optional extra (tox -e optuna)")

import ignite.distributed as idist  # noqa: E402

from ignite_speed.handlers import LoopLimits, StopController, ValidationSchedule  # noqa: E402
from ignite_speed.search.optuna_trial import OptunaPruning, raise_if_pruned  # noqa: E402
from tests.helpers import run_on_two_gloo_ranks, run_rank_job, scored_trial_engines  # noqa: E402

pytestmark = pytest.mark.slow  # 2 gloo processes
BATCHES = 4
MESSAGE = "pruned at steps 6: val_acc=0.8"


def _train(trial: Any, max_epochs: int = 5) -> dict[str, Any]:
    rank = idist.get_rank()
    # rank 1's value is never reported
    trainer, evaluator, _ = scored_trial_engines(lambda k: round(0.5 + k / 10 + rank, 6), offset=rank)

    LoopLimits(max_epochs=max_epochs).attach(trainer)
    ValidationSchedule(evaluator, [0], val_check_interval=2, num_sanity_val_steps=0).attach(trainer)
    OptunaPruning(trial, "val_acc").attach(trainer)
    try:
        trainer.run(list(range(BATCHES)))
    except ValueError as exc:
        return {"error": str(exc)}
    controller = StopController.of(trainer)
    assert controller is not None
    return {
        "iteration": trainer.state.iteration,
        "reason": controller.stop_reason.value,
        "message": controller.stop_message,
        "val_acc": evaluator.state.metrics["val_acc"],
    }


def job_rank(local_rank: int, out_dir: str, journal: Any, memory: Any, complete: Any, copy: bytes) -> None:
    lr = complete.suggest_float("lr", 1e-3, 1.0, log=True)  # the launcher's value, on both ranks
    results = {
        "types": [type(t).__name__ for t in (journal, memory, complete)],
        "journal": _train(journal),
        "memory": _train(memory),
        "complete": _train(complete, max_epochs=2),
        "copy": _train(pickle.loads(copy)),
        "lr": lr,
    }
    if idist.get_rank() == 0:
        complete.set_user_attr("val_acc", results["complete"]["val_acc"])  # the objective's value
    with open(os.path.join(out_dir, f"optuna_{idist.get_rank()}.json"), "w") as f:
        json.dump(results, f)


def _pruned_message(trial: Any) -> str | None:
    try:
        raise_if_pruned(trial)
    except optuna.TrialPruned as exc:
        return str(exc)
    return None


def main(job: str, out_dir: str, port: int) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(os.path.join(out_dir, "j.log")))
    pruner = optuna.pruners.ThresholdPruner(upper=0.75)
    journal = optuna.create_study(study_name="mp", storage=storage, direction="maximize", pruner=pruner).ask()
    memory = optuna.create_study(direction="maximize", pruner=pruner)  # in this process only
    finished = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    complete = finished.ask()
    lr = complete.suggest_float("lr", 1e-3, 1.0, log=True)
    copy = pickle.dumps(optuna.create_study().ask())  # plain pickle: a copy of the in-memory storage
    messages: list[str | None] = []

    def objective(trial: Any) -> float:  # what a user writes: the trial passed to the processes
        run_on_two_gloo_ranks(job_rank, port, out_dir, journal, trial, complete, copy)
        messages.append(_pruned_message(trial))
        raise_if_pruned(trial)
        return 0.0

    memory.optimize(objective, n_trials=1)
    messages += [_pruned_message(journal), _pruned_message(complete)]
    finished.tell(complete, complete.user_attrs["val_acc"])
    launcher = {
        "messages": messages,
        "memory": [memory.trials[0].state.name, {str(k): v for k, v in memory.trials[0].intermediate_values.items()}],
        "journal": {str(k): v for k, v in journal.study.trials[0].intermediate_values.items()},
        "complete": [
            finished.trials[0].state.name,
            finished.trials[0].value,
            len(finished.trials[0].intermediate_values),
        ],
        "lr": lr,
    }
    with open(os.path.join(out_dir, "launcher.json"), "w") as f:
        json.dump(launcher, f)


@pytest.fixture(scope="module")
def ran(tmp_path_factory: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    out = tmp_path_factory.mktemp("optuna_mp")
    ranks = run_rank_job(os.path.abspath(__file__), "optuna", out, timeout=120)
    with open(out / "launcher.json") as f:
        return json.load(f), ranks


def test_the_processes_get_a_remote_trial_of_an_in_memory_study_and_the_journal_trial_itself(ran):
    for r in ran[1]:
        assert r["types"] == ["Trial", "RemoteTrial", "RemoteTrial"]


@pytest.mark.parametrize("study", ["memory", "journal"])
def test_the_launchers_study_gets_rank_0s_reports_and_both_ranks_stop_at_the_prune(ran, study):
    launcher, (r0, r1) = ran
    stop = {"iteration": 6, "reason": "pruned", "message": MESSAGE}
    assert r0[study] == {**stop, "val_acc": 0.8} and r1[study] == {**stop, "val_acc": 1.8}
    values = launcher[study][1] if study == "memory" else launcher[study]
    assert values == {"2": 0.6, "4": 0.7, "6": 0.8}  # in the launcher's study: rank 0's values only


def test_raise_if_pruned_of_the_trial_raises_trial_pruned_in_the_launcher(ran):
    launcher = ran[0]
    assert launcher["messages"] == [MESSAGE, MESSAGE, None]  # the in-memory, journal and finished trials
    assert launcher["memory"][0] == "PRUNED"  # study.optimize got optuna.TrialPruned from the objective


def test_a_finished_trial_gets_rank_0s_metric_and_the_children_get_the_launchers_parameters(ran):
    launcher, (r0, r1) = ran
    stop = {"iteration": 8, "reason": "max_epochs", "message": "max_epochs=2 reached"}
    assert r0["complete"] == {**stop, "val_acc": 0.9} and r1["complete"] == {**stop, "val_acc": 1.9}
    assert launcher["complete"] == ["COMPLETE", 0.9, 4]  # rank 0's user attribute, told by the launcher
    assert r0["lr"] == r1["lr"] == launcher["lr"]  # suggest_float in a child: the launcher's value


def test_a_plain_copy_of_an_in_memory_trial_is_refused_on_every_rank_with_the_fix(ran):
    for r in ran[1]:
        error = r["copy"]["error"]
        assert "in-memory storage, but training runs in 2 processes and this one holds a copy of it" in error
        assert "import ignite_speed.search.optuna_trial in the launching process before it starts" in error


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
