"""The run's record (:func:`run_report`, :class:`RunReport`), where its time went (:class:`RunProfile`), and
its pictures (:mod:`.plot`, which needs matplotlib and is imported only when a picture is drawn)."""

from .profile import RunProfile, run_profile
from .record import EpochTime, RunReport, ValidationPoint, ValidationRecord, format_seconds, run_report

__all__ = [
    "RunReport",
    "run_report",
    "ValidationRecord",
    "ValidationPoint",
    "EpochTime",
    "format_seconds",
    "RunProfile",
    "run_profile",
]
