"""The run's record (:func:`run_report`, :class:`RunReport`) and its pictures (:mod:`.plot`, which needs
matplotlib and is imported only when a picture is drawn)."""

from .record import EpochTime, RunReport, ValidationPoint, ValidationRecord, format_seconds, run_report

__all__ = ["RunReport", "run_report", "ValidationRecord", "ValidationPoint", "EpochTime", "format_seconds"]
