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

Distributed trials: an objective that starts the training processes itself passes them the trial
(``idist.Parallel(nproc_per_node=2).run(train, trial)``, ``torch.multiprocessing.spawn``) and ends with
``raise_if_pruned(trial)``. Importing this module makes a trial of an in-memory study pickle, for the processes
that the spawn and forkserver start methods start, as a
:class:`~ignite_speed.search.remote_trial.RemoteTrial` served by the launching process: the study stays there and
gets rank 0's reports. A trial of a journal or RDB storage pickles as before. At the end of a pruned run rank 0
records the stop message in the trial's user attribute ``ignite_speed_pruned``, which ``raise_if_pruned(trial)``
reads.
"""

from __future__ import annotations

import pickle
import warnings
from multiprocessing.reduction import ForkingPickler
from typing import Any

from ..distributed._dist import get_rank, get_world_size
from ..handlers.pruning import Pruning
from ..loop.plan import RunPlan
from ..loop.stop import StopController, StopReason
from .remote_trial import RemoteTrial, serve, stored_steps

__all__ = ["OptunaPruning", "continue_or_ask", "raise_if_pruned", "RUN_KEY_ATTR", "PRUNED_ATTR"]

RUN_KEY_ATTR = "ignite_speed_run"  # the user attribute under which continue_or_ask keeps a trial's run key
PRUNED_ATTR = "ignite_speed_pruned"  # the user attribute that holds a pruned run's stop message (rank 0 sets it)
_SCALE = {"steps": 1, "epochs": 100, "seconds": 1}


def _optuna() -> Any:
    import optuna  # (an optional extra: loaded only here)

    return optuna


class OptunaPruning(Pruning):
    """:class:`~ignite_speed.handlers.Pruning` for an Optuna ``Trial``: rank 0 reports with ``trial.report``
    and asks ``trial.should_prune()`` after every validation run.

    A step already in the trial's storage (a relaunched trial that validates again where its earlier attempt
    did) is not reported again: the pruner is asked on the stored value. When a run ends pruned, rank 0 sets
    the trial's user attribute ``ignite_speed_pruned`` to the stop message (:func:`raise_if_pruned` reads it
    in the launching process).

    Distributed runs: the trial is a :class:`~ignite_speed.search.remote_trial.RemoteTrial` of the launching
    process's in-memory study (what a trial passed to spawned processes becomes once this module is imported
    there), or a trial of a storage every process reaches (``JournalStorage(JournalFileBackend(path))``, an RDB
    URL). A plain copy of an in-memory trial (the fork start method, or a launcher that had not imported this
    module) would lose its reports, so it is refused with that fix.
    """

    def __init__(self, trial: Any, monitor: str, unit: str = "steps") -> None:
        optuna = _optuna()
        if not isinstance(trial, (optuna.trial.Trial, RemoteTrial)):
            raise TypeError(
                f"OptunaPruning(trial={type(trial).__name__}): accepted: an optuna.trial.Trial (the "
                f"objective's argument, or study.ask()) or the RemoteTrial it becomes in a spawned process; a "
                f"FrozenTrial cannot report"
            )
        super().__init__(monitor, unit=unit)
        self.trial = trial
        self._last_step: int | None = None  # the Optuna step of this process's last validation run
        self._warned_same_step = False

    def on_run_start(self, plan: RunPlan) -> None:
        super().on_run_start(plan)
        world = get_world_size()
        if world > 1 and _is_in_memory(self.trial):
            raise ValueError(
                f"OptunaPruning: this trial's study has an in-memory storage, but training runs in {world} "
                "processes and this one holds a copy of it (the processes were started with the fork start "
                "method, or the launching process had not imported ignite_speed.search.optuna_trial when it "
                "started them): its reports would not reach the study; accepted: import "
                "ignite_speed.search.optuna_trial in the launching process before it starts the processes "
                "(spawn or forkserver start method: the trial is then served by the launching process), or a "
                "storage every process reaches, e.g. optuna.storages.JournalStorage("
                "optuna.storages.journal.JournalFileBackend(path)) or an RDB URL"
            )

    def optuna_step(self, step: float) -> int:
        """The integer step Optuna gets for ``step`` in :attr:`unit`."""
        return int(round(step * _SCALE[self.unit])) if self.unit == "epochs" else int(step)

    def ask(self, value: float, step: float, first: bool) -> bool:
        number = self.optuna_step(step)
        if first and number == self._last_step:
            self._warn_same_step(value, number)
        elif first:
            if number not in self._stored_steps():  # (else reported by an earlier attempt of this trial)
                self.trial.report(value, number)
            self._last_step = number
        return bool(self.trial.should_prune())

    def _warn_same_step(self, value: float, number: int) -> None:
        """Optuna keeps one value per step: a later validation run at the same step is not reported."""
        if self._warned_same_step:
            return
        self._warned_same_step = True
        fix = {
            "steps": "val_check_interval a multiple of accumulate_grad_batches",
            "epochs": "at most 100 validation runs per epoch",
            "seconds": "validation runs more than a second apart",
        }[self.unit]
        warnings.warn(
            f"OptunaPruning(unit={self.unit!r}): two validation runs at Optuna step {number}; Optuna keeps one "
            f"value per step, so {self.monitor}={value:.6g} and later runs at an already reported step are not "
            f"reported (the pruner decides on the values it has); accepted: a unit and schedule that give each "
            f"validation run its own step ({fix}, or another unit)",
            UserWarning,
            stacklevel=2,
        )

    def _stored_steps(self) -> set[int]:
        if isinstance(self.trial, RemoteTrial):
            return self.trial.stored_steps()  # (read where the storage is)
        return stored_steps(self.trial)

    def on_train_end(self, engine: Any) -> None:
        """Rank 0 records how the run ended in the trial: the stop message of a pruned run, for the launching
        process's :func:`raise_if_pruned` (once per run, at its end: a prune that ``min_epochs`` defers
        counts when it stops the run). A run that ends otherwise clears an earlier run's record (a pruned
        trial continued with ``Speedups.extend``)."""
        if get_rank() != 0:
            return
        controller = self.loop.controller
        message = controller.stop_message if controller.stop_reason is StopReason.PRUNED else None
        if message is not None or self.trial.user_attrs.get(PRUNED_ATTR) is not None:
            self.trial.set_user_attr(PRUNED_ATTR, message)


def raise_if_pruned(trainer_or_trial: Any) -> None:
    """Raise ``optuna.TrialPruned`` (with the stop message) when the last run ended with ``StopReason.PRUNED``:
    the objective's line after the training.

    ``trainer_or_trial``: the trainer (``trainer.run`` in the objective's process, with the ``pruning`` flag of
    ``attach_speedups`` or an :class:`OptunaPruning` of one's own), or the trial, for an objective whose
    training runs in processes it started (rank 0 records a prune in the trial; any storage)."""
    if isinstance(trainer_or_trial, RemoteTrial):
        message = trainer_or_trial.user_attrs.get(PRUNED_ATTR)
    elif isinstance(trainer_or_trial, _optuna().trial.Trial):
        trial = trainer_or_trial  # the storage's attributes: the trial's own copy misses other processes' writes
        message = trial.storage.get_trial_user_attrs(trial._trial_id).get(PRUNED_ATTR)
    else:
        controller = StopController.of(trainer_or_trial)
        if controller is None or controller.stop_reason is not StopReason.PRUNED:
            return
        message = controller.stop_message or "pruned"
    if message is not None:
        raise _optuna().TrialPruned(message)


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


def _is_in_memory(trial: Any) -> bool:
    return not isinstance(trial, RemoteTrial) and isinstance(trial.storage, _optuna().storages.InMemoryStorage)


def _reduce_trial(trial: Any) -> tuple[Any, ...]:
    """How ``ForkingPickler`` (what starts spawned processes) pickles an Optuna ``Trial``: a trial of an
    in-memory storage as a :class:`RemoteTrial` served by this process, any other as before."""
    if _is_in_memory(trial):
        return serve(trial).__reduce__()
    return trial.__reduce_ex__(pickle.DEFAULT_PROTOCOL)


def _register_trial_reducer() -> None:
    try:
        import optuna  # (an optional extra: this module works without it, and then reduces nothing)
    except ImportError:  # pragma: no cover
        return
    ForkingPickler.register(optuna.trial.Trial, _reduce_trial)


_register_trial_reducer()
