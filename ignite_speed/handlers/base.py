"""The one protocol of ignite-speed's handlers: :class:`LoopHandler`.

A handler is one concern of a trainer's :class:`~ignite_speed.loop.TrainingLoop`. It attaches with
``attach(trainer)`` (the first handler of a trainer makes its loop), the loop calls its hooks
(:class:`~ignite_speed.loop.hooks.LoopHooks`: ``before_run``, ``plan_run``, ``on_run_start``, ``on_train_start``,
``on_batch_end``, ``on_agreement``, ``on_validation_end``, ``on_epoch_end``, ``on_train_end``,
``on_run_exit``, ``on_new_run``, ``on_resume``), and its own state is ``state_dict()`` / ``load_state_dict()``, saved under
its :attr:`~ignite_speed.loop.hooks.LoopHooks.name` in the loop's checkpoint
(``TrainingLoop.of(trainer).state_dict()``). Stop requests go to the trainer's one
:class:`~ignite_speed.loop.StopController` (``self.loop.controller``), which syncs them across ranks and
applies ``min_epochs`` / ``min_steps``.
"""

from __future__ import annotations

from typing import Any, TypeVar

from ignite.engine import Engine

from ..loop.hooks import LoopHooks
from ..loop.training_loop import TrainingLoop

__all__ = ["LoopHandler"]

_Handler = TypeVar("_Handler", bound="LoopHandler")


class LoopHandler(LoopHooks):
    """Base of every ignite-speed handler: attach it to a trainer, and override the hooks it needs."""

    def __init__(self) -> None:
        self._loop: TrainingLoop | None = None

    def attach(self: _Handler, trainer: Engine) -> _Handler:
        """Attach to ``trainer`` (a plain Ignite ``Engine``); returns ``self``."""
        self._attach_to(trainer)
        return self

    def _attach_to(self, trainer: Engine) -> TrainingLoop:
        loop = TrainingLoop.of_or_attach(trainer)
        if self._loop is not None and self._loop is not loop:
            raise ValueError(f"{type(self).__name__} is already attached to another trainer; make one per trainer")
        loop.handlers.add(self)
        self._loop = loop
        try:
            self._attached(loop)
        except BaseException:  # refused: the trainer takes a corrected handler
            loop.handlers.remove(self)
            self._loop = None
            raise
        return loop

    def _attached(self, loop: TrainingLoop) -> None:
        """What a handler checks or sets up once attached."""

    def state_dict(self) -> dict[str, Any]:
        """This handler's own state (none by default: its settings come from its constructor). The run's
        state is the loop's: checkpoint ``TrainingLoop.of(trainer)`` (or the ``Speedups``) with the trainer."""
        self.loop  # noqa: B018  (refuses a handler not attached: there is no run to save yet)
        return {}

    @property
    def attached(self) -> bool:
        return self._loop is not None

    @property
    def loop(self) -> TrainingLoop:
        if self._loop is None:
            raise RuntimeError(f"{type(self).__name__} is not attached to a trainer: call attach(trainer) first")
        return self._loop
