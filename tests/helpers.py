"""A tiny real training set-up that records what ran (batches per epoch, validation runs, ...)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ignite.distributed as idist
import pytest
import torch
from ignite.engine import Engine, Events
from torch.utils.data import DataLoader, IterableDataset, TensorDataset


def loader(n_batches: int, offset: float = 0.0, batch_size: int = 2, shuffle: bool = False, **kw: Any) -> DataLoader:
    x = torch.arange(n_batches * batch_size, dtype=torch.float32).reshape(-1, 1) + offset
    return DataLoader(TensorDataset(x, x.clone()), batch_size=batch_size, shuffle=shuffle, **kw)


class Stream(IterableDataset):
    """An iterable dataset of ``n`` samples (no ``__len__``)."""

    def __init__(self, n: int, offset: float = 0.0) -> None:
        self.n, self.offset = n, offset

    def __iter__(self):
        for i in range(self.n):
            v = torch.tensor([float(i) + self.offset])
            yield v, v.clone()


def stream_loader(n_batches: int, offset: float = 0.0) -> DataLoader:
    return DataLoader(Stream(n_batches * 2, offset), batch_size=2)


@dataclass
class Run:
    trainer: Engine
    evaluator: Engine
    tester: Engine
    model: torch.nn.Module
    per_epoch: dict = field(default_factory=dict)
    first_samples: dict = field(default_factory=dict)
    val_at: list = field(default_factory=list)
    val_batches: list = field(default_factory=list)
    val_samples: list = field(default_factory=list)
    test_batches: int = 0
    eval_calls: int = 0
    epoch_completed: int = 0
    metric_seq: list | None = None

    @property
    def total(self) -> int:
        return sum(self.per_epoch.values())

    @property
    def sanity(self) -> int:
        """Evaluator-step calls that were not part of a validation run: the sanity check."""
        return self.eval_calls - sum(self.val_batches)

    @property
    def batches_per_epoch(self) -> list:
        return [self.per_epoch[k] for k in sorted(self.per_epoch)]


def mse_step(model: torch.nn.Module, opt: torch.optim.Optimizer) -> Any:
    """A plain supervised training step (MSE loss) for ``Engine(...)``; returns the loss as a float."""

    def train_step(engine: Engine, batch: Any) -> float:
        x, y = batch
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    return train_step


def make_run(metric_seq: list | None = None, lr: float = 1e-3) -> Run:
    """Real engines: a Linear(1, 1) trained with SGD; the evaluator logs ``val_loss`` from ``metric_seq``."""
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    train_step = mse_step(model, opt)

    def eval_step(engine: Engine, batch: Any) -> Any:
        run.eval_calls += 1
        return batch

    run = Run(Engine(train_step), Engine(eval_step), Engine(lambda e, b: b), model, metric_seq=metric_seq)
    k = [0]
    vb = [0]

    @run.trainer.on(Events.ITERATION_COMPLETED)
    def _count(engine: Engine) -> None:
        ep = engine.state.epoch
        run.per_epoch[ep] = run.per_epoch.get(ep, 0) + 1
        run.first_samples.setdefault(ep, float(engine.state.batch[0][0]))

    @run.trainer.on(Events.EPOCH_COMPLETED)
    def _ep(engine: Engine) -> None:
        run.epoch_completed += 1

    @run.evaluator.on(Events.STARTED)
    def _vstart(engine: Engine) -> None:
        vb[0] = 0

    @run.evaluator.on(Events.ITERATION_COMPLETED)
    def _vb(engine: Engine) -> None:
        vb[0] += 1
        if vb[0] == 1:
            run.val_samples.append(float(engine.state.batch[0][0]))

    @run.evaluator.on(Events.EPOCH_COMPLETED)
    def _metric(engine: Engine) -> None:
        if run.metric_seq is not None:
            engine.state.metrics["val_loss"] = float(run.metric_seq[min(k[0], len(run.metric_seq) - 1)])
        k[0] += 1

    @run.evaluator.on(Events.COMPLETED)
    def _vdone(engine: Engine) -> None:
        run.val_at.append(run.total)
        run.val_batches.append(vb[0])

    @run.tester.on(Events.ITERATION_COMPLETED)
    def _tb(engine: Engine) -> None:
        run.test_batches += 1

    return run


# What libstdc++ prints when std::terminate runs outside any exception (e.g. a C++ thread object destroyed while
# still running). Seen 4 times in a few hundred 2-process gloo jobs here with torch 2.13 (Ignite 0.4.13 and 0.5.5),
# 3 times in the strategies job, whose training loop runs no ignite-speed code. faulthandler's report showed a
# non-Python thread aborting while the main thread had no Python frame left: the interpreter was exiting after that
# rank had returned from the job. Our code cannot end a process this way (it raises Python exceptions; a hang hits the timeout).
CXX_TEARDOWN_ABORT = "terminate called without an active exception"
# In full CI runs it hit about 1 job in 8 (in loops of the same job alone, none in 350): up to 2 reruns.
ABORT_ATTEMPTS = 3


def run_job_processes(make_cmds: Any, timeout: float, *, cwd: Any = None, env: dict | None = None) -> list[Any]:
    """Run the commands ``make_cmds()`` returns side by side (the processes of one multi-process job) and
    return their ``subprocess.CompletedProcess``es, with ``PYTHONFAULTHANDLER=1`` (a rank that aborts in C++
    prints its Python stacks). A job in which a process dies with :data:`CXX_TEARDOWN_ABORT` is run again
    (``make_cmds()`` is called for each attempt: fresh ports, cleared outputs), up to :data:`ABORT_ATTEMPTS`
    attempts in all, with a warning; any other failure, or that abort on the last attempt, is returned to the
    caller's assertion."""
    import os
    import subprocess
    import warnings

    env = {**(os.environ if env is None else env), "PYTHONFAULTHANDLER": "1"}
    for attempt in range(1, ABORT_ATTEMPTS + 1):
        cmds = make_cmds()
        procs = [
            subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for cmd in cmds
        ]
        try:
            outs = [p.communicate(timeout=timeout) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        done = [
            subprocess.CompletedProcess(cmd, p.returncode, out, err) for cmd, p, (out, err) in zip(cmds, procs, outs)
        ]
        aborted = [d for d in done if d.returncode and CXX_TEARDOWN_ABORT in d.stderr]
        if not aborted or attempt == ABORT_ATTEMPTS:
            return done
        fatal = aborted[0].stderr.find("Fatal Python error")  # faulthandler's report: where each thread was
        report = aborted[0].stderr[fatal : fatal + 6000] if fatal >= 0 else aborted[0].stderr[-3000:]
        warnings.warn(
            f"{' '.join(cmds[0][1:3])}: a rank aborted in C++ ({CXX_TEARDOWN_ABORT!r}); running the job "
            f"again. The aborted attempt's report:\n{report}",
            stacklevel=2,
        )
    raise AssertionError("unreachable")


def run_job_process(cmd: list[str], timeout: float, *, cwd: Any = None, env: dict | None = None) -> Any:
    """``subprocess.run(cmd)`` for a job that starts its own ranks, through :func:`run_job_processes`."""
    return run_job_processes(lambda: [cmd], timeout, cwd=cwd, env=env)[0]


def run_on_two_gloo_ranks(fn: Any, port: int, *args: Any, timeout_s: float = 30) -> None:
    """``fn(local_rank, *args)`` on two gloo processes of this machine (``idist.Parallel``): the ``main`` of the
    job scripts that :func:`run_rank_job` starts."""
    import datetime

    import ignite.distributed as idist

    with idist.Parallel(
        backend="gloo",
        nproc_per_node=2,
        master_addr="127.0.0.1",
        master_port=port,
        timeout=datetime.timedelta(seconds=timeout_s),
    ) as parallel:
        parallel.run(fn, *args)


def run_rank_job(script: str, job: str, out_dir: Any, timeout: float, ranks: int = 2) -> list[dict]:
    """Run a multi-process job script (``script job out_dir free_port``) through :func:`run_job_processes`
    and read every rank's ``out_dir/<job>_<rank>.json``."""
    import json
    import os
    import sys

    from ignite_speed.distributed import free_port

    paths = [os.path.join(str(out_dir), f"{job}_{rank}.json") for rank in range(ranks)]

    def fresh_attempt() -> list[list[str]]:
        for path in paths:
            if os.path.exists(path):
                os.remove(path)
        return [[sys.executable, script, job, str(out_dir), str(free_port())]]

    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = run_job_processes(fresh_attempt, timeout, env=env)[0]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = []
    for path in paths:
        with open(path) as f:
            out.append(json.load(f))
    return out


def warns_accumulation(cfg: dict[str, Any] | int) -> Any:
    """The warning that ``accumulate_grad_batches`` > 1 (a config's, or ``n``) gives on a trainer not made by
    ``create_trainer`` (such as ``make_run``'s); a context that expects nothing when it is 1."""
    n = cfg if isinstance(cfg, int) else cfg.get("accumulate_grad_batches", 1)
    if n == 1:
        return contextlib.nullcontext()
    return pytest.warns(UserWarning, match=f"accumulate_grad_batches={n} given to attach_speedups for a trainer not")


def scored_trial_engines(score: Callable[[int], float], offset: float = 0.0) -> tuple[Engine, Engine, list[int]]:
    """The engines of a pruning test's trial: the trainer fits a ``Linear(1, 1)`` (``idist.auto_model``: DDP on
    several ranks, whose all-reduce in backward would hang a rank that stopped alone) on batches shifted by
    ``offset``; the evaluator's ``val_acc`` of its k-th run is ``score(k)``. Also the list of the trainer's
    iterations at each validation run."""
    torch.manual_seed(0)
    model = idist.auto_model(torch.nn.Linear(1, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def step(engine: Engine, batch: float) -> float:
        opt.zero_grad()
        x = torch.full((2, 1), float(batch + offset))
        torch.nn.functional.mse_loss(model(x), 2 * x).backward()
        opt.step()
        return 0.0

    trainer, evaluator = Engine(step), Engine(lambda e, b: None)
    runs: list[int] = []

    @evaluator.on(Events.COMPLETED)
    def scored(e: Engine) -> None:
        runs.append(trainer.state.iteration)
        e.state.metrics["val_acc"] = score(len(runs))

    return trainer, evaluator, runs
