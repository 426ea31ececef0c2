"""The launching process's trials served to the processes it starts (ignite_speed/search/remote_trial.py), in one
process: the host's threads serve, the test's thread is the client. What ``ForkingPickler`` (the spawn start
method's pickler) makes of a trial, the calls forwarded and their errors, a wrong key, and the pruning handler
on a served trial. The multi-process runs are in test_optuna_mp.py."""

from __future__ import annotations

import pickle
import threading
from multiprocessing import AuthenticationError
from multiprocessing.reduction import ForkingPickler
from typing import Any

import pytest
import torch
from ignite.engine import Engine, Events

optuna = pytest.importorskip("optuna", reason="Optuna is an optional extra (tox -e optuna)")

from ignite_speed import attach_speedups  # noqa: E402
from ignite_speed.search.optuna_trial import PRUNED_ATTR, raise_if_pruned  # noqa: E402
from ignite_speed.search.remote_trial import RemoteTrial, serve  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _spawned(obj: Any) -> Any:
    """``obj`` as a process started by the spawn start method gets it."""
    return pickle.loads(ForkingPickler.dumps(obj))


def _study(pruner: Any = None) -> Any:
    return optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0), pruner=pruner)


def test_a_trial_of_an_in_memory_study_reaches_a_spawned_process_as_a_trial_served_by_this_one():
    study = _study()
    trial = study.ask()
    remote = _spawned(trial)
    assert type(remote) is RemoteTrial and remote.number == 0
    lr = remote.suggest_float("lr", 1e-3, 1.0, log=True)
    assert trial.params == remote.params == {"lr": lr}
    remote.report(0.5, 3)
    remote.set_user_attr("val_acc", 0.5)
    assert remote.should_prune() is False and remote.stored_steps() == {3}
    assert study.trials[0].intermediate_values == {3: 0.5} and trial.user_attrs == remote.user_attrs == {"val_acc": 0.5}
    assert remote.suggest_float("lr", 1e-3, 1.0, log=True) == lr  # asked again: the launcher's value
    again = pickle.loads(pickle.dumps(remote))  # it passes on: address, key and number
    assert again.params == {"lr": lr} and _spawned(trial).number == 0


def test_plain_pickle_and_a_journal_trial_are_unchanged(tmp_path):
    assert type(pickle.loads(pickle.dumps(_study().ask()))) is optuna.trial.Trial  # a copy, as before
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "j.log")))
    trial = optuna.create_study(storage=storage).ask()
    copy = _spawned(trial)  # every process reaches a journal: the trial itself
    assert type(copy) is optuna.trial.Trial
    copy.report(1.5, 2)
    assert trial.study.trials[0].intermediate_values == {2: 1.5}


def test_errors_reach_the_caller_with_their_type_and_message():
    remote = _spawned(_study().ask())
    with pytest.raises(ValueError) as err:
        remote.suggest_float("x", 2.0, 1.0)
    assert err.value.args == ("`low <= high` must hold, but got (low=2.0, high=1.0).",)
    assert err.value.__notes__ == ["(raised by trial 0 in its launching process, for call 'suggest_float')"]
    with pytest.raises(TypeError, match="The `step` argument is of type '<class 'str'>' but supposed to be an int"):
        remote.report(0.5, "x")
    with pytest.raises(AttributeError, match="'Trial' object has no attribute 'no_such_name'"):
        remote.no_such_name  # noqa: B018
    assert remote.params == {}  # the host goes on


class _Served:
    """A served object whose results and errors do not pickle."""

    number = 7

    def lock(self) -> Any:
        return threading.Lock()

    def fail(self) -> None:
        raise ValueError(threading.Lock())


def test_what_does_not_pickle_becomes_a_runtime_error_with_its_repr():
    remote = serve(_Served())
    with pytest.raises(RuntimeError, match=r"^ValueError\(<unlocked _thread.lock object at"):
        remote.fail()
    with pytest.raises(RuntimeError, match=r"^the result <unlocked _thread.lock object at .*> does not pickle"):
        remote.lock()
    assert remote.number == 7


