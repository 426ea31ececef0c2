"""The training step: :func:`create_trainer` (precision, gradient accumulation and clipping, every
distributed strategy), :class:`Precision` for a step of your own, and :func:`evaluate_with_precision` for the
evaluators."""

from .evaluation import EvaluatorPrecision, evaluate_with_precision
from .precision import Precision
from .trainer import create_trainer, precision_of

__all__ = ["create_trainer", "precision_of", "Precision", "evaluate_with_precision", "EvaluatorPrecision"]
