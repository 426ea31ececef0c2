"""The package logger: ``logging.getLogger("ignite_speed")``, with a ``[rank: N]`` prefix in multi-process runs."""

from __future__ import annotations

import logging

__all__ = ["logger"]


class _RankPrefix(logging.Filter):
    """Prefix records with the process's rank when more than one process trains (decided per record:
    the process group may be created after the package is imported)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from .distributed._dist import get_rank, get_world_size

        try:
            world = get_world_size()
        except Exception:  # no usable distributed context while logging: log without a prefix
            world = 1
        if world > 1 and not getattr(record, "_ignite_speed_ranked", False):
            record.msg = f"[rank: {get_rank()}] {record.msg}"
            record._ignite_speed_ranked = True
        return True


logger = logging.getLogger("ignite_speed")
if not any(isinstance(f, _RankPrefix) for f in logger.filters):
    logger.addFilter(_RankPrefix())
