"""What to change to make a run faster: :func:`advise` (``Speedups.advise()``).

A pure function of the run's record (its :class:`~ignite_speed.report.RunProfile` and validation runs)
and of a few facts about its loader, config and device (:class:`RunFacts`). Each :class:`Finding` names
the part it is about, that part's measured share of the wall time, the switch to try and the seconds it
predicts the switch saves, and says where to pass it (``where``: a flag of ``attach_speedups``, an argument
of the ``DataLoader``, an event filter). Findings are ranked by that saving; one that would save less than
5 % of the wall time is left out, so a run with nothing worth changing gets no advice at all.

A switch's saving is predicted from what it changes: validating less often under early stopping also
trains longer (patience counts validation runs), so that is counted against it, and a switch that keeps
the schedule (``limit_val_batches``) is advised where it saves more.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .profile import PART_LABELS, RunProfile
from .record import RunReport, format_duration

__all__ = ["Advice", "Finding", "RunFacts", "advise", "MIN_SAVING"]

MIN_SAVING = 0.05  # of the wall time: a smaller predicted saving is not worth a finding
MIN_DATA_BATCHES = 8  # fewer measured batches (a fast_dev_run) say too little of the data's pace for advice
HANDLER_EVERY = 10  # the interval advised for a costly app handler (a progress bar, a logger)
WORKER_HANDOFF = (
    0.001  # seconds a batch costs to come from a worker process (pickling, a queue): a guess on the high side
)
WORKER_START = 0.2  # seconds to start a worker process (a fork of a process that imported torch): measured 0.1-0.3
BF16_STEP_SAVING = 0.3  # of the step's time: a conservative guess for bf16 autocast on a GPU with bf16 units


@dataclass(frozen=True)
class Finding:
    """One thing worth changing.

    Attributes:
        part: the profile's part it is about (``"data"``, ``"validation"``, ``"sanity_check"``,
            ``"checkpoint"``, ``"step"`` or ``"training"``, ``"app_handlers"``, ``"early_stopping"``).
        share: that part's measured share of the wall time (for ``"early_stopping"``: the share after the
            best validation run).
        seconds: that part's measured seconds.
        switch: what to try, as you would write it.
        saving: the seconds the switch is predicted to save on this run.
        why: how the saving is predicted, and what else to know.
        setting: the switch as data (flag or argument: value).
        where: where to pass ``setting`` (a flag of ``attach_speedups``, arguments of the training
            ``DataLoader``, an event filter, an argument of ``create_trainer``).
    """

    part: str
    share: float
    seconds: float
    switch: str
    saving: float
    why: str
    setting: Mapping[str, Any] = field(default_factory=dict)
    where: str = "a flag of attach_speedups"

    def __str__(self) -> str:
        what = "the run after the best validation" if self.part == "early_stopping" else PART_LABELS[self.part]
        return (
            f"{what}: {100 * self.share:.0f}% of the run ({format_duration(self.seconds)}). Try {self.switch} "
            f"({self.where}) to save about {format_duration(self.saving)}. {self.why}"
        )


@dataclass(frozen=True)
class RunFacts:
    """What :func:`advise` knows of the run besides its record (``Speedups.advise()`` fills it in).

    Attributes:
        loader_kind: ``"DataLoader"`` or the training data's type name.
        num_workers, pin_memory, persistent_workers: the training ``DataLoader``'s (``None``: not one).
        batched_fetch: the flag; ``batched_fetch_refusal``: why it keeps the loader as it is (``None``: it
            reads batches whole, or no ``DataLoader``).
        cpus: CPU cores for loader workers.
        val_check_interval, check_val_every_n_epoch, limit_val_batches, val_batches, num_sanity_val_steps:
            the validation schedule (``val_batches``: batches per validation run).
        precision: the precision flag; ``on_gpu``: the model trains on a GPU; ``bf16``: that GPU has bf16.
        early_stopping: ``None`` without early stopping, else its ``patience``.
        in_memory: the training data is held in memory (a ``TensorDataset``, a list, a tensor).
        step_returns_number: the trainer's step returns a Python number (``loss.item()``, the default
            ``output_transform`` of Ignite's supervised trainer): on a GPU the host waits for it every batch.
    """

    loader_kind: str = "DataLoader"
    num_workers: int | None = None
    pin_memory: bool | None = None
    persistent_workers: bool | None = None
    batched_fetch: bool = True
    batched_fetch_refusal: str | None = None
    cpus: int = 1
    val_check_interval: Any = 1.0
    check_val_every_n_epoch: int | None = 1
    limit_val_batches: Any = 1.0
    val_batches: int | None = None
    num_sanity_val_steps: int = 2
    precision: str = "32-true"
    on_gpu: bool = False
    bf16: bool = False
    early_stopping: int | None = None
    in_memory: bool = False
    step_returns_number: bool = False


@dataclass(frozen=True)
class Advice:
    """The ranked findings of :func:`advise` (empty: nothing worth changing); ``str()`` prints them."""

    findings: tuple[Finding, ...] = ()
    note: str | None = None  # printed under the findings

    def __iter__(self) -> Iterator[Finding]:
        return iter(self.findings)

    def __len__(self) -> int:
        return len(self.findings)

    def __getitem__(self, i: int) -> Finding:
        return self.findings[i]

    def __str__(self) -> str:
        if not self.findings:
            return self.note or ""
        lines = ["Where to save time (largest predicted saving first):"]
        lines += [f"{i}. {finding}" for i, finding in enumerate(self.findings, 1)]
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)


def advise(report: RunReport, facts: RunFacts | None = None) -> Advice:
    """The ranked findings for the run of ``report`` (see the module's docstring)."""
    facts = facts or RunFacts()
    profile = report.profile
    if profile is None or profile.wall <= 0:
        return Advice()
    candidates = [
        _data(report, facts),
        _validation(report, facts),
        _sanity(report, facts),
        _checkpoint(report),
        _precision(report, facts),
        _early_stopping(report, facts),
        _app_handlers(report),
        _host_sync(report, facts),
    ]
    findings = sorted(
        (f for f in candidates if f is not None and f.saving >= MIN_SAVING * profile.wall), key=lambda f: -f.saving
    )
    return Advice(tuple(findings), _note(profile, facts, bool(findings)))


def _note(profile: RunProfile, facts: RunFacts, findings: bool) -> str | None:
    """The hint to split training: when there is other advice, or when training is the bulk of the run."""
    if profile.fine or not (findings or profile.share("training") >= 0.5):
        return None
    note = "(training was not split: attach with profile=True to see its data, step and handler time"
    if facts.on_gpu and facts.step_returns_number:
        note += "; the step returns a Python number, which makes the host wait for the GPU every batch"
    return note + ")"


def _per_batch(report: RunReport, part: str) -> tuple[float, int]:
    profile = report.profile
    assert profile is not None
    return (profile.parts.get(part, 0.0) / profile.batches if profile.batches else 0.0), profile.batches


def _data(report: RunReport, facts: RunFacts) -> Finding | None:
    profile = report.profile
    assert profile is not None
    if not profile.fine or facts.num_workers is None or facts.in_memory:  # (memory is read faster in the process)
        return None
    wait, batches = _per_batch(report, "data")
    if batches < MIN_DATA_BATCHES or wait <= 0:
        return None
    rest = (profile.training - profile.parts.get("data", 0.0)) / batches  # step and handlers per batch
    workers = facts.num_workers
    if workers == 0:
        # enough workers to read a batch per step (each reads one in `wait`, while the step runs), within the cores
        new = min(max(1, math.ceil(wait / max(rest, 1e-9))), max(2, facts.cpus), 8)
        new_wait = max(0.0, wait / new - rest)
    else:
        new = 2 * workers
        new_wait = max(0.0, (wait + rest) / 2 - rest)  # twice the workers: the batches come twice as fast
    if workers == 0:
        new_wait += WORKER_HANDOFF  # (a batch read in memory in less than that is better read in the process)
    setting: dict[str, Any] = {"num_workers": new, "persistent_workers": True}
    if facts.on_gpu and not facts.pin_memory:
        setting["pin_memory"] = True
    start = (new - workers) * WORKER_START  # (once: persistent_workers keeps them)
    saving = batches * (wait - new_wait) - start
    if saving <= 0:
        return None
    why = (
        f"Waiting {1000 * wait:.1f} ms per batch for {1000 * rest:.1f} ms of step and handlers: {new} worker "
        f"process{'es' if new > 1 else ''} read batches while the step runs (persistent_workers keeps them between epochs"
        + (", pin_memory speeds the copy to the GPU" if "pin_memory" in setting else "")
        + f"; starting them is counted at {1000 * WORKER_START:.0f} ms each)."
    )
    if facts.batched_fetch_refusal is not None:
        why += f" batched_fetch could not read this loader a batch at a time: {facts.batched_fetch_refusal}."
    elif not facts.batched_fetch and facts.loader_kind == "DataLoader":
        why += " batched_fetch=True would read its TensorDataset a batch at a time."
    switch = "DataLoader(" + ", ".join(f"{k}={v}" for k, v in setting.items()) + ")"
    return Finding(
        "data",
        profile.share("data"),
        profile.parts["data"],
        switch,
        saving,
        why,
        setting,
        "arguments of the training DataLoader",
    )


def _validation(report: RunReport, facts: RunFacts) -> Finding | None:
    """Validate less often, or on fewer batches: whichever is predicted to save more (under early stopping,
    fewer validation runs also mean more epochs before patience runs out)."""
    profile = report.profile
    assert profile is not None
    seconds, runs = profile.parts.get("validation", 0.0), profile.val_runs
    if seconds <= 0 or runs == 0:
        return None
    epochs = max(1, report.epochs)
    per_epoch = _runs_per_epoch(report, runs / epochs)
    interval = facts.val_check_interval
    options: list[tuple[str, dict[str, Any], float, str]] = []
    if per_epoch > 1.5 and not isinstance(interval, str):
        options.append(
            ("val_check_interval=1.0", {"val_check_interval": 1.0}, *_fewer_runs(report, seconds, 1 / per_epoch))
        )
    elif epochs >= 2 and facts.check_val_every_n_epoch is not None:
        n = 2 * facts.check_val_every_n_epoch
        options.append(
            (f"check_val_every_n_epoch={n}", {"check_val_every_n_epoch": n}, *_fewer_runs(report, seconds, 0.5))
        )
    if facts.val_batches and facts.val_batches >= 2:
        n = facts.val_batches // 2
        options.append(
            (
                f"limit_val_batches={n}",
                {"limit_val_batches": n},
                seconds * (1 - n / facts.val_batches),
                "It keeps the schedule (what early stopping counts) and computes the metrics on fewer "
                "batches (noisier)."
                if facts.early_stopping is not None
                else "",
            )
        )
    if not options:
        return None
    switch, setting, saving, effect = max(options, key=lambda option: option[2])  # (the first of equal ones)
    why = (
        f"{runs} validation runs of {format_duration(seconds / runs)} each (val_check_interval={interval}, "
        f"check_val_every_n_epoch={facts.check_val_every_n_epoch}, limit_val_batches={facts.limit_val_batches}). "
        f"{effect + ' ' if effect else ''}val_time_fraction caps validation's share of the time instead."
    )
    return Finding("validation", profile.share("validation"), seconds, switch, saving, why, setting)


def _runs_per_epoch(report: RunReport, average: float) -> float:
    """Validation runs in an epoch of the schedule: the most any epoch had (the last may be cut short)."""
    counts: dict[int, int] = {}
    for point in report.validations:
        counts[point.epoch] = counts.get(point.epoch, 0) + 1
    return float(max(counts.values())) if counts else average


def _fewer_runs(report: RunReport, seconds: float, kept: float) -> tuple[float, str]:
    """The saving of keeping ``kept`` of the validation runs, and what else it changes. A run that early
    stopping ended: its patience counts validation runs, so the training after the best run lasts 1 / kept
    times as long (the validation runs after the best stay as many)."""
    if report.stop_reason != "early_stopping" or report.best_at is None or report.seconds <= 0:
        return seconds * (1 - kept), ""
    best, points = report.best_at, report.validations
    val_before = sum(p.seconds for p in points if p.run <= best.run)
    val_after = sum(p.seconds for p in points if p.run > best.run)
    train_after = max(0.0, report.seconds - best.time - val_after)
    saving = val_before * (1 - kept) - train_after * (1 / kept - 1)
    effect = (
        f"Early stopping's patience counts validation runs: the {format_duration(train_after)} of training "
        f"after the best run would last {1 / kept:.3g} times as long (counted)."
    )
    return saving, effect


def _sanity(report: RunReport, facts: RunFacts) -> Finding | None:
    profile = report.profile
    assert profile is not None
    seconds = profile.parts.get("sanity_check", 0.0)
    if seconds <= 0:
        return None
    why = (
        f"The sanity check runs {facts.num_sanity_val_steps} validation batches before training, to catch a "
        f"broken evaluator early; once it works, it only costs time."
    )
    return Finding(
        "sanity_check",
        profile.share("sanity_check"),
        seconds,
        "num_sanity_val_steps=0",
        seconds,
        why,
        {"num_sanity_val_steps": 0},
    )


def _checkpoint(report: RunReport) -> Finding | None:
    profile = report.profile
    assert profile is not None
    seconds, calls = profile.parts.get("checkpoint", 0.0), profile.checkpoint_calls
    if seconds <= 0 or calls == 0:
        return None
    epochs = max(1, report.epochs)
    if calls <= epochs:  # (at most one save an epoch: saved on epochs)
        event, every = "EPOCH_COMPLETED", 2 * max(1, round(epochs / calls))
    else:
        event, every = "ITERATION_COMPLETED", 2 * max(1, round(profile.batches / calls))
    filter_ = f"Events.{event}(every={every})"
    why = (
        f"{calls} calls of the trainer's Checkpoint handlers, {format_duration(seconds / calls)} each: save half as "
        f"often (about every {every // 2} {'epoch' if event == 'EPOCH_COMPLETED' else 'batch'}"
        f"{'es' if every // 2 > 1 else ''} now), or save less (n_saved, the weights without the optimizer)."
    )
    return Finding(
        "checkpoint",
        profile.share("checkpoint"),
        seconds,
        f"saving on {filter_}",
        seconds / 2,
        why,
        {"event": event, "every": every},
        f"the event filter the Checkpoint is attached with: trainer.add_event_handler({filter_}, checkpoint)",
    )


def _precision(report: RunReport, facts: RunFacts) -> Finding | None:
    profile = report.profile
    assert profile is not None
    if not (facts.on_gpu and facts.bf16 and facts.precision == "32-true"):
        return None
    part = "step" if profile.fine else "training"
    seconds = profile.parts.get(part, 0.0)
    why = (
        f"The GPU has bf16 units and the run trains in fp32: bf16 autocast typically takes a half to two thirds of "
        f"the time of the matrix products (predicted: {100 * BF16_STEP_SAVING:.0f}% of the "
        f"{'step' if profile.fine else 'training time'}; create_trainer applies it, or torch.autocast in your step)."
    )
    return Finding(
        part,
        profile.share(part),
        seconds,
        'precision="bf16-mixed"',
        BF16_STEP_SAVING * seconds,
        why,
        {"precision": "bf16-mixed"},
        "a flag of attach_speedups and create_trainer, which applies it",
    )


def _early_stopping(report: RunReport, facts: RunFacts) -> Finding | None:
    """The monitored metric stopped improving long before the end and early stopping did not fire."""
    profile = report.profile
    assert profile is not None
    best, points = report.best_at, report.validations
    if best is None or report.stop_reason == "early_stopping" or report.seconds <= 0:
        return None
    after = [p for p in points if p.run > best.run]
    if len(after) < 2 or (report.seconds - best.time) < 0.25 * report.seconds:
        return None
    patience = max(1, len(after) // 2)
    stop_at = after[patience - 1].time
    saving = (report.seconds - stop_at) * profile.wall / report.seconds  # training clock to wall time
    if facts.early_stopping is None:
        switch = f'early_stopping={{"monitor": "{report.monitor}", "patience": {patience}}}'
        why = f"{report.monitor} was best at validation run {best.run} of {len(points)}; nothing stopped the run there."
    else:
        switch = f"early_stopping patience={patience} (now {facts.early_stopping})"
        why = (
            f"{report.monitor} was best at validation run {best.run} of {len(points)}; early stopping's patience of "
            f"{facts.early_stopping} runs did not run out before the end."
        )
    share = (report.seconds - best.time) / report.seconds
    return Finding(
        "early_stopping",
        share,
        report.seconds - best.time,
        switch,
        saving,
        why,
        {"early_stopping": {"monitor": report.monitor, "patience": patience}},
    )


def _app_handlers(report: RunReport) -> Finding | None:
    """The app's own per-batch handler that costs most (with ``profile=True``): run it every few batches."""
    profile = report.profile
    assert profile is not None
    if not profile.fine or not profile.app_handlers:
        return None
    name, seconds = max(profile.app_handlers.items(), key=lambda item: item[1])
    if seconds <= 0:
        return None
    n = HANDLER_EVERY
    others = profile.parts.get("app_handlers", 0.0) - seconds
    why = (
        f"{name} runs at every batch's ITERATION_COMPLETED, {format_duration(seconds / max(1, profile.batches))} "
        f"a call ({100 * profile.share('app_handlers'):.0f}% for all of the app's per-batch handlers"
        + (f", {format_duration(others)} in the others" if others > 5e-4 else "")
        + "). A progress bar or a logger "
        f"shows as much every {n} batches (ProgressBar(...).attach(trainer, event_name=Events.ITERATION_COMPLETED"
        f"(every={n})))."
    )
    return Finding(
        "app_handlers",
        seconds / profile.wall,
        seconds,
        f"{name} on Events.ITERATION_COMPLETED(every={n})",
        seconds * (1 - 1 / n),
        why,
        {"handler": name, "every": n},
        f"the event filter {name} is attached with: Events.ITERATION_COMPLETED(every={n})",
    )


def _host_sync(report: RunReport, facts: RunFacts) -> Finding | None:
    """A step that returns a Python number on a GPU: every batch the host waits for the GPU to finish it, so the
    host's work for the next batch (its data, the handlers) cannot overlap the GPU's (with ``profile=True``)."""
    profile = report.profile
    assert profile is not None
    if not (facts.on_gpu and facts.step_returns_number and profile.fine and profile.batches):
        return None
    step = profile.parts.get("step", 0.0)
    host = sum(profile.parts.get(p, 0.0) for p in ("data", "app_handlers", "ignite_speed_handlers"))
    saving = min(step, host)  # (at best all of the host's work hides behind the GPU's, or the other way round)
    why = (
        f"The step returns a Python number (loss.item(): the default output_transform of Ignite's supervised "
        f"trainer), so each of the {profile.batches} batches waits in the step for the GPU to finish "
        f"({format_duration(step / profile.batches)} a batch), and the next batch's data and handlers "
        f"({format_duration(host / profile.batches)} a batch) cannot run meanwhile. Return the loss tensor and "
        f"read it (.item()) every n batches, in the handler that logs it."
    )
    return Finding(
        "step",
        profile.share("step"),
        step,
        "output_transform=lambda x, y, y_pred, loss: loss",
        saving,
        why,
        {"output_transform": "lambda x, y, y_pred, loss: loss"},
        "an argument of create_trainer or create_supervised_trainer, or your step's return value",
    )


def cpu_count() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
