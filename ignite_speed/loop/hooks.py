"""The handler protocol: what the loop calls on the handlers registered with it.

Every ignite-speed handler (:mod:`ignite_speed.handlers`, built on
:class:`~ignite_speed.handlers.base.LoopHandler`) is a :class:`LoopHooks`: the loop calls each hook on
every handler that overrides it, in the order of the handlers' :attr:`~LoopHooks.order`, and never looks
a handler up by name. A hook a handler does not override costs nothing (the loop keeps, per hook, the list
of handlers that override it; the per-batch hook is called only for those): :class:`HandlerRegistry`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # pragma: no cover
    from ignite.engine import Engine

    from .plan import RunPlan

__all__ = ["LoopHooks", "HOOKS", "HandlerRegistry"]


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
        handlers). Called once for every run that called ``on_run_start``, however it ends (no training, a
        raise in the sanity check or in a handler's ``on_run_start``), so it must not assume that training ran."""

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


HOOKS = (
    "before_run",
    "plan_run",
    "on_run_start",
    "on_train_start",
    "on_batch_end",
    "on_agreement",
    "on_validation_end",
    "on_epoch_end",
    "on_train_end",
    "on_run_exit",
    "on_new_run",
    "on_resume",
    "report_fields",
    "detach",
)


class HandlerRegistry:
    """The loop's handlers, ordered by :attr:`~ignite_speed.loop.hooks.LoopHooks.order`, one per name.

    For each hook it keeps the bound methods of the handlers that override it, so that calling a hook
    costs nothing for the handlers that do not implement it (the per-batch hook above all).
    """

    def __init__(self) -> None:
        self._handlers: list[LoopHooks] = []
        self.hooks: dict[str, list[Callable[..., Any]]] = {name: [] for name in HOOKS}

    def __iter__(self) -> Iterator[LoopHooks]:
        return iter(self._handlers)

    def __len__(self) -> int:
        return len(self._handlers)

    def names(self) -> list[str]:
        return [h.name for h in self._handlers]

    def add(self, handler: LoopHooks) -> None:
        """Register ``handler``; a second handler of the same name is refused."""
        for old in self._handlers:
            if old is handler:
                return
            if old.name == handler.name:
                raise ValueError(
                    f"{type(handler).__name__}.attach: this trainer already has a {type(old).__name__} "
                    f"attached; attach one handler per concern (change the one attached instead)"
                )
        self._handlers.append(handler)
        self._handlers.sort(key=lambda h: h.order)
        self._refresh()

    def remove(self, handler: LoopHooks) -> None:
        """Forget ``handler`` (``Speedups.extend`` replaces handlers with new settings)."""
        self._handlers = [h for h in self._handlers if h is not handler]
        self._refresh()

    def _refresh(self) -> None:
        # looked up once here rather than on every call
        for name in HOOKS:
            default = getattr(LoopHooks, name)
            # in place: the loop keeps a reference to the per-batch list
            self.hooks[name][:] = [
                getattr(h, name)
                for h in self._handlers
                if getattr(type(h), name, default) is not default and name not in h.skip_hooks
            ]

    def call(self, hook: str, *args: Any) -> None:
        for method in self.hooks[hook]:
            method(*args)

    def report_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        for method in self.hooks["report_fields"]:
            fields.update(method())
        return fields
