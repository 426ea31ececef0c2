"""2-process gloo jobs for tests/test_rank_faults.py: rank-divergent stops and a rank that raises.

Run as a script (``python tests/_fault_jobs.py JOB OUT_DIR PORT``) in a subprocess, so the test bounds
it with a timeout. The spawned functions live at module level (picklable). Every rank writes
``OUT_DIR/<job>_<rank>.json``: per scenario, where and why training ended on that rank.

The models are DDP-wrapped and really trained, so a rank that stopped alone would leave the other one
waiting in backward (until the short process-group timeout fails the job).
"""

from __future__ import annotations

import datetime
import json
import math
import os
import signal
import sys
import time
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ignite.distributed as idist  # noqa: E402
from ignite.engine import Engine, Events  # noqa: E402

from ignite_speed.speedups import Speedups, attach_speedups  # noqa: E402
from tests.helpers import run_on_two_gloo_ranks  # noqa: E402

BATCHES = 4  # per epoch
GROUP_TIMEOUT_S = 5  # the process group's collective timeout (the test asserts it is honoured)
SYNC_EVERY = 2
FAILURE_WAIT_S = 2  # Speedups.rank_failure_timeout in the DDP-backward case
PREEMPT_BATCHES = 8  # per epoch, in the preemption job
PREEMPT_SIGNAL_AT = 3  # rank 1 sends itself SIGUSR1 during this iteration


def _trainer(
    *,
    fail_at: int | None = None,
    fail_before_backward: bool = False,
    nan_at: int | None = None,
    sleep_at: dict[int, float] | None = None,
    ddp: bool = True,
    signal_at: int | None = None,
) -> tuple[Engine, dict[str, float]]:
    """A DDP-trained Linear(1, 1) (``ddp=False``: each rank trains its own). On rank 1 only: raise at
    ``fail_at`` (after the backward pass, or before it), or return a NaN loss at ``nan_at``. ``sleep_at``
    maps iterations to seconds this rank sleeps; at ``signal_at`` rank 1 sends itself SIGUSR1."""
    torch.manual_seed(0)
    model = idist.auto_model(torch.nn.Linear(1, 1)) if ddp else torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    rank = idist.get_rank()
    when: dict[str, float] = {}

    def step(engine: Engine, batch: int) -> float:
        it = engine.state.iteration
        failing = rank == 1 and it == fail_at
        if failing and fail_before_backward:
            when["raised"] = time.time()
            raise ValueError(f"boom before backward at iteration {it}")
        x = torch.full((2, 1), float(batch + rank))
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), 2 * x)
        loss.backward()  # a DDP all-reduce (ddp=True)
        opt.step()
        if failing:
            when["raised"] = time.time()
            raise ValueError(f"boom at iteration {it}")
        time.sleep((sleep_at or {}).get(it, 0.0))
        if rank == 1 and it == signal_at:
            os.kill(os.getpid(), signal.SIGUSR1)
        return math.nan if rank == 1 and it == nan_at else loss.item()

    return Engine(step), when


def _outcome(trainer: Engine, speed: Speedups, run: Any) -> dict[str, Any]:
    error = None
    try:
        run()
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    return {
        "iteration": trainer.state.iteration,
        "epoch": trainer.state.epoch,
        "error": error,
        "stop_reason": speed.stop_reason.value,
        "stop_message": speed.stop_message,
        "ended": time.time(),
    }


def _scenario(
    cfg: dict[str, Any],
    *,
    request_at: int | None = None,
    metrics: dict[int, list[float]] | None = None,
    **trainer_kwargs: Any,
) -> dict[str, Any]:
    rank = idist.get_rank()
    trainer, when = _trainer(**trainer_kwargs)
    evaluator = None
    if metrics is not None:
        values = metrics[rank]
        evaluator = Engine(lambda e, b: None)
        seen: list[int] = []

        @evaluator.on(Events.COMPLETED)
        def _metric(e: Engine) -> None:
            e.state.metrics["val_loss"] = values[min(len(seen), len(values) - 1)]
            seen.append(1)

    speed = attach_speedups(
        trainer, evaluator, cfg={"max_epochs": 10, **cfg}, val_data=[0, 1] if evaluator is not None else None
    )
    # the ranks agree on stop requests every 2 batches (fixed, so that the stop batch is exact; by default
    # the interval follows the step time)
    speed.loop.sync_every_n_batches = SYNC_EVERY
    if request_at is not None and rank == 1:
        trainer.add_event_handler(
            Events.ITERATION_COMPLETED(once=request_at), lambda _: speed.request_stop("rank 1 asks to stop")
        )
    result = _outcome(trainer, speed, lambda: trainer.run(list(range(BATCHES))))
    result["raised"] = when.get("raised")
    return result


def _logged_line() -> str:
    """What the package logger writes for one message in this (multi-process) run."""
    import logging

    from ignite_speed._logging import logger

    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        logger.warning("probe %d", 7)
    finally:
        logger.removeHandler(handler)
    return lines[0]


