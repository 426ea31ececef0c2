"""The loop's decision at the end of each training epoch."""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

from ignite.engine import Engine

from ..data.loaders import UnsizedView
from .stop import StopReason, StopRequest

if TYPE_CHECKING:  # pragma: no cover
    from .training_loop import TrainingLoop

__all__ = ["epoch_end_decision", "one_shot", "TERMINATED_MESSAGE"]

TERMINATED_MESSAGE = "trainer.terminate() was called by a handler or user code (not by ignite-speed)"


def epoch_end_decision(loop: TrainingLoop, engine: Engine) -> None:
    """The decision at an epoch's end (the last EPOCH_COMPLETED handler): count the epoch, let the stop
    sources report, and end the run or go on."""
    p, lim = loop.progress, loop.run_limits
    if engine.should_terminate and loop.end_after_epoch is None:
        # terminate() called by another EPOCH_COMPLETED handler (an evaluator run with Ignite's EarlyStopping)
        loop.end_after_epoch = StopRequest(StopReason.TERMINATED, TERMINATED_MESSAGE, "terminate")
    schedule = loop.concerns.get("validation")
    ended_early = loop.epoch_ended_early or loop.end_after_epoch is not None
    empty = p.batch_in_epoch == 0 and not ended_early
    if loop.train_batches is None and not ended_early and not empty:
        # loader of unknown length, now exhausted: the pending optimizer step and the validation at exhaustion
        if p.batch_in_epoch % loop.accumulate != 0:
            p.global_step += 1
        if schedule is not None and schedule.due_at_exhaustion(p):
            loop.validate_now()
    if empty and one_shot(engine.state.dataloader):
        # a one-shot generator/iterator is exhausted after one pass: end the run, do not count empty epochs
        message = (f"the training data gave no batches in epoch {p.epoch} (0-based): a one-shot generator or "
                   f"iterator is exhausted after one pass; pass a re-iterable (a DataLoader or a list) to train "
                   f"more epochs")
        warnings.warn(message, UserWarning, stacklevel=2)
        loop.finish(StopRequest(StopReason.DATA_EXHAUSTED, message, "data"), terminate=True)
        return
    # (an empty epoch of a re-iterable counts, as in Lightning: the next one may have batches)
    remeasure = empty and engine.state.epoch_length == 0
    if remeasure:
        # the run's first epoch of an unsized re-iterable gave no batch: Ignite took 0 as the epoch length,
        # which ends its run; let it measure the next epoch again (on a fresh iterator, below)
        engine.state.epoch_length = None
    p.epochs_done += 1
    for flush in loop.flushes:  # checks deferred to an agreement report before the epoch-end decision
        flush(engine)
    # [time budget] the epoch's duration is recorded; max_time_mode "epoch"/"fit" may request the stop,
    # synced just below so that the run ends at this boundary
    budget = loop.concerns.get("time_budget")
    if budget is not None:
        budget.check_epoch_end(loop)
    es = loop.concerns.get("early_stopping")
    if es is not None:
        es.on_train_epoch_end(engine, p)
    else:
        loop.sync()
    request = loop.end_after_epoch
    if request is not None:
        loop.finish(request, terminate=True)
    elif lim.max_steps != -1 and p.global_step >= lim.max_steps:
        loop.finish(StopRequest(StopReason.MAX_STEPS, f"max_steps={lim.max_steps} reached", "max_steps"),
                     terminate=True)
    elif lim.max_epochs != -1 and p.epochs_done >= lim.max_epochs:
        # terminate() too: after epochs ended early Ignite counts iterations and would run more epochs
        loop.finish(StopRequest(StopReason.MAX_EPOCHS, f"max_epochs={lim.max_epochs} reached", "max_epochs"),
                     terminate=True)
    elif loop.controller.should_stop(p.epochs_done, p.global_step):
        assert loop.controller.pending is not None
        loop.finish(loop.controller.pending, terminate=True)
    else:
        if lim.max_epochs == -1 and engine.state.max_epochs is not None:
            _raise_ignite_max_epochs(loop, engine)
        if remeasure:
            loop.position.new_iterator(engine)
        elif loop.fresh_iterator_each_epoch and not loop.epoch_ended_early:
            # Lightning's limit_train_batches: every epoch takes the first N batches of a fresh iterator
            # (Ignite's epoch_length alone would continue the old one).
            loop.position.new_iterator(engine)

def _raise_ignite_max_epochs(loop: TrainingLoop, engine: Engine) -> None:
    """No epoch limit: keep Ignite's ``max_epochs`` ahead of the run (one more epoch, or as many as
    ``max_time`` is likely to allow), so that Ignite trains on and a ``ProgressBar`` shows an estimate."""
    state = engine.state
    assert state.max_epochs is not None
    wanted = state.epoch + 1
    budget = loop.concerns.get("time_budget")
    if budget is not None and loop.progress.epochs_done:
        per_epoch = loop.clock.elapsed() / loop.progress.epochs_done
        if per_epoch > 0:
            wanted = max(wanted, math.ceil(budget.seconds / per_epoch))
    if state.epoch >= state.max_epochs or wanted > state.max_epochs:
        state.max_epochs = wanted


def one_shot(data: Any) -> bool:
    """Whether ``data`` is an iterator (``iter()`` gives itself back): exhausted after one pass."""
    data = data.data if isinstance(data, UnsizedView) else data
    try:
        return iter(data) is data
    except TypeError:
        return False
