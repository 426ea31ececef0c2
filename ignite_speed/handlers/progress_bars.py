"""Ignite's ``ProgressBar`` on a run that no epoch count bounds (``max_time`` alone, ``max_epochs=-1``).

Ignite needs a number in ``trainer.state.max_epochs`` to run at all, and the loop gives it one more than
the epoch in progress (raised at each epoch end). A ``ProgressBar`` prints that number as the run's
total: "Iteration" in epoch 1 (Ignite's label for a one-epoch run), then "Epoch [2/2]", "[3/3]"... Such a
run has no planned total, so its bars show none: "Epoch 3" (Lightning's label), with the batch count of
the epoch as usual. Ignite's state is left as it is (a checkpoint of the trainer stays what Ignite
expects); only the bars' label is changed, for the run, and given back when it ends.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from ignite.engine import Engine, Events

from .._compat import all_event_handlers

__all__ = ["UntotalledBars"]

_EPOCH_EVENTS = (Events.EPOCH_STARTED, Events.EPOCH_COMPLETED)


@dataclass
class UntotalledBars:
    """The ``ProgressBar`` s of one run without an epoch total (:meth:`start`, then :meth:`stop`)."""

    _bars: list[tuple[Any, Any]] = field(default_factory=list)  # (output handler, its own tag)
    _trainer: Engine | None = None

    def start(self, trainer: Engine) -> None:
        """Label the trainer's bars "Epoch N", without a total, until :meth:`stop`."""
        self.stop()
        for handler in _progress_bar_handlers(trainer):
            self._bars.append((handler, handler.tag))
            handler.get_max_number_events = _without_epoch_total(type(handler).get_max_number_events)
        if self._bars:
            self._trainer = trainer
            trainer.add_event_handler(Events.EPOCH_STARTED, self._label)
            self._label(trainer, next_epoch=True)

    def stop(self) -> None:
        """Give the bars back their own label and totals."""
        for handler, tag in self._bars:
            handler.__dict__.pop("get_max_number_events", None)
            handler.tag = tag
        self._bars = []
        if self._trainer is not None and self._trainer.has_event_handler(self._label, Events.EPOCH_STARTED):
            self._trainer.remove_event_handler(self._label, Events.EPOCH_STARTED)
        self._trainer = None

    def _label(self, trainer: Engine, next_epoch: bool = False) -> None:
        epoch = trainer.state.epoch + (1 if next_epoch else 0)
        for handler, tag in self._bars:
            handler.tag = f"{tag or 'Epoch'} {epoch}"


def _without_epoch_total(original: Any) -> Any:
    def get_max_number_events(event_name: Any, engine: Engine) -> int | None:
        return None if event_name in _EPOCH_EVENTS else original(event_name, engine)

    return get_max_number_events


def _progress_bar_handlers(trainer: Engine) -> list[Any]:
    """The output handlers of the ``ProgressBar`` s attached to ``trainer`` (none unless Ignite's tqdm logger
    module was imported: nothing is imported here)."""
    classes = tuple(
        module._OutputHandler
        for name in ("ignite.handlers.tqdm_logger", "ignite.contrib.handlers.tqdm_logger")
        if (module := sys.modules.get(name)) is not None and hasattr(module, "_OutputHandler")
    )
    if not classes:
        return []
    found = []
    for entry in all_event_handlers(trainer):
        handler = getattr(entry[0], "__wrapped__", entry[0])  # (an event filter wraps the handler)
        if isinstance(handler, classes) and handler not in found:
            found.append(handler)
    return found