def job_divergent(local_rank: int, out_dir: str) -> None:
    """Rank-divergent stop triggers; every one must end both ranks on the same iteration, same reason."""
    rank = idist.get_rank()
    never = datetime.timedelta(hours=1)
    results = {
        # (a) a user stop request on rank 1 only, at iteration 6
        "request": _scenario({}, request_at=6),
        # (b) max_time, clocks that disagree: rank 1's budget is long spent from the start, rank 0's is
        # spent at iteration 3 (it sleeps there); only rank 0's clock counts
        "max_time_rank1_ahead": _scenario(
            {"max_time": datetime.timedelta(seconds=0.001 if rank else 1.0)}, sleep_at={3: 1.1} if rank == 0 else None
        ),
        # ... and the reverse: rank 1 is the slow one (sleeps at iteration 2) and its budget is never spent;
        # rank 0 waits for it in iteration 2's sync, so rank 0's clock shows the budget spent at iteration 3
        "max_time_rank1_slow": _scenario(
            {"max_time": never if rank else datetime.timedelta(seconds=1.0)}, sleep_at={2: 1.1} if rank == 1 else None
        ),
        # ... max_time_mode="epoch": rank 0's budget is spent at iteration 3, checked at the epoch end (4)
        "max_time_epoch_mode": _scenario(
            {"max_time": never if rank else datetime.timedelta(seconds=1.0), "max_time_mode": "epoch"},
            sleep_at={3: 1.1} if rank == 0 else None,
        ),
        # ... max_time_mode="fit": epochs of 4 x 0.3 s on rank 0 (rank 1 waits for it in DDP); after the first,
        # rank 0 predicts that the next would not fit in its 2 s budget
        "max_time_fit_mode": _scenario(
            {"max_time": never if rank else datetime.timedelta(seconds=2.0), "max_time_mode": "fit"},
            sleep_at={i: 0.3 for i in range(1, 9)} if rank == 0 else None,
        ),
        # (c) a NaN training loss on rank 1 only, at iteration 5
        "nan": _scenario({"terminate_on_nan": True}, nan_at=5),
        # (d) early stopping on a metric that differs per rank: rank 0 improves, rank 1 is flat (patience 1)
        "early_stopping": _scenario(
            {"early_stopping": {"monitor": "val_loss", "patience": 1}, "num_sanity_val_steps": 0},
            metrics={0: [1.0, 0.9, 0.8, 0.7, 0.6], 1: [1.0]},
        ),
    }
    results["log_line"] = _logged_line()
    with open(os.path.join(out_dir, f"divergent_{rank}.json"), "w") as fh:
        json.dump(results, fh)


def job_raise(local_rank: int, out_dir: str) -> None:
    """(e) rank 1's process function raises at iteration 5. The results are written, not raised, so
    that the launcher does not kill the other rank: the test sees what each rank did on its own."""
    rank = idist.get_rank()
    Speedups.rank_failure_timeout = datetime.timedelta(seconds=FAILURE_WAIT_S)
    # no collective in the step: rank 0 trains on to its next stop agreement, where it learns of the failure
    results = {"between_collectives": _scenario({}, fail_at=5, ddp=False)}
    # the failed rank took part in that agreement's sync: the groups are still usable
    results["group_usable"] = float(idist.all_reduce(1.0))
    # a DDP step: rank 0 waits in DDP's all-reduce of its next step, which only the process-group timeout ends;
    # rank 1 waits FAILURE_WAIT_S for rank 0 to reach a stop sync. Last: the default group is broken afterwards.
    results["in_ddp"] = _scenario({}, fail_at=5)
    with open(os.path.join(out_dir, f"raise_{rank}.json"), "w") as fh:
        json.dump(results, fh)


def job_preempt(local_rank: int, out_dir: str) -> None:
    """SIGUSR1 to rank 1 alone, during iteration PREEMPT_SIGNAL_AT: both ranks stop at the same batch, with
    PREEMPTED, and their Checkpoint saves there."""
    from ignite.handlers import Checkpoint, DiskSaver

    rank = idist.get_rank()
    trainer, _ = _trainer(signal_at=PREEMPT_SIGNAL_AT)
    speed = attach_speedups(trainer, cfg={"max_epochs": 3})
    speed.loop.sync_every_n_batches = SYNC_EVERY
    ckpt = Checkpoint(
        {"trainer": trainer, "speedups": speed},
        DiskSaver(os.path.join(out_dir, "ckpt"), require_empty=False),
        n_saved=None,
    )
    trainer.add_event_handler(Events.EPOCH_COMPLETED, ckpt)
    result = _outcome(trainer, speed, lambda: trainer.run(list(range(PREEMPT_BATCHES))))
    assert speed.preemption is not None
    result.update(exit_code=speed.exit_code, saved=speed.preemption.saved, received=speed.preemption.received)
    with open(os.path.join(out_dir, f"preempt_{rank}.json"), "w") as fh:
        json.dump({"preempt": result}, fh)


JOBS = {"divergent": job_divergent, "raise": job_raise, "preempt": job_preempt}


def main(job: str, out_dir: str, port: int) -> None:
    torch.set_num_threads(1)
    run_on_two_gloo_ranks(JOBS[job], port, out_dir, timeout_s=GROUP_TIMEOUT_S)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
