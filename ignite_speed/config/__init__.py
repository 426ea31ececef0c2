"""Flags: parsed and validated once into typed values (:class:`SpeedConfig`), with the per-flag validators
that the standalone handlers use too, durations and batch limits (:mod:`.durations`), and the
``early_stopping`` keyword arguments (:mod:`.early_stopping`)."""

from .durations import BatchLimit, format_value, parse_batch_limit, parse_duration
from .early_stopping import validate_early_stopping_kwargs
from .speed_config import ACCELERATORS, PRECISION_VALUES, STRATEGIES, EffectiveLimits, SpeedConfig

__all__ = ["SpeedConfig", "EffectiveLimits", "BatchLimit", "parse_batch_limit", "parse_duration", "format_value",
           "validate_early_stopping_kwargs", "PRECISION_VALUES", "STRATEGIES", "ACCELERATORS"]
