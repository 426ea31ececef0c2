"""Flags: parsed and validated once into typed values (:class:`SpeedConfig`, :mod:`.speed_config`), from
per-flag validators that the standalone handlers use too (:mod:`.flags`: loop limits, ``max_time``, data
limits, validation schedule, stop sources; :mod:`.precision`; :mod:`.devices`), the Lightning 1.x mapping
(:mod:`.legacy`), durations and batch limits (:mod:`.durations`), the limits that govern a run
(:mod:`.effective`) and early stopping's typed options (:mod:`.early_stopping`)."""

from .devices import ACCELERATORS, STRATEGIES
from .durations import BatchLimit, format_value, parse_batch_limit, parse_duration
from .early_stopping import EarlyStoppingOptions, validate_early_stopping_kwargs
from .effective import EffectiveLimits
from .limits import UNLIMITED, Limit
from .precision import PRECISION_VALUES
from .speed_config import SpeedConfig

__all__ = [
    "Limit",
    "UNLIMITED",
    "SpeedConfig",
    "EffectiveLimits",
    "BatchLimit",
    "parse_batch_limit",
    "parse_duration",
    "format_value",
    "EarlyStoppingOptions",
    "validate_early_stopping_kwargs",
    "PRECISION_VALUES",
    "STRATEGIES",
    "ACCELERATORS",
]
