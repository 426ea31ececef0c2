"""The loop's checkpoint: one convention, versioned.

``TrainingLoop.state_dict()`` is ``{"version": 4, "loop": {...}, "<handler name>": handler.state_dict(), ...}``:
the loop's own part (its :class:`~ignite_speed.loop.state.LoopState`, the stop controller, the clock, the data
position and generator states, the run's data layout, stop requests not yet synced) and each registered handler's own state under
its name. All plain data: ``torch.load(weights_only=True)`` reads it back. States saved by ignite-speed
0.1.0 (versions 1 and 2, one flat dict) are migrated when loaded. Version 4 added the run's layout under
``loop.data.layout`` (:class:`~ignite_speed.loop.layout.RunLayout`); a version-3 state has none and loads
as it is (its resume is not checked against the layout, only against the batches per epoch).
"""

from __future__ import annotations

from typing import Any

from .resume import capture_rng
from .state import LoopState
from .stop import StopReason
from .view import LoopView

__all__ = ["STATE_VERSION", "loop_state_dict", "load_loop_state", "migrate_flat_state"]

STATE_VERSION = 4
_READ_VERSIONS = (3, 4)  # 3: without the run's layout
_FLAT_VERSIONS = (1, 2)  # ignite-speed 0.1.0: one flat dict


def loop_state_dict(loop: LoopView) -> dict[str, Any]:
    """All loop state as plain data (see the module docs)."""
    own = {
        "state": loop.state.state_dict(),
        "controller": loop.controller.state_dict(),
        "clock": loop.clock.state_dict(),
        # where the epoch's data iterator stands, and the generator states now (restored at resume)
        "data": {**loop.position.state_dict(), "rng": capture_rng(getattr(loop.trainer.state, "dataloader", None))},
        "local_requests": [r.to_dict() for r in loop.controller.local_requests()],
    }
    state: dict[str, Any] = {"version": STATE_VERSION, "loop": own}
    for handler in loop.handlers:
        state[handler.name] = handler.state_dict()
    return state


def load_loop_state(loop: LoopView, state: dict[str, Any]) -> dict[str, Any] | None:
    """Restore :func:`loop_state_dict` output (or a 0.1.0 state) into ``loop`` and its handlers. Returns the
    generator states saved with it, which the resumed run restores at its start."""
    if not isinstance(state, dict):
        raise TypeError(f"speedups state has type {type(state).__name__}; accepted: a dict from state_dict()")
    version = state.get("version")
    if version in _FLAT_VERSIONS:
        state = migrate_flat_state(state)
    elif version not in _READ_VERSIONS:
        raise ValueError(f"speedups state has version {version!r}; this ignite-speed reads versions "
                         f"{[*_FLAT_VERSIONS, *_READ_VERSIONS]}")
    own = state["loop"]
    loop_state = LoopState()
    loop_state.load_state_dict(own["state"])
    # (a loaded run does not repeat the preemption its saved run was stopping for)
    requests = [r for r in own.get("local_requests") or [] if r.get("reason") != StopReason.PREEMPTED.value]
    loop.load_own_state(loop_state, own["controller"], own["clock"], own.get("data") or {}, requests)
    for handler in loop.handlers:
        part = state.get(handler.name)
        if part is not None:
            handler.load_state_dict(part)
    return (own.get("data") or {}).get("rng")


def migrate_flat_state(state: dict[str, Any]) -> dict[str, Any]:
    """A state of ignite-speed 0.1.0 (one flat dict, versions 1 and 2) in the current layout."""
    concerns = state.get("concerns") or {}
    own = {
        "state": {key: state[key] for key in ("progress", "stage", "end_after_epoch", "epoch_ended_early",
                                              "window_batches", "window_rng") if key in state},
        "controller": state["controller"],
        "clock": state["clock"],
        "data": {"rng": state.get("rng"), "iterator_rng": state.get("iterator_rng"),
                 "iterator_fetched": state.get("iterator_fetched", 0)},
        "local_requests": state.get("local_requests") or [],
    }
    migrated: dict[str, Any] = {"version": STATE_VERSION, "loop": own,
                                "validation": {"last_val_end": state.get("last_val_end", 0.0),
                                               **concerns.get("validation", {})}}
    if "time_budget" in concerns:
        migrated["time_budget"] = concerns["time_budget"]
    if state.get("early_stopping") is not None:
        migrated["early_stopping"] = {**state["early_stopping"], "monitor_value": state.get("monitor_value")}
    if state.get("precision") is not None:
        migrated["precision"] = state["precision"]
    return migrated
