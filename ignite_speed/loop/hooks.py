"""The handler protocol: what the loop calls on the handlers registered with it.

Every ignite-speed handler (:mod:`ignite_speed.handlers`, built on
:class:`~ignite_speed.handlers.base.LoopHandler`) is a :class:`LoopHooks`: the loop calls each hook on
every handler that overrides it, in the order of the handlers' :attr:`~LoopHooks.order`, and never looks
a handler up by name. A hook a handler does not override costs nothing (the loop keeps, per hook, the list
of handlers that override it; the per-batch hook is called only for those).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # pragma: no cover
    from ignite.engine import Engine

    from .plan import RunPlan

__all__ = ["LoopHooks", "HOOKS"]


class LoopHooks:
    """The hooks of a loop handler (each does nothing unless overridden).

    Attributes:
        name: the handler's key: one handler of each name per trainer, and its part of the loop's
            checkpoint (``TrainingLoop.state_dict()[name]``).
        order: handlers' hooks run in ascending order (the stop sources that report at an epoch end before
            early stopping's check, the time budget before the limits that depend on it).
        skip_hooks: hooks that this instance's class overrides but that its settings do not need (the loop
            then does not call them: a time budget checked at epoch ends only adds no per-batch call).
    """

    name: ClassVar[str] = ""
    order: ClassVar[int] = 100
    skip_hooks: frozenset[str] = frozenset()  # hooks this instance overrides but needs not (per its settings)

    def before_run(self) -> None:
        """``trainer.run()`` was called: first thing, before the run's setup reads ``trainer.state`` (load a
        checkpoint here, as :class:`~ignite_speed.handlers.AutoResume` does)."""

    def plan_run(self, plan: RunPlan) -> None:
        """A ``trainer.run()`` starts: set the parts of ``plan`` this handler governs."""

    def on_run_start(self, plan: RunPlan) -> None:
        """The run's plan is resolved (batches per epoch known); before any training event."""

    def on_train_start(self) -> None:
        """Ignite's ``STARTED``: the training clock runs (after a resumed run's pending decision)."""

    def on_batch_end(self, engine: Engine) -> None:
        """After every training batch (after the app's own ``ITERATION_COMPLETED`` handlers): keep it cheap."""

    def on_agreement(self, engine: Engine) -> None:
        """At an agreement batch (about once a second) and at every epoch end: report deferred checks."""

    def on_validation_end(self, metrics: Mapping[str, Any]) -> None:
        """After each validation run of the schedule during training, with that run's metrics."""

    def on_epoch_end(self, engine: Engine) -> None:
        """At every training epoch's end, after its validation, before the loop's epoch-end decision."""

    def on_train_end(self, engine: Engine) -> None:
        """Ignite's ``COMPLETED``: training ended, for any reason."""

    def on_run_exit(self) -> None:
        """``trainer.run`` returns or raises (after ``COMPLETED``, or on an exception, which fires no
        ``COMPLETED``): release what the run took (:class:`~ignite_speed.handlers.PreemptionGuard`'s signal
        handlers)."""

    def on_new_run(self) -> None:
        """A new run starts from scratch on a loop that trained before (``trainer.state.max_epochs = None``):
        forget what the last run learnt."""

    def on_resume(self, replaying: bool) -> None:
        """A run resumes from a loaded checkpoint (``replaying``: the saved run had a decision pending,
        which the loop makes next)."""

    def report_fields(self) -> dict[str, Any]:
        """This handler's part of the run's record (:func:`~ignite_speed.report.run_report`)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """This handler's own state, as plain data."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""

    def detach(self) -> None:
        """The loop is being taken off the trainer: remove what this handler added to other engines."""


HOOKS = ("before_run", "plan_run", "on_run_start", "on_train_start", "on_batch_end", "on_agreement", "on_validation_end",
         "on_epoch_end", "on_train_end", "on_run_exit", "on_new_run", "on_resume", "report_fields", "detach")
