"""Where the time of ``trainer.run`` goes: the measurements behind the run profile
(:func:`~ignite_speed.report.profile.run_profile`).

Always on, at no per-batch cost, :class:`RunTimer` times the parts that happen rarely: the whole
``trainer.run`` call (its wall time), the run's set-up before Ignite's ``run`` (the plan, the data, loading
a checkpoint to resume), the sanity check, each validation run and each call of the trainer's
``Checkpoint`` handlers. Training is what is left.

With ``profile=True`` (:meth:`RunTimer.instrument`) it also splits training, batch by batch, into

* waiting for data: from the end of the previous batch's handlers (or of the epoch's start) to the start
  of the step: the data iterator's ``next`` and Ignite's ``GET_BATCH_*``/``ITERATION_STARTED`` events;
* the step: the process function;
* the app's own ``ITERATION_COMPLETED`` handlers (those between the loop's two per-batch handlers);
* ignite-speed's per-batch handlers;

and whatever is left is ``other`` (Ignite's own bookkeeping, epoch starts and ends). It does that with
two clock reads around the process function and around each of the loop's per-batch handlers, which it
puts in the place of the originals for the run and takes out again when the run returns: no handler is
added, and the step and the handlers see the same engine, batch and output.

Parts never overlap: a part timed inside another (a checkpoint saved inside a validation run, a
validation run inside the loop's handler) counts for the inner one only. Each rank times itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ignite.engine import Engine, Events

from .._compat import checkpoint_handlers, process_function, replace_handler, set_process_function
from .._logging import logger
from .clock import TIME_SOURCE

__all__ = ["RunTimer", "COARSE_PARTS", "FINE_PARTS"]

COARSE_PARTS = ("setup", "sanity_check", "validation", "checkpoint")
FINE_PARTS = ("data", "step", "app_handlers", "ignite_speed_handlers")


class RunTimer:
    """The measured parts of a training run, in seconds (see the module's docstring).

    Attributes:
        fine: split training into data, step and handlers (``profile=True``).
        time_source: the seconds counter read (``TIME_SOURCE`` of :mod:`ignite_speed.loop.clock`); tests may give their own.
        wall: seconds spent in ``trainer.run`` calls of this run (from the start of a new run).
        parts: measured seconds per part (``COARSE_PARTS``, and ``FINE_PARTS`` when ``fine``).
        counts: how many of each rare part ran (validation runs, checkpoint saves, sanity checks).
        batches: training batches run in the timed calls.
        listeners: called with no argument after each ``trainer.run`` call returns (the fast_dev_run
            projection of ``attach_speedups``).
    """

    def __init__(self) -> None:
        self.fine = False
        self.time_source: Callable[[], float] = TIME_SOURCE
        self.listeners: list[Callable[[], None]] = []
        self._started: float | None = None
        self._undo: list[Callable[[], Any]] = []
        self._batches_before = 0
        self._nested_at_start = 0.0
        self.reset()

    def reset(self) -> None:
        """A new run: nothing measured yet (a ``trainer.run`` call under way keeps timing)."""
        self.wall = 0.0
        self.parts: dict[str, float] = dict.fromkeys(COARSE_PARTS + FINE_PARTS, 0.0)
        self.counts: dict[str, int] = dict.fromkeys(COARSE_PARTS, 0)
        self.batches = 0
        self.fine_measured = False  # the split of training is measured for every call of this run
        self._nested = 0.0  # seconds of timed parts so far (subtracted from the parts that hold them)
        self._mark = self._counted_end = 0.0
        self._nested_at_mark = self._nested_at_counted = 0.0

    # ------------------------------------------------------------------ the whole call
    def run_started(self) -> None:
        self._started = self.time_source()
        self._nested_at_start = self._nested

    def run_ended(self) -> None:
        if self._started is not None:
            self.wall += self.time_source() - self._started
            self._started = None
        for listener in list(self.listeners):
            try:
                listener()
            except Exception as exc:  # (a report of the run must never fail the run)
                logger.warning("after trainer.run: %s failed: %s: %s", getattr(listener, "__qualname__", listener),
                               type(exc).__name__, exc)

    def begin_call(self, loop: Any) -> None:
        """Ignite's ``run`` starts: time the checkpoint saves, and with :attr:`fine` the batches."""
        self._batches_before = loop.progress.total_batches
        if self._started is not None:  # the set-up: from the call to Ignite's run, the sanity check apart
            setup = self.time_source() - self._started - (self._nested - self._nested_at_start)
            self.parts["setup"] += setup
            self._nested += setup
        self.time_checkpoints(loop.trainer)
        if self.fine:
            self.instrument(loop.trainer, loop)
        else:
            self.fine_measured = False

    def end_call(self, loop: Any) -> None:
        """Ignite's ``run`` returned or raised: take the timing out again."""
        self.restore()
        self.batches += loop.progress.total_batches - self._batches_before

    # ------------------------------------------------------------------ rare parts
    def timed(self, part: str, function: Callable[..., Any], *args: Any) -> Any:
        """``function(*args)``, its time counted for ``part`` (less the parts timed inside it)."""
        now = self.time_source
        nested = self._nested
        started = now()
        try:
            return function(*args)
        finally:
            seconds = now() - started
            self.parts[part] += seconds - (self._nested - nested)
            self._nested = nested + seconds
            self.counts[part] = self.counts.get(part, 0) + 1

    def time_checkpoints(self, trainer: Engine) -> None:
        """Time every call of the trainer's ``Checkpoint`` handlers until :meth:`restore` (their class is
        swapped for a subclass whose ``__call__`` is timed: ``isinstance`` and every attribute stay)."""
        for checkpoint in checkpoint_handlers(trainer):
            cls = type(checkpoint)
            try:
                checkpoint.__class__ = _timed_class(cls)
            except TypeError:  # pragma: no cover - a class whose layout a subclass changes: its saves stay in training
                continue
            checkpoint._ignite_speed_timer = self  # (read by the timed __call__)

            def undo(checkpoint: Any = checkpoint, cls: type = cls) -> None:
                if type(checkpoint) is _TIMED.get(cls):
                    checkpoint.__class__ = cls
                checkpoint.__dict__.pop("_ignite_speed_timer", None)

            self._undo.append(undo)

    # ------------------------------------------------------------------ the fine split (profile=True)
    def instrument(self, trainer: Engine, loop: Any) -> None:
        """Time the step and the loop's per-batch handlers of ``trainer`` until :meth:`restore`."""
        now = self.time_source
        parts = self.parts
        step = process_function(trainer)
        timer = self

        def timed_step(engine: Engine, batch: Any) -> Any:
            started = now()
            parts["data"] += started - timer._mark - (timer._nested - timer._nested_at_mark)
            try:
                return step(engine, batch)
            finally:
                parts["step"] += now() - started

        def timed_counted(engine: Engine) -> None:
            started = now()
            counted(engine)
            timer._counted_end = ended = now()
            timer._nested_at_counted = timer._nested
            parts["ignite_speed_handlers"] += ended - started

        def timed_decide(engine: Engine) -> None:
            started = now()
            nested = timer._nested
            parts["app_handlers"] += started - timer._counted_end - (nested - timer._nested_at_counted)
            decide(engine)
            timer._mark = ended = now()
            timer._nested_at_mark = timer._nested
            parts["ignite_speed_handlers"] += ended - started - (timer._nested - nested)

        def timed_completed(engine: Engine) -> None:
            started = now()
            nested = timer._nested
            completed(engine)
            timer._mark = ended = now()
            timer._nested_at_mark = timer._nested
            parts["ignite_speed_handlers"] += ended - started - (timer._nested - nested)

        def epoch_ready(engine: Engine) -> None:  # (per epoch) the first batch's wait starts here
            timer._mark = now()
            timer._nested_at_mark = timer._nested

        counted, decide, completed = loop.on_iteration_counted, loop.on_iteration_decide, loop.on_iteration_completed
        set_process_function(trainer, timed_step)
        self._undo.append(lambda: set_process_function(trainer, step))
        iteration = Events.ITERATION_COMPLETED
        for original, timed in ((counted, timed_counted), (decide, timed_decide), (completed, timed_completed)):
            if replace_handler(trainer, iteration, original, timed):
                self._undo.append(functools.partial(replace_handler, trainer, iteration, timed, original))
        trainer.add_event_handler(Events.EPOCH_STARTED, epoch_ready)
        self._undo.append(lambda: trainer.remove_event_handler(epoch_ready, Events.EPOCH_STARTED))
        self._mark, self._nested_at_mark = now(), self._nested
        self.fine_measured = True

    def restore(self) -> None:
        """Take out what :meth:`instrument` and :meth:`time_checkpoints` put in (newest first)."""
        undo, self._undo = self._undo, []
        for step in reversed(undo):
            step()


_TIMED: dict[type, type] = {}


def _timed_class(cls: type) -> type:
    """``cls`` (a ``Checkpoint`` class) with a timed ``__call__`` (one subclass per class)."""
    timed = _TIMED.get(cls)
    if timed is None:
        def __call__(self: Any, engine: Engine) -> None:
            timer = self.__dict__.get("_ignite_speed_timer")
            if timer is None:
                return cls.__call__(self, engine)  # type: ignore[operator]
            return timer.timed("checkpoint", cls.__call__, self, engine)  # type: ignore[attr-defined]

        timed = _TIMED[cls] = type(cls.__name__, (cls,), {"__call__": __call__, "__module__": cls.__module__,
                                                           "__qualname__": cls.__qualname__})
    return timed
