"""The one attribute ignite-speed sets on a user's trainer: its :class:`TrainerParts`.

``create_trainer``'s step, the loop that the handlers share, the stop controller and the ``Speedups``
facade find each other through it, whichever of them comes first. Nothing else is set on the trainer
(besides ``trainer.run``, which the loop wraps, and ``trainer.state.optimizer_step``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["TrainerParts", "ATTRIBUTE"]

ATTRIBUTE = "_ignite_speed"


class TrainerParts:
    """What ignite-speed keeps for one trainer.

    Attributes:
        loop: the :class:`~ignite_speed.loop.TrainingLoop`, once a handler attached (else ``None``).
        controller: the :class:`~ignite_speed.loop.StopController` (the loop's, or one bound before it).
        precision: the precision object of ``create_trainer``'s step (``None`` for a step of the user's).
        accumulate: ``create_trainer``'s ``accumulate_grad_batches`` (the loop counts optimizer steps with it).
        accumulation: the step's accumulation window, which the loop positions on resume (``None``: the step
            cannot replay batches).
        model: the model the step trains (its buffers are put back after a resume's replay of a window, and
            validation gives it back in the mode it had).
        speedups: the ``Speedups`` of ``attach_speedups``, if it was used.
        rehearsal: what times ``create_trainer``'s step warm and undoes it (a
            :class:`~ignite_speed.step.rehearsal.StepRehearsal`; ``None``: the step cannot be rehearsed).
    """

    __slots__ = ("loop", "controller", "precision", "accumulate", "accumulation", "model", "speedups", "rehearsal")

    def __init__(self) -> None:
        self.loop: Any = None
        self.controller: Any = None
        self.precision: Any = None
        self.accumulate = 1
        self.accumulation: Any = None
        self.model: Any = None
        self.speedups: Any = None
        self.rehearsal: Any = None

    @staticmethod
    def find(trainer: Any) -> TrainerParts | None:
        """The parts of ``trainer``, if ignite-speed has set any."""
        return getattr(trainer, ATTRIBUTE, None)

    @staticmethod
    def of(trainer: Any) -> TrainerParts:
        """The parts of ``trainer``, created empty the first time."""
        parts = getattr(trainer, ATTRIBUTE, None)
        if parts is None:
            parts = TrainerParts()
            setattr(trainer, ATTRIBUTE, parts)
        return parts

    def set_step(self, precision: Any, accumulate: int, accumulation: Any, model: Any = None) -> None:
        """What ``create_trainer``'s step applies, and the model it trains (read by the loop and ``Speedups``)."""
        self.precision, self.accumulate, self.accumulation = precision, int(accumulate), accumulation
        self.model = model

    def forget_loop(self, trainer: Any, loop: Any, controller: Any | None) -> None:
        """A detached ``loop`` (and ``controller``, when the loop made it) is gone; the attribute goes too when
        nothing is left in it."""
        if self.loop is loop:
            self.loop = None
        if controller is not None and self.controller is controller:
            self.controller = None
        self.drop_if_empty(trainer)

    def drop_if_empty(self, trainer: Any) -> None:
        """Take the attribute off ``trainer`` when nothing is left in it (a detached loop)."""
        if all(
            getattr(self, name) is None
            for name in ("loop", "controller", "precision", "accumulation", "model", "speedups")
        ):
            if getattr(trainer, ATTRIBUTE, None) is self:
                delattr(trainer, ATTRIBUTE)
