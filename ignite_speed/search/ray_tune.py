"""Ray Tune: report every validation run with an ignite-speed checkpoint, and resume a paused trial exactly
(``pip install "ray[tune]"``).

.. code-block:: python

    def train_fn(config):
        ...
        RayTunePruning("val_acc", to_save={"model": model, "optimizer": optimizer}).attach(trainer)
        trainer.run(train_loader)      # a resumed trial (PBT, HyperBand) continues from its checkpoint

At every validation run, :class:`RayTunePruning` calls ``ray.tune.report`` with the monitor, the step in its
unit (``"step"``) and a checkpoint of ``to_save``, the trainer and ignite-speed's loop. When the scheduler stops
the trial (ASHA, HyperBand) Ray ends ``report`` with ``SystemExit``: the run then ends there with
``StopReason.PRUNED``, unless its limits end it at that batch anyway (a scheduler's ``max_t`` equal to the
trial's length): then with their reason. A paused trial is stopped the same way; Ray calls the function again
later with the checkpoint, which the handler loads when the run starts. Where the resumed trial's config built an
optimizer hyperparameter other than the checkpoint's trial did (PBT's explore), the new value is set after the
load (:func:`apply_config_changes`).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Mapping
from typing import Any

import torch

from .._logging import logger
from ..distributed._dist import get_world_size
from ..handlers.pruning import Pruning

__all__ = ["RayTunePruning", "CHECKPOINT_FILE", "optimizer_hyperparameters", "apply_config_changes"]

CHECKPOINT_FILE = "ignite_speed.pt"
_TRAINER, _LOOP = "trainer", "ignite_speed"
_BUILT = "built_hyperparameters"  # the optimizers' hyperparameters as the trial's config made them
_PLAIN = (bool, int, float, str, type(None))


class RayTunePruning(Pruning):
    """:class:`~ignite_speed.handlers.Pruning` for a Ray Tune trial (a function trainable).

    Args:
        monitor: the validation metric reported (Tune's ``metric``).
        to_save: the objects to checkpoint besides the trainer and the loop (model, optimizer, scheduler...),
            each with ``state_dict`` / ``load_state_dict``; the model at least (a ``torch.nn.Module``).
        unit: the unit of the reported ``"step"`` (use ``time_attr="step"`` in the scheduler to compare trials
            in it; Tune's own ``training_iteration`` counts reports).

    A trial trains in one process: built where training runs in several, it is refused.
    """

    def __init__(self, monitor: str, to_save: Mapping[str, Any], unit: str = "steps") -> None:
        super().__init__(monitor, unit=unit)
        if (
            not isinstance(to_save, Mapping)
            or any(not hasattr(v, "state_dict") for v in to_save.values())
            or _LOOP in to_save
            or _BUILT in to_save
        ):
            raise ValueError(
                f"RayTunePruning(to_save={_brief(to_save)}): accepted: a dict of objects with state_dict(), "
                f"without the keys {_LOOP!r} and {_BUILT!r} (the handler saves its own state under them)"
            )
        if not any(isinstance(v, torch.nn.Module) for v in to_save.values()):
            # else a trial that Ray pauses (or restarts after a failure) would go on from the checkpoint's step
            # with the weights it starts with
            raise ValueError(
                f"RayTunePruning(to_save={_brief(to_save)}) holds no torch.nn.Module, so a trial that Ray resumes from "
                f"its checkpoint would not get its weights back; accepted: the model in to_save, with the "
                f"optimizer and the rest of the trial's state: {{'model': model, 'optimizer': optimizer, ...}}"
            )
        world = get_world_size()
        if world > 1:
            # processes started inside a trial (idist.Parallel) have no Tune session, where tune.report only warns,
            # and Ray Train's workers must all report: the trial would not be reported or resumed on every rank
            raise ValueError(
                f"RayTunePruning({monitor!r}): training runs in {world} processes, but Ray Tune's report and "
                f"checkpoint reach the trial's own process only, so the trial would not be reported, pruned or "
                f"resumed on every rank; accepted: a trial that trains in one process, or OptunaPruning for a "
                f"search whose trials train in several processes"
            )
        self.to_save = dict(to_save)
        self.resumed_from: str | None = None
        self.built: dict[str, list[dict[str, Any]]] = {}  # optimizer_hyperparameters(to_save) as the trial began
        self.config_changes: list[tuple[str, int, str, Any, Any]] = []  # what apply_config_changes set at resume
        self._done = False

    def _objects(self) -> dict[str, Any]:
        loop = self.loop
        owner = loop.parts.speedups or loop  # the Speedups also save the precision's state
        objects = {**self.to_save, _LOOP: owner}
        if not any(v is loop.trainer for v in objects.values()):
            objects[_TRAINER] = loop.trainer
        return objects

    def before_run(self) -> None:
        """Load the trial's checkpoint (a trial Ray resumes after a pause or a failure) into the first run."""
        from ray import tune

        if self._done:
            return
        with warnings.catch_warnings():  # (Ray warns outside a trial; the refusal below says more)
            warnings.simplefilter("ignore")
            in_trial = tune.get_context().get_trial_id() is not None
        if not in_trial:
            raise ValueError(
                f"{self!r} reports to the Ray Tune trial this process runs, but it runs in none (Ray's report "
                f"would only warn and the run would train unreported); accepted: the function run by "
                f"tune.Tuner(train_fn, ...).fit(), or pruning=None to train it outside a search"
            )
        self._done = True
        self.built = optimizer_hyperparameters(self.to_save)  # as this trial's config made them
        checkpoint = tune.get_checkpoint()
        if checkpoint is None or self.loop.trainer.state.iteration:
            return
        from ignite.handlers import Checkpoint

        with checkpoint.as_directory() as folder:
            path = os.path.join(folder, CHECKPOINT_FILE)
            state = torch.load(path, map_location="cpu", weights_only=True)
        Checkpoint.load_objects(to_load=self._objects(), checkpoint=state)
        self.loop.setup.loaded_from(path)
        self.resumed_from = path
        self.config_changes = apply_config_changes(self.to_save, state.get(_BUILT) or {}, self.built)
        if self.config_changes:
            logger.info(
                "RayTunePruning: the trial's config changed %s since the checkpoint's trial was built (a PBT "
                "explore): training goes on with the new values",
                ", ".join(
                    f"{key}[{group}].{name} {old!r} -> {new!r}" for key, group, name, old, new in self.config_changes
                ),
            )

    def ask(self, value: float, step: float, first: bool) -> bool:
        if not first:
            return False  # a replayed validation run (a resumed trial): Tune has it already
        from ray import tune

        # the loop's state is from before this validation run (the loop's rule for a checkpoint written during
        # one): a resumed trial validates here again, exactly; this handler's own says the run was reported
        state = {key: obj.state_dict() for key, obj in self._objects().items()}
        state[_LOOP][self.name] = self.state_dict()
        state[_BUILT] = self.built
        with tempfile.TemporaryDirectory() as folder:
            torch.save(state, os.path.join(folder, CHECKPOINT_FILE))
            try:
                tune.report({self.monitor: value, "step": step}, checkpoint=tune.Checkpoint.from_directory(folder))
            except SystemExit:  # the scheduler stopped (or paused) this trial: end the run here
                # (a prune, unless the run ends here anyway: ASHA's max_t at the trial's own length)
                return not self.loop.ends_at_this_decision()
        return False


def _brief(to_save: Any) -> str:
    """``to_save`` for a message: its keys and the types of its objects (an optimizer's repr spans lines)."""
    if not isinstance(to_save, Mapping):
        return repr(to_save)
    return "{" + ", ".join(f"{key!r}: <{type(obj).__name__}>" for key, obj in to_save.items()) + "}"


def optimizer_hyperparameters(to_save: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The plain hyperparameters (``lr``, ``momentum``, ``betas``...) of each param group of each optimizer."""
    return {
        key: [
            {name: value for name, value in group.items() if name != "params" and _is_plain(value)}
            for group in obj.param_groups
        ]
        for key, obj in to_save.items()
        if isinstance(obj, torch.optim.Optimizer)
    }


def _is_plain(value: Any) -> bool:
    """A value a checkpoint keeps as plain data (tensors and other objects are not compared)."""
    return isinstance(value, _PLAIN) or (isinstance(value, tuple) and all(isinstance(v, _PLAIN) for v in value))


def apply_config_changes(
    to_save: Mapping[str, Any], saved: Mapping[str, Any], built: Mapping[str, list[dict[str, Any]]]
) -> list[tuple[str, int, str, Any, Any]]:
    """After a checkpoint loaded: where this trial's code built an optimizer hyperparameter other than the
    checkpoint's trial did (``saved``: its :func:`optimizer_hyperparameters`), the search changed the config (a
    PBT explore, or exploit of another trial's checkpoint), and this trial's value is set, as Ray's PBT guide
    does by hand; an LR scheduler of that optimizer in ``to_save`` gets the new ``initial_lr`` as its base.
    A value the config did not change stays the checkpoint's (a scheduler's decay of ``lr`` included).
    Returns the changes set: ``(key, group, name, old, new)``."""
    changes: list[tuple[str, int, str, Any, Any]] = []
    for key, groups in built.items():
        old_groups = saved.get(key)
        if not isinstance(old_groups, list) or len(old_groups) != len(groups):
            continue  # (a checkpoint of an older version, or another model: nothing to compare)
        optimizer: Any = to_save[key]
        rebase = False
        for i, (new, old) in enumerate(zip(groups, old_groups)):
            for name, value in new.items():
                if name in old and old[name] != value:
                    optimizer.param_groups[i][name] = value
                    changes.append((key, i, name, old[name], value))
                    rebase = rebase or name == "initial_lr"
        if rebase:
            bases = [group["initial_lr"] for group in optimizer.param_groups]
            for obj in to_save.values():
                if getattr(obj, "optimizer", None) is optimizer and hasattr(obj, "base_lrs"):
                    obj.base_lrs = list(bases)
    return changes
