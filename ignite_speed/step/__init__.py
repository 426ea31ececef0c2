"""The training step: :func:`create_trainer` (precision, gradient accumulation and clipping, every
distributed strategy) and :class:`Precision` for a step of your own."""

from .precision import Precision
from .trainer import create_trainer, precision_of

__all__ = ["create_trainer", "precision_of", "Precision"]
