"""The handlers registered with one trainer's loop, and the per-hook lists the loop calls."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from .hooks import HOOKS, LoopHooks

__all__ = ["HandlerRegistry"]


class HandlerRegistry:
    """The loop's handlers, ordered by :attr:`~ignite_speed.loop.hooks.LoopHooks.order`, one per name.

    For each hook it keeps the bound methods of the handlers that override it, so that calling a hook
    costs nothing for the handlers that do not implement it (the per-batch hook above all).
    """

    def __init__(self) -> None:
        self._handlers: list[LoopHooks] = []
        self.hooks: dict[str, list[Callable[..., Any]]] = {name: [] for name in HOOKS}

    def __iter__(self) -> Iterator[LoopHooks]:
        return iter(self._handlers)

    def __len__(self) -> int:
        return len(self._handlers)

    def names(self) -> list[str]:
        return [h.name for h in self._handlers]

    def add(self, handler: LoopHooks) -> None:
        """Register ``handler``; a second handler of the same name is refused."""
        for old in self._handlers:
            if old is handler:
                return
            if old.name == handler.name:
                raise ValueError(f"{type(handler).__name__}.attach: this trainer already has a {type(old).__name__} "
                                 f"attached; attach one handler per concern (change the one attached instead)")
        self._handlers.append(handler)
        self._handlers.sort(key=lambda h: h.order)
        self._refresh()

    def remove(self, handler: LoopHooks) -> None:
        """Forget ``handler`` (``Speedups.extend`` replaces handlers with new settings)."""
        self._handlers = [h for h in self._handlers if h is not handler]
        self._refresh()

    def _refresh(self) -> None:
        # looked up once here rather than on every call
        for name in HOOKS:
            default = getattr(LoopHooks, name)
            # in place: the loop keeps a reference to the per-batch list
            self.hooks[name][:] = [getattr(h, name) for h in self._handlers
                                   if getattr(type(h), name, default) is not default and name not in h.skip_hooks]

    def call(self, hook: str, *args: Any) -> None:
        for method in self.hooks[hook]:
            method(*args)

    def report_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        for method in self.hooks["report_fields"]:
            fields.update(method())
        return fields
