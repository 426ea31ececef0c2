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

Two one-off costs are kept out of the parts they would distort: the first import of a module during the
call (on the calling thread; ``imports``), and the listeners that run after Ignite's ``run`` returned (the
``fast_dev_run`` projection; ``after_run``). The wall time includes both. The creation of the training
data's iterator (once per epoch) is measured too (:attr:`RunTimer.iterator_seconds`, within ``data``), so
that a projection counts it per epoch rather than per batch.

Parts never overlap: a part timed inside another (a checkpoint saved inside a validation run, a
validation run inside the loop's handler, an import inside the step) counts for the inner one only. Each
rank times itself.
"""

from __future__ import annotations

import functools
import inspect
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any

from ignite.engine import Engine, Events

from .._compat import checkpoint_handlers, event_handlers, process_function, replace_handler, set_process_function
from .._logging import logger
from .clock import TIME_SOURCE

__all__ = ["RunTimer", "COARSE_PARTS", "FINE_PARTS"]

COARSE_PARTS = ("setup", "sanity_check", "validation", "checkpoint", "imports", "after_run")
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
            projection of ``attach_speedups``); their time is part of the wall (``after_run``).
        iterator_seconds, iterators: time and number of the training data iterator's creations (Ignite
            makes one per epoch; counted in ``data`` too).
        app_handler_seconds: with :attr:`fine`, seconds per app handler of ``ITERATION_COMPLETED`` (by name).
        first_batch: with :attr:`fine`, the run's first batch's wait for data (less the iterator's creation)
            and step, in seconds: the step's first call pays for lazy initialisation (a projection tells it
            apart from the batches that follow).
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
        self.iterator_seconds, self.iterators = 0.0, 0
        self.first_batch: tuple[float, float] | None = None  # with fine: the run's first (wait, step) seconds
        self.app_handler_seconds: dict[str, float] = {}
        self.fine_measured = False  # the split of training is measured for every call of this run
        self._nested = 0.0  # seconds of timed parts so far (subtracted from the parts that hold them)
        self._mark = self._counted_end = 0.0
        self._nested_at_mark = self._nested_at_counted = 0.0

    # ------------------------------------------------------------------ the whole call
    def run_started(self) -> None:
        self._started = self.time_source()
        self._nested_at_start = self._nested
        _ImportTimer.install(self)

    def run_ended(self, returned: bool = True) -> None:
        """The call ends: its wall time so far, then, when it ``returned`` (did not raise), the listeners (timed
        as ``after_run``, in the wall)."""
        if self._started is not None:
            ended = self.time_source()
            self.wall += ended - self._started
            self._started = ended  # (the listeners see the wall up to here; their own time is added after them)
        try:
            if self.listeners and returned:
                self.timed("after_run", self._call_listeners)
        finally:
            _ImportTimer.uninstall(self)
            if self._started is not None:
                self.wall += self.time_source() - self._started
                self._started = None

    def _call_listeners(self) -> None:
        for listener in list(self.listeners):
            try:
                listener()
            except Exception as exc:  # (a report of the run must never fail the run)
                logger.warning(
                    "after trainer.run: %s failed: %s: %s",
                    getattr(listener, "__qualname__", listener),
                    type(exc).__name__,
                    exc,
                )

    def begin_call(self, loop: Any) -> None:
        """Ignite's ``run`` starts: time the checkpoint saves, and with :attr:`fine` the batches."""
        self._batches_before = loop.progress.total_batches
        if self._started is not None:  # the set-up: from the call to Ignite's run, the sanity check apart
            setup = self.time_source() - self._started - (self._nested - self._nested_at_start)
            self.parts["setup"] += setup
            self._nested += setup
        self.time_checkpoints(loop.trainer)
        self.time_iterators(loop.trainer)
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

    def time_iterators(self, trainer: Engine) -> None:
        """Time the creations of the training data's iterator until :meth:`restore`: Ignite's (``Engine._setup_engine``,
        at an epoch's first batch) and ``set_data`` (the loop's, at a run's first epoch). Their time counts for
        ``data`` wherever they happen (Ignite's epoch events included); without those methods nothing is timed."""
        for name in ("_setup_engine", "set_data"):
            method = getattr(trainer, name, None)
            if method is None or name in vars(trainer):
                continue

            def timed_creation(*args: Any, _method: Callable[..., Any] = method, **kwargs: Any) -> Any:
                nested, started = self._nested, self.time_source()
                try:
                    return _method(*args, **kwargs)
                finally:
                    seconds = self.time_source() - started
                    self.parts["data"] += seconds - (self._nested - nested)
                    self.iterator_seconds += seconds - (self._nested - nested)
                    self._nested = nested + seconds
                    self.iterators += 1

            setattr(trainer, name, timed_creation)
            self._undo.append(functools.partial(vars(trainer).pop, name, None))

    # ------------------------------------------------------------------ the fine split (profile=True)
    def instrument(self, trainer: Engine, loop: Any) -> None:
        """Time the step and the loop's per-batch handlers of ``trainer`` until :meth:`restore`."""
        now = self.time_source
        parts = self.parts
        step = process_function(trainer)
        timer = self

        def timed_step(engine: Engine, batch: Any) -> Any:
            started = now()
            nested = timer._nested
            parts["data"] += started - timer._mark - (nested - timer._nested_at_mark)
            try:
                return step(engine, batch)
            finally:
                seconds = now() - started - (timer._nested - nested)
                parts["step"] += seconds
                if timer.first_batch is None:
                    timer.first_batch = (started - timer._mark - (nested - timer._nested_at_mark), seconds)

        def timed_counted(engine: Engine) -> None:
            started = now()
            nested = timer._nested
            counted(engine)
            timer._counted_end = ended = now()
            timer._nested_at_counted = timer._nested
            parts["ignite_speed_handlers"] += ended - started - (timer._nested - nested)

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
        self._time_app_handlers(trainer, timed_counted, timed_decide)
        trainer.add_event_handler(Events.EPOCH_STARTED, epoch_ready)
        self._undo.append(lambda: trainer.remove_event_handler(epoch_ready, Events.EPOCH_STARTED))
        self._mark, self._nested_at_mark = now(), self._nested
        self.fine_measured = True

    def _time_app_handlers(self, trainer: Engine, first: Callable[..., Any], last: Callable[..., Any]) -> None:
        """Time each app handler of ``ITERATION_COMPLETED`` between the loop's two (in their place, as the loop's own
        are: no call is added), for :attr:`app_handler_seconds`."""
        entries = list(event_handlers(trainer, Events.ITERATION_COMPLETED))
        handlers = [entry[0] for entry in entries]
        if first not in handlers or last not in handlers:
            return
        for original in handlers[handlers.index(first) + 1 : handlers.index(last)]:
            timed = self._timed_handler(original)
            if timed is not None and replace_handler(trainer, Events.ITERATION_COMPLETED, original, timed):
                self._undo.append(
                    functools.partial(replace_handler, trainer, Events.ITERATION_COMPLETED, timed, original)
                )

    def _timed_handler(self, original: Callable[..., Any]) -> Callable[..., Any] | None:
        parent = getattr(original, "_parent", None)  # (Ignite's wrapper of a handler with an event filter)
        user = parent() if parent is not None else original
        name = getattr(user, "__qualname__", None) or f"{type(user).__module__}.{type(user).__qualname__}"
        try:
            ref = parent or (weakref.WeakMethod(original) if inspect.ismethod(original) else weakref.ref(original))
        except TypeError:  # pragma: no cover - a callable that takes no weak reference: left in the sum only
            return None
        seconds, now = self.app_handler_seconds, self.time_source
        seconds.setdefault(name, 0.0)

        def timed(*args: Any, **kwargs: Any) -> Any:
            nested, started = self._nested, now()
            try:
                return original(*args, **kwargs)
            finally:
                seconds[name] += now() - started - (self._nested - nested)

        timed._parent = ref  # type: ignore[attr-defined]  # (remove_event_handler(user's handler) still finds it)
        return timed

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

        timed = _TIMED[cls] = type(
            cls.__name__, (cls,), {"__call__": __call__, "__module__": cls.__module__, "__qualname__": cls.__qualname__}
        )
    return timed


_ABSENT = object()  # (a loader had no exec_module of its own)


class _ImportTimer:
    """A finder first on ``sys.meta_path`` while a run is timed: it finds nothing itself, but gives each
    module loaded for the first time on the run's thread a timed ``exec_module`` (an attribute of that
    module's own loader object, removed again when the run ends), so that the import counts for the
    ``imports`` part, not for the part that happened to import it first."""

    def __init__(self, timer: RunTimer) -> None:
        self.timer, self.thread, self._finding = timer, threading.get_ident(), False
        self._patched: list[tuple[Any, Any]] = []  # (loader, its own exec_module before: _ABSENT when none)

    @classmethod
    def install(cls, timer: RunTimer) -> None:
        if not any(isinstance(f, cls) and f.timer is timer for f in sys.meta_path):
            sys.meta_path.insert(0, cls(timer))

    @staticmethod
    def uninstall(timer: RunTimer) -> None:
        mine = [f for f in sys.meta_path if isinstance(f, _ImportTimer) and f.timer is timer]
        sys.meta_path[:] = [f for f in sys.meta_path if not any(f is m for m in mine)]
        for finder in mine:  # (a loader keeping the timed exec_module would keep the timer, and the trainer, alive)
            for loader, previous in reversed(finder._patched):
                if previous is _ABSENT:
                    vars(loader).pop("exec_module", None)
                else:
                    loader.exec_module = previous
            finder._patched.clear()

    def _find(self, name: str, path: Any, target: Any) -> Any:
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or isinstance(finder, _ImportTimer) or find is None:
                continue
            spec = find(name, path, target)
            if spec is not None:
                return spec
        return None

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if self._finding or threading.get_ident() != self.thread:
            return None
        self._finding = True
        try:  # (the search of the file system is part of the import's cost too)
            spec = self.timer.timed("imports", self._find, name, path, target)
        finally:
            self._finding = False
        if spec is None:
            return None
        loader = getattr(spec, "loader", None)
        execute = getattr(loader, "exec_module", None)
        if execute is None or isinstance(loader, type):  # (a class, shared by every module it loads: left alone)
            return spec

        def timed_execute(module: Any, finder: _ImportTimer = self) -> Any:
            if finder in sys.meta_path:  # (the run is still timed)
                return finder.timer.timed("imports", execute, module)
            return execute(module)

        previous = getattr(loader, "__dict__", {}).get("exec_module", _ABSENT)
        try:
            loader.exec_module = timed_execute  # type: ignore[union-attr]
        except (AttributeError, TypeError):  # pragma: no cover - a loader with slots
            pass
        else:
            self._patched.append((loader, previous))
        return spec
