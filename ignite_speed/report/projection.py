"""How long the full run will take, projected from a ``fast_dev_run`` (:func:`project`).

A ``fast_dev_run`` splits its training time as ``profile=True`` does, and measures what recurs apart from
what happens once:

* per training batch: waiting for data, the step and the per-batch handlers (the creation of the data
  iterator left out of the first batch's wait);
* per epoch: the creation of the data iterator;
* per validation batch: the validation time over the validation batches run;
* once: the set-up, first-use imports, the rest of Ignite's run (its start, end and epoch events), and
  what the run's steps took more than a warm one (the first calls of a step initialise lazily: the
  autograd engine, the optimizer's state, kernels).

A warm step is timed by rehearsing it after the run (``create_trainer``'s or Ignite's
``create_supervised_trainer``'s step in one process:
:mod:`ignite_speed.step.rehearsal`, which puts back all the calls changed), so one batch is enough. Another
step cannot be rehearsed: its batches after the first are its pace, and a ``fast_dev_run`` of one batch
counts the first batch's step for every batch (an upper bound, said so).

The full run's plan (:class:`FullRun`: its epochs, batches, validation runs and sanity check, counted by
``attach_speedups`` from the config without ``fast_dev_run``) times those gives the projection, with the
one-off costs added once. With ``max_time`` it also says whether the run fits, and where each
``max_time_mode`` would stop it. Checkpoint saves are left out (a ``fast_dev_run`` rehearses them once;
how often the full run saves is up to their event filters), and so is an early stop.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass
from typing import Any

from .profile import RunProfile
from .record import format_duration

__all__ = ["FullRun", "Projection", "project"]


@dataclass(frozen=True)
class FullRun:
    """What the full run will do, as the config plans it.

    Attributes:
        epochs: epochs it trains (the last one may be cut short by ``max_steps``: see ``batches``).
        batches_per_epoch: training batches of a full epoch.
        batches: training batches in all.
        val_runs: validation runs in all.
        val_batches: batches per validation run.
        sanity_batches: batches of the sanity check.
        max_time, max_time_reserve: seconds (``None``: no ``max_time``); ``max_time_mode``: its mode.
    """

    epochs: int
    batches_per_epoch: int
    batches: int
    val_runs: int
    val_batches: int
    sanity_batches: int
    max_time: float | None = None
    max_time_reserve: float = 0.0
    max_time_mode: str = "step"


@dataclass(frozen=True)
class Projection:
    """The projected time of the full run, in seconds (:func:`project`).

    ``seconds = setup_seconds + once_seconds + train_seconds + val_seconds + sanity_seconds``
    (``train_seconds``: the batches and the data iterator of each epoch; ``once_seconds``: first-use imports
    and Ignite's own start, end and epoch events, counted once). ``fits`` is ``None`` without ``max_time``;
    ``stops`` says, per ``max_time_mode``, where the run would stop when it does not fit.
    """

    seconds: float
    setup_seconds: float
    train_seconds: float
    val_seconds: float
    sanity_seconds: float
    batch_seconds: float
    val_batch_seconds: float
    run: FullRun
    fits: bool | None
    stops: dict[str, str]
    once_seconds: float = 0.0
    epoch_seconds: float = 0.0  # the data iterator's creation, once an epoch
    measured_batches: int = 0  # training batches of the fast_dev_run
    rehearsed_calls: int = 0  # calls of the step rehearsed after the run, which timed it warm (0: not rehearsed)
    rehearsed_fetches: int = 0  # warm fetches of training batches timed after the run (0: not rehearsed)
    rehearsed_val_calls: int = 0  # calls of the evaluator's step rehearsed after the run (0: not rehearsed)
    val_run_seconds: float = 0.0  # per validation run besides its batches' steps (the evaluator's run, metrics)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        r = self.run
        lines = [
            f"fast_dev_run projection of the full run: about {format_duration(self.seconds)} = "
            f"{r.batches} training batches x {1000 * self.batch_seconds:.1f} ms + {r.val_runs} validation runs x "
            f"{format_duration(self.val_run_seconds + r.val_batches * self.val_batch_seconds)} + sanity check "
            f"{format_duration(self.sanity_seconds)} + set-up and one-off costs "
            f"{format_duration(self.setup_seconds + self.once_seconds)} ({r.epochs} epochs; checkpoint saves and "
            f"early stopping not counted)"
        ]
        timed = [f"the step ({self.rehearsed_calls} calls on the last batch)"] if self.rehearsed_calls else []
        timed += [f"the data's fetch ({self.rehearsed_fetches} batches)"] if self.rehearsed_fetches else []
        timed += [f"the validation step ({self.rehearsed_val_calls} calls)"] if self.rehearsed_val_calls else []
        if timed:
            lines.append(f"timed warm after the run: {', '.join(timed)}; what the calls changed put back")
        if self.measured_batches == 1 and not self.rehearsed_calls:
            lines.append(
                "measured on one batch, whose step includes what its first call initialises: an upper "
                "bound (fast_dev_run=3 or more measures the batches after the first; the steps of "
                "create_trainer and of Ignite's create_supervised_trainer are timed warm after the run)"
            )
        if self.fits is not None and r.max_time is not None:
            budget = r.max_time - r.max_time_reserve
            if self.fits:
                lines.append(f"it fits in max_time ({format_duration(budget)} to train and validate)")
            else:
                lines.append(
                    f"it does not fit in max_time ({format_duration(budget)} to train and validate): "
                    + "; ".join(f"max_time_mode={mode!r} stops it {where}" for mode, where in self.stops.items())
                )
        return "\n".join(lines)


def project(
    profile: RunProfile,
    val_batches_measured: int,
    run: FullRun,
    warm_step: list[float] | None = None,
    warm_fetch: list[float] | None = None,
    warm_val_step: list[float] | None = None,
    val_steps_measured: list[float] | None = None,
) -> Projection:
    """The full ``run`` at the pace of the ``fast_dev_run`` whose profile is ``profile`` (which ran
    ``val_batches_measured`` validation batches in all). ``warm_step``, ``warm_fetch``, ``warm_val_step``: the
    seconds of each call of a rehearsal after the run of the step, the fetch of a batch, the evaluator's step
    (their pace: the median of the second half of the calls); ``val_steps_measured``: the seconds of each call
    of the evaluator's step in the run's validation runs (what else the runs took recurs per run)."""
    batch, epoch, once = _training_costs(profile, _pace(warm_step), _pace(warm_fetch))
    validation, val_batch, val_run = profile.parts.get("validation", 0.0), _pace(warm_val_step), 0.0
    if val_batch is None or not val_batches_measured or not val_steps_measured or not profile.val_runs:
        val_batch = validation / val_batches_measured if val_batches_measured else 0.0
    else:  # the runs' own costs (the evaluator's run, metrics) recur per run; the steps' first calls once
        steps = sum(val_steps_measured)
        val_run = max(0.0, validation - steps) / profile.val_runs
        once += max(0.0, steps - len(val_steps_measured) * val_batch)
    train, val = run.batches * batch + run.epochs * epoch, run.val_runs * (val_run + run.val_batches * val_batch)
    sanity, setup = run.sanity_batches * val_batch, profile.parts.get("setup", 0.0)
    fits, stops = None, {}
    if run.max_time is not None:
        # the training clock counts training and validation (first-use imports in them too), from the first epoch:
        # not the set-up, the sanity check, nor the handlers of Ignite's STARTED event
        budget = run.max_time - run.max_time_reserve - profile.parts.get("imports", 0.0)
        fits = train + val <= budget
        if not fits:
            stops = _stops(
                run,
                batch + (epoch / run.batches_per_epoch if run.batches_per_epoch else 0.0),
                val_run + run.val_batches * val_batch,
                budget,
            )
    return Projection(
        setup + once + train + val + sanity,
        setup,
        train,
        val,
        sanity,
        batch,
        val_batch,
        run,
        fits,
        stops,
        once,
        epoch,
        profile.batches,
        len(warm_step or ()),
        len(warm_fetch or ()),
        len(warm_val_step or ()),
        val_run,
    )


def _pace(seconds: list[float] | None) -> float | None:
    """The pace of rehearsed calls: the median of their second half (the first ones may still initialise)."""
    return statistics.median(seconds[len(seconds) // 2 :]) if seconds else None


def _training_costs(
    profile: RunProfile, warm_step: float | None = None, warm_fetch: float | None = None
) -> tuple[float, float, float]:
    """Seconds per training batch, per epoch (the data iterator) and once (imports, Ignite's own events, the
    first calls of the step and of the fetch: what they took more than ``warm_step`` / ``warm_fetch``, or
    than the batches after the first)."""
    once = profile.parts.get("imports", 0.0)
    if not profile.batches:
        return 0.0, 0.0, once
    if not profile.fine:  # (training not split: its one-off costs cannot be told apart from the batches')
        return (profile.training - once) / profile.batches, 0.0, once
    epoch = profile.iterator_seconds / profile.iterators if profile.iterators else 0.0
    once += profile.parts.get("other", 0.0)
    n, parts = profile.batches, profile.parts
    handlers = (parts.get("app_handlers", 0.0) + parts.get("ignite_speed_handlers", 0.0)) / n
    waits, steps = max(0.0, parts.get("data", 0.0) - profile.iterator_seconds), parts.get("step", 0.0)
    first_wait, first_step = profile.first_batch if n >= 2 and profile.first_batch else (None, None)
    if warm_fetch is not None:
        wait = warm_fetch
    elif first_wait is not None:  # (the first fetch pays for first calls too)
        wait = max(0.0, waits - first_wait) / (n - 1)
    else:
        wait = waits / n
    once += max(0.0, waits - n * wait)
    if warm_step is not None:
        step = warm_step
    elif first_step is not None:
        step = max(0.0, steps - first_step) / (n - 1)
    else:  # (one batch, not rehearsed: its first call's lazy initialisation counts as a batch)
        step = steps / n
    once += max(0.0, steps - n * step)
    return handlers + wait + step, epoch, once


def _stops(run: FullRun, batch: float, val_run: float, budget: float) -> dict[str, str]:
    """Where each ``max_time_mode`` stops a run that does not fit (validation spread evenly over the batches)."""
    per_batch = batch + (run.val_runs * val_run / run.batches if run.batches else 0.0)
    epoch = run.batches_per_epoch * per_batch
    at = min(run.batches, math.floor(budget / per_batch)) if per_batch > 0 else run.batches
    done = math.floor(budget / epoch) if epoch > 0 else run.epochs
    return {
        "step": f"after about {at} of {run.batches} batches (in epoch {at // max(1, run.batches_per_epoch) + 1})",
        "epoch": f"at the end of epoch {min(run.epochs, done + 1)} of {run.epochs}, past the budget",
        "fit": f"after epoch {done} of {run.epochs}, the last that fits",
    }
