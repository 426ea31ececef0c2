"""Optuna: prune a trial through ignite-speed's stop controller (``pip install optuna``).

.. code-block:: python

    def objective(trial):
        ...
        OptunaPruning(trial, monitor="val_acc").attach(trainer)   # or attach_speedups(..., pruning={...})
        trainer.run(train_loader)
        raise_if_pruned(trainer)           # the one line: optuna.TrialPruned for a pruned trial
        return evaluator.state.metrics["val_acc"]

Optuna wants an integer step: ``unit="steps"`` reports the optimizer step, ``"epochs"`` hundredths of an epoch
(1.5 epochs: step 150) and ``"seconds"`` whole training seconds.
"""

from __future__ import annotations

from typing import Any

from ..distributed._dist import get_world_size
from ..handlers.pruning import Pruning
from ..loop.plan import RunPlan
from ..loop.stop import StopController, StopReason

__all__ = ["OptunaPruning", "continue_or_ask", "raise_if_pruned", "RUN_KEY_ATTR"]

RUN_KEY_ATTR = "ignite_speed_run"  # the user attribute under which continue_or_ask keeps a trial's run key
_SCALE = {"steps": 1, "epochs": 100, "seconds": 1}


def _optuna() -> Any:
    import optuna  # (an optional extra: loaded only here)

    return optuna


class OptunaPruning(Pruning):
    """:class:`~ignite_speed.handlers.Pruning` for an Optuna ``Trial``: rank 0 reports with ``trial.report``
    and asks ``trial.should_prune()`` after every validation run.

    A step already in the trial's storage (a relaunched trial that validates again where its earlier attempt
    did) is not reported again: the pruner is asked on the stored value. Distributed runs need a storage that
    every process reaches (``JournalStorage(JournalFileBackend(path))``, an RDB URL): a trial pickled into
    spawned processes carries a *copy* of an in-memory storage, whose reports would be lost, so it is refused.
    """

    def __init__(self, trial: Any, monitor: str, unit: str = "steps") -> None:
        optuna = _optuna()
        if not isinstance(trial, optuna.trial.Trial):
            raise TypeError(
                f"OptunaPruning(trial={type(trial).__name__}): accepted: an optuna.trial.Trial (the "
                f"objective's argument, or study.ask()); a FrozenTrial cannot report"
            )
        super().__init__(monitor, unit=unit)
        self.trial = trial

    def on_run_start(self, plan: RunPlan) -> None:
        storage = self.trial.study._storage  # (no public accessor)
        if get_world_size() > 1 and isinstance(storage, _optuna().storages.InMemoryStorage):
            raise ValueError(
                "OptunaPruning: this trial's study has an in-memory storage, but training runs in "
                f"{get_world_size()} processes, which hold copies of it: their reports would not "
                "reach the study; accepted: a storage every process reaches, e.g. optuna.storages."
                "JournalStorage(optuna.storages.journal.JournalFileBackend(path)) or an RDB URL"
            )

    def optuna_step(self, step: float) -> int:
        """The integer step Optuna gets for ``step`` in :attr:`unit`."""
        return int(round(step * _SCALE[self.unit])) if self.unit == "epochs" else int(step)

    def ask(self, value: float, step: float, first: bool) -> bool:
        number = self.optuna_step(step)
        if first and number not in self._stored_steps():
            self.trial.report(value, number)
        return bool(self.trial.should_prune())

    def _stored_steps(self) -> set[int]:
        frozen = [t for t in self.trial.study.get_trials(deepcopy=False) if t.number == self.trial.number]
        return set(frozen[0].intermediate_values) if frozen else set()


def raise_if_pruned(trainer: Any) -> None:
    """Raise ``optuna.TrialPruned`` (with the stop message) when ``trainer``'s last run ended with
    ``StopReason.PRUNED``: the objective's line after ``trainer.run`` (with the ``pruning`` flag of
    ``attach_speedups`` or an :class:`OptunaPruning` of one's own)."""
    controller = StopController.of(trainer)
    if controller is not None and controller.stop_reason is StopReason.PRUNED:
        raise _optuna().TrialPruned(controller.stop_message)


def continue_or_ask(study: Any, run_key: str) -> Any:
    """The study's running trial whose run key is ``run_key`` (a relaunched job continues it), else a new
    trial (``study.ask()``) that keeps ``run_key`` as its user attribute ``ignite_speed_run``.

    With a persistent storage and ``autoresume``, a job preempted and relaunched under the same key continues
    the same trial: the same number and parameters, no step reported twice. ``run_key`` names the job's run
    (its checkpoint directory, for instance), and ``os.getpid()`` is a poor one (a relaunch has another)."""
    optuna = _optuna()
    if not isinstance(run_key, str) or not run_key:
        raise ValueError(f"continue_or_ask(run_key={run_key!r}): accepted: a non-empty str naming the job's run")
    running = [
        t
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        if t.user_attrs.get(RUN_KEY_ATTR) == run_key
    ]
    if running:
        # Optuna has no public way to re-open a running trial (optuna#3351): its id is what Trial takes
        return optuna.trial.Trial(study, running[-1]._trial_id)
    trial = study.ask()
    trial.set_user_attr(RUN_KEY_ATTR, run_key)
    return trial
