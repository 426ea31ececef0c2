"""Stop on a signal of the job scheduler, save, and exit with a code that requeues the job
(``preemption_signals``, on by default: ``SIGTERM`` and ``SIGUSR1``).

:class:`PreemptionGuard` installs Python signal handlers only while ``trainer.run`` runs, and only in the
main thread; it puts the previous handlers back when the run returns or raises. The signal handler only
records the signal and makes a stop request (``PREEMPTED``): the loop's per-batch check of unsynced requests
picks it up, so the guard adds nothing per batch. The run ends after the batch that was training, inside its
epoch (distributed: at the batch where the ranks next agree, on every rank), and every ``Checkpoint`` of the
trainer saves once more there, unless it already wrote that file. A script then exits with
:data:`PREEMPTED_EXIT_CODE` (``sys.exit(speedups.exit_code)``), and its job requeues and resumes from the
checkpoint (docs/preemption.rst, "What happens on a signal").
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterable
from typing import Any

from ignite.engine import Engine

from .._callers import warn_at_users_line
from .._compat import CHECKPOINT_SAVED_EVENT, checkpoint_handlers, checkpoint_saved, has_event
from ..config.flags import DEFAULT_PREEMPTION_SIGNALS, validate_preemption_signals
from ..loop.stop import StopReason
from .base import LoopHandler

__all__ = ["PreemptionGuard", "PREEMPTED_EXIT_CODE", "exit_code_of"]

PREEMPTED_EXIT_CODE = 75
"""The exit code of a preempted run: ``EX_TEMPFAIL`` of ``sysexits.h`` ("temporary failure; the user is invited
to retry"), which no Python error (1), shell error (2, 126, 127) or death by a signal (128 + n) produces."""


def exit_code_of(reason: StopReason) -> int:
    """The exit code for a run that ended with ``reason``: :data:`PREEMPTED_EXIT_CODE` for ``PREEMPTED``, else 0."""
    return PREEMPTED_EXIT_CODE if reason is StopReason.PREEMPTED else 0


def _checkpoints_of(trainer: Engine) -> list[Any]:
    return checkpoint_handlers(trainer, latest_state_only=True)


def _saved_items(checkpoint: Any) -> tuple[tuple[int, str], ...]:
    return tuple((id(item), item.filename) for item in checkpoint_saved(checkpoint))


def _wrote_this_step(checkpoint: Any, engine: Engine) -> bool:
    """Whether ``checkpoint`` (no ``score_function``: its priority is its global step) already wrote the file of the
    global step it would save now (Ignite 0.4.x, which has no ``SAVED_CHECKPOINT`` event to tell)."""
    transform = checkpoint.global_step_transform
    step = transform(engine, engine.last_event_name) if transform is not None else engine.state.iteration
    return any(item.priority == step for item in checkpoint_saved(checkpoint))


class PreemptionGuard(LoopHandler):
    """Stop the run with ``PREEMPTED`` on one of ``signals`` (a job scheduler's notice), and save.

    Args:
        signals: signal names (``"SIGTERM"``, ``"TERM"``) or numbers (default ``("SIGTERM", "SIGUSR1")``).

    Attributes:
        received: every ``(signal name, iteration)`` received during the run (a second signal while the run
            stops and saves is recorded, and does nothing else).
        saved: the files the last save at a preemption wrote (one per ``Checkpoint`` that saved).
    """

    name = "preemption"
    order = 5  # (its on_train_end saves before the other handlers report the run's end)

    def __init__(self, signals: Iterable[str | int] | str | int = DEFAULT_PREEMPTION_SIGNALS) -> None:
        super().__init__()
        self.signals: tuple[str, ...] = validate_preemption_signals(signals)
        if not self.signals:
            raise ValueError(
                "PreemptionGuard(signals=()) handles no signal; accepted: one or more signal names "
                "or numbers (to turn preemption handling off, attach no guard)"
            )
        self.received: list[tuple[str, int]] = []
        self.saved: list[str] = []
        self._previous: dict[int, Any] = {}
        self._warned = False
        # per Checkpoint (by id): its saved items when it last saved in this run, and the iteration
        self._last_save: dict[int, tuple[tuple[tuple[int, str], ...], int]] = {}

    def __repr__(self) -> str:
        return f"PreemptionGuard(signals={self.signals!r})"

    @property
    def installed(self) -> bool:
        """Whether the guard's signal handlers are installed (only while ``trainer.run`` runs)."""
        return bool(self._previous)

    @property
    def exit_code(self) -> int:
        """:data:`PREEMPTED_EXIT_CODE` when the last run ended with ``PREEMPTED``, else 0."""
        return exit_code_of(self.loop.controller.stop_reason)

    # ------------------------------------------------------------------ hooks
    def on_train_start(self) -> None:
        self.received = []
        self.saved = []
        self._restore()  # (a run that raised in a way no hook saw: never stack handlers)
        self._track_saves()
        if threading.current_thread() is not threading.main_thread():
            if not self._warned:
                self._warned = True
                warn_at_users_line(  # the app's trainer.run, not this package's hook
                    f"PreemptionGuard: trainer.run runs outside the main thread, where Python cannot install "
                    f"signal handlers: {', '.join(self.signals)} end this process as they would without "
                    f"ignite-speed (no save at a preemption); run training in the main thread, or set "
                    f"preemption_signals=() to silence this (a Ray Tune trial always runs in a thread: Ray's "
                    f"FailureConfig(max_failures=...) restarts a failed trial from its last reported checkpoint)",
                    RuntimeWarning,
                )
            return
        for name in self.signals:
            number = int(getattr(signal, name))
            self._previous[number] = signal.signal(number, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        # a signal handler: record, request, return (the loop acts at its next decision)
        trainer = self.loop.trainer
        name = signal.Signals(signum).name
        self.received.append((name, trainer.state.iteration))
        if len(self.received) == 1:
            self.loop.controller.request(
                StopReason.PREEMPTED,
                f"{name} received at epoch {max(trainer.state.epoch - 1, 0)} (0-based), "
                f"iteration {trainer.state.iteration}: preempted, saving and stopping",
                self.name,
            )

    def on_train_end(self, engine: Engine) -> None:
        try:
            if self.loop.controller.stop_reason is StopReason.PREEMPTED:
                self._save(engine)
        finally:
            self._restore()

    def on_run_exit(self) -> None:
        self._restore()

    def _track_saves(self) -> None:
        """Note which Checkpoint saves at which iteration (Ignite fires ``SAVED_CHECKPOINT`` after each save: no
        cost per batch), so that the save at a preemption skips one that saved at the stop already."""
        trainer, event = self.loop.trainer, CHECKPOINT_SAVED_EVENT
        self._last_save = {id(c): (_saved_items(c), -1) for c in _checkpoints_of(trainer)}
        if event is None:  # Ignite 0.4.x: _save asks the Checkpoint's own list (_wrote_this_step)
            return
        if not has_event(trainer, event):
            from ignite.handlers.checkpoint import CheckpointEvents

            trainer.register_events(*CheckpointEvents)
        if not trainer.has_event_handler(self._on_saved, event):
            trainer.add_event_handler(event, self._on_saved)

    def _on_saved(self, engine: Engine) -> None:
        for checkpoint in _checkpoints_of(engine):
            items = _saved_items(checkpoint)
            if self._last_save.get(id(checkpoint), ((), -1))[0] != items:
                self._last_save[id(checkpoint)] = (items, engine.state.iteration)

    def _save(self, engine: Engine) -> None:
        for checkpoint in _checkpoints_of(engine):
            if CHECKPOINT_SAVED_EVENT is None and _wrote_this_step(checkpoint, engine):
                continue
            if self._last_save.get(id(checkpoint), ((), -1))[1] != engine.state.iteration:
                before = {item.filename for item in checkpoint_saved(checkpoint)}
                checkpoint(engine)
                self.saved += [item.filename for item in checkpoint_saved(checkpoint) if item.filename not in before]

    def _restore(self) -> None:
        event = CHECKPOINT_SAVED_EVENT
        trainer = self._loop.trainer if self._loop is not None else None
        if event is not None and trainer is not None and trainer.has_event_handler(self._on_saved, event):
            trainer.remove_event_handler(self._on_saved, event)
        previous, self._previous = self._previous, {}
        for number, handler in previous.items():
            signal.signal(number, handler)

    def detach(self) -> None:
        self._restore()