def test_study_and_private_names_are_refused_without_asking_the_host():
    remote = RemoteTrial("/nonexistent/host", b"k", 0, 3)  # no host: an answer would have to come from here
    assert not hasattr(remote, "study") and not hasattr(remote, "_trial_id")
    with pytest.raises(AttributeError, match="RemoteTrial.study: this trial is served by the launching process"):
        remote.study  # noqa: B018
    assert hasattr(remote, "report") and hasattr(remote, "should_prune")  # what the pruning flag checks
    with pytest.raises(RuntimeError, match=r"RemoteTrial\(number=3\): cannot reach the launching process"):
        remote.should_prune()


def test_a_wrong_key_is_refused_and_the_host_goes_on():
    trial = _study().ask()
    remote = _spawned(trial)
    intruder = RemoteTrial(remote._address, b"0" * 32, remote._key, remote.number)
    with pytest.raises(AuthenticationError):
        intruder.set_user_attr("x", 1)
    remote.set_user_attr("y", 2)
    assert trial.user_attrs == {"y": 2}


def _objective(trial: Any, quality: float) -> float:
    """A trial of 2 epochs of 4 batches trained in this process on ``trial`` (a served one)."""
    trainer, evaluator = Engine(lambda e, b: 0.0), Engine(lambda e, b: None)

    @evaluator.on(Events.COMPLETED)
    def score(e: Engine) -> None:
        e.state.metrics["val_acc"] = quality * trainer.state.iteration / 8

    cfg = {
        "max_epochs": 2,
        "val_check_interval": 2,
        "num_sanity_val_steps": 0,
        "min_epochs": 1,
        "pruning": {"trial": trial, "monitor": "val_acc"},
    }
    attach_speedups(trainer, evaluator, cfg, val_data=[0])
    trainer.run(list(range(4)))
    return float(evaluator.state.metrics["val_acc"])


def test_the_pruning_flag_on_a_served_trial_records_the_final_prune_for_raise_if_pruned():
    torch.manual_seed(0)
    study = _study(optuna.pruners.ThresholdPruner(lower=0.2))
    bad, good = study.ask(), study.ask()
    assert _objective(_spawned(bad), 0.4) == 0.2  # pruned at step 2, stopped at the end of epoch 1 (min_epochs)
    assert _objective(_spawned(good), 1.0) == 1.0
    assert bad.user_attrs == {PRUNED_ATTR: "pruned at steps 2: val_acc=0.1"}
    assert study.trials[0].intermediate_values == {2: 0.1, 4: 0.2} and good.user_attrs == {}
    with pytest.raises(optuna.TrialPruned, match=r"^pruned at steps 2: val_acc=0.1$"):
        raise_if_pruned(bad)
    raise_if_pruned(good)  # not pruned: nothing
    with pytest.raises(optuna.TrialPruned, match=r"^pruned at steps 2: val_acc=0.1$"):
        raise_if_pruned(_spawned(bad))  # in a spawned process too


class _SwitchPruner(optuna.pruners.BasePruner):
    """Prunes while ``on``."""

    def __init__(self) -> None:
        self.on = True

    def prune(self, study: Any, trial: Any) -> bool:
        return self.on


def test_a_pruned_trial_continued_to_its_end_is_no_longer_recorded_as_pruned():
    pruner = _SwitchPruner()
    trial = _spawned(_study(pruner).ask())
    trainer, evaluator = Engine(lambda e, b: 0.0), Engine(lambda e, b: None)
    evaluator.add_event_handler(Events.COMPLETED, lambda e: e.state.metrics.update(val_acc=0.5))
    cfg = {"max_epochs": 1, "val_check_interval": 2, "num_sanity_val_steps": 0}
    speedups = attach_speedups(
        trainer, evaluator, {**cfg, "pruning": {"trial": trial, "monitor": "val_acc"}}, val_data=[0]
    )
    trainer.run(list(range(4)))
    assert trial.user_attrs == {PRUNED_ATTR: "pruned at steps 2: val_acc=0.5"}
    pruner.on = False
    speedups.extend(max_epochs=2)  # (optuna#3351's repechage: the pruned trial goes on)
    trainer.run(list(range(4)))
    assert (speedups.stop_reason.value, trainer.state.iteration) == ("max_epochs", 6)  # (the partial epoch counted)
    assert trial.user_attrs == {PRUNED_ATTR: None}
    raise_if_pruned(trial)  # not pruned any more: nothing
