"""The ``precision`` flag for validation, test and predict: :func:`evaluate_with_precision`.

Lightning's precision plugins run every step, not only the training step, through the same two calls: the batch
through ``convert_input`` (``*-true``, ``64-true``: its floating tensors cast to the training dtype) and the step
inside ``forward_context`` (``*-mixed``: ``torch.autocast``; ``*-true``: the default dtype switched). An Ignite
evaluator's process function gets the same here, so a model trained in ``bf16-true`` validates on bf16 inputs (not
``mat1 and mat2 must have the same dtype``) and one trained in ``bf16-mixed`` validates under the autocast it
trained under (the metrics Lightning reports).

Ignite's metrics run after the process function, outside any autocast; under ``*-mixed`` the floating tensors of
its output are therefore returned in fp32 (as Lightning Fabric's ``convert_output`` does), so that a loss metric
computes in fp32 what autocast would have computed in fp32 inside the step.
"""

from __future__ import annotations

import contextlib
from typing import Any, Protocol

import torch
from ignite.engine import Engine

from .._compat import process_function, set_process_function
from ..loop.trainer_parts import TrainerParts
from .casting import cast_floating

__all__ = ["evaluate_with_precision", "EvaluatorPrecision", "PrecisionLike"]


class PrecisionLike(Protocol):
    """What an evaluator needs of a precision: :class:`~ignite_speed.step.Precision`, or ``precision_of(trainer)``
    of a DeepSpeed trainer."""

    effective_precision: str

    def convert_input(self, batch: Any) -> Any: ...

    def autocast(self) -> contextlib.AbstractContextManager[None]: ...


class EvaluatorPrecision:
    """The precision applied to one evaluator (returned by :func:`evaluate_with_precision`).

    :meth:`detach` gives the evaluator back its own process function; used as a context manager, the precision
    applies inside the ``with`` block only.
    """

    def __init__(self, evaluator: Engine, precision: PrecisionLike, *, owner: bool = True) -> None:
        self.evaluator = evaluator
        self.precision = precision
        self.attached = owner
        self._owner = owner  # False: a second handle on a precision applied before, which detach leaves in place
        self._step: Any = None
        self._wrapped: Any = None

    def _install(self) -> None:
        step = process_function(self.evaluator)
        precision = self.precision
        # torch.autocast runs the step (not apex, nor DeepSpeed, whose models hold the low-precision weights)
        mixed = (
            getattr(precision, "autocast_dtype", None) is not None
            and getattr(precision, "amp_backend", "native") == "native"
        )

        def step_with_precision(engine: Engine, batch: Any) -> Any:
            if not self.attached:  # detached while another wrapper sat on top of this one
                return step(engine, batch)
            with precision.autocast():
                output = step(engine, precision.convert_input(batch))
            # metrics run outside autocast: give them fp32, what autocast computes a loss in
            return cast_floating(output, torch.get_default_dtype()) if mixed else output

        step_with_precision.ignite_speed_precision = self  # type: ignore[attr-defined]
        self._step, self._wrapped = step, step_with_precision
        set_process_function(self.evaluator, step_with_precision)

    def detach(self) -> None:
        """Undo :func:`evaluate_with_precision` (the evaluator runs its own process function again)."""
        if not self._owner or not self.attached:
            return
        self.attached = False
        if process_function(self.evaluator) is self._wrapped:
            set_process_function(self.evaluator, self._step)

    def __enter__(self) -> EvaluatorPrecision:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def __repr__(self) -> str:
        return f"EvaluatorPrecision({self.precision.effective_precision!r}, attached={self.attached})"


def evaluate_with_precision(evaluator: Engine, precision: Any) -> EvaluatorPrecision:
    """Run ``evaluator``'s steps under ``precision``, as Lightning runs validation, test and predict steps.

    Args:
        evaluator: an Ignite ``Engine`` that evaluates (``create_supervised_evaluator``'s, or one with a process
            function of your own).
        precision: the :class:`~ignite_speed.step.Precision` training uses, or the trainer ``create_trainer``
            made (its ``precision_of(trainer)``).

    Each batch's floating tensors are cast to the training dtype for ``*-true``/``64-true``, the step runs inside
    :meth:`Precision.autocast() <ignite_speed.step.Precision.autocast>` (``torch.autocast`` for ``*-mixed``), and
    under ``*-mixed`` the floating tensors of the step's output reach the metrics in fp32. ``32-true`` changes
    nothing. Applying the same precision again returns a handle whose ``detach`` leaves the first in place; a
    different one is refused. ``attach_speedups`` calls this for the evaluator it is given and for the engines
    of ``speedups.test`` and ``speedups.predict``.
    """
    if not isinstance(evaluator, Engine):
        raise TypeError(f"evaluator has type {type(evaluator).__name__}; accepted: an ignite Engine")
    if isinstance(precision, Engine):
        parts = TrainerParts.find(precision)
        if parts is None or parts.precision is None:
            raise ValueError(
                "evaluate_with_precision(evaluator, trainer): this trainer was not made by "
                "ignite_speed.create_trainer; pass the Precision your training step uses"
            )
        precision = parts.precision
    if not (
        hasattr(precision, "convert_input")
        and hasattr(precision, "autocast")
        and hasattr(precision, "effective_precision")
    ):
        raise TypeError(
            f"precision has type {type(precision).__name__}; accepted: an ignite_speed.Precision or the "
            f"trainer create_trainer made"
        )
    parts = TrainerParts.find(evaluator)
    if parts is not None and parts.precision is not None:
        raise ValueError(
            "evaluate_with_precision: this engine is a trainer made by create_trainer, whose step applies "
            "the precision already; pass the evaluator"
        )
    applied = getattr(process_function(evaluator), "ignite_speed_precision", None)
    if isinstance(applied, EvaluatorPrecision) and applied.attached:
        if applied.precision is precision or (
            applied.precision.effective_precision == precision.effective_precision
            and _same_dtypes(applied.precision, precision)
        ):
            return EvaluatorPrecision(evaluator, applied.precision, owner=False)
        raise ValueError(
            f"this evaluator already runs under precision={applied.precision.effective_precision!r}; "
            f"detach that first to apply precision={precision.effective_precision!r}"
        )
    handle = EvaluatorPrecision(evaluator, precision)
    handle._install()
    return handle


def _same_dtypes(a: Any, b: Any) -> bool:
    return getattr(a, "autocast_dtype", None) == getattr(b, "autocast_dtype", None) and getattr(
        a, "param_dtype", None
    ) == getattr(b, "param_dtype", None)


class _NoPrecision:
    """The handle of an engine left as it is (no evaluator, no precision object)."""

    attached = False

    def detach(self) -> None:
        pass

    def __enter__(self) -> _NoPrecision:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def apply_precision(engine: Engine | None, precision: Any) -> EvaluatorPrecision | _NoPrecision:
    """:func:`evaluate_with_precision` for the engines ``attach_speedups`` drives: nothing to do without an engine
    or without a precision that converts inputs (a trainer with a step of its own and no ``precision=``), nor for
    ``32-true`` (which changes nothing: the evaluator keeps its own process function)."""
    if (
        engine is None
        or precision is None
        or not hasattr(precision, "convert_input")
        or getattr(precision, "effective_precision", None) == "32-true"
    ):
        return _NoPrecision()
    return evaluate_with_precision(engine, precision)
