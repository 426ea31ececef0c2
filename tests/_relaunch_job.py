"""A job script for the relaunch tests (tests/loop/test_relaunch.py): the same command starts and continues a run.

``python tests/_relaunch_job.py MODE CKPT_DIR OUT [--accum N] [--shuffle] [--early-stop]``

MODE: ``single`` (one process), ``gloo`` (2 processes through ``idist.Parallel``; this process is the launcher) or
``torchrun`` (a worker started by ``torchrun``). The run: ``create_trainer`` on a small MLP, ``autoresume=True``, a
``Checkpoint`` (``DiskSaver``, ``n_saved=2``) every ``SAVE_EVERY`` iterations and at every epoch end, validation
every ``VAL_EVERY`` batches (mid-epoch and at the epoch end). Each rank writes ``OUT.rank<r>.json``: where and why
the run ended, the weights, the validation runs (saved in the checkpoint, so a relaunch counts those of the
attempts before it), the file it resumed from; the process exits with ``speedups.exit_code`` (75 when preempted).

To signal the run at a chosen moment, the test writes ``OUT.pause`` before a launch: ``PHASE K RANKS`` (``RANKS``
comma-separated; ``single``: ``0``). On those ranks the run pauses at the K-th occurrence of PHASE in this attempt,
writes ``OUT.paused.<rank>`` (its pid) and waits (up to ``PAUSE_S``) until a preemption signal has reached it: the
signal arrives while the process stands exactly there. Phases: ``batch`` (inside the training step, after the
forward pass), ``val`` (inside a validation batch), ``save`` (inside ``DiskSaver``, before the file is written),
``saved`` (right after a file was written), ``kill`` (a batch; the test SIGKILLs the process, which is not waited
for in a signal handler: the pause just ends after ``PAUSE_S``). Under torchrun a pause applies to the first
attempt only (``TORCHELASTIC_RESTART_COUNT`` 0): the workers that torchrun restarts run to the end.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ignite.distributed as idist  # noqa: E402
from ignite.engine import Engine, Events  # noqa: E402
from ignite.handlers import Checkpoint, DiskSaver  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from ignite_speed import attach_speedups, create_trainer  # noqa: E402
from ignite_speed.distributed import attach_set_epoch  # noqa: E402

BATCHES = 8  # per epoch (per rank)
EPOCHS = 5
SAVE_EVERY = 3  # iterations
VAL_EVERY = 4  # batches: validation in the middle and at the end of each epoch
PAUSE_S = 60.0
GROUP_TIMEOUT = datetime.timedelta(seconds=30)


class ValLog:
    """The iterations at which validation runs ended: saved with the checkpoint, so the last attempt's count is
    the whole run's."""

    def __init__(self) -> None:
        self.at: list[int] = []

    def state_dict(self) -> dict[str, Any]:
        return {"at": list(self.at)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.at = list(state["at"])


class Pauses:
    """Pause at the K-th occurrence of a phase in this attempt until a preemption signal has come (see above)."""

    def __init__(self, out: str, rank: int) -> None:
        self.out, self.rank, self.counts = out, rank, {}  # type: ignore[var-annotated]
        self.phase, self.k = "", 0
        self.speedups: Any = None
        spec = out + ".pause"
        restarted = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0
        if os.path.exists(spec) and not restarted:
            phase, k, ranks = open(spec).read().split()
            if str(rank) in ranks.split(","):
                self.phase, self.k = phase, int(k)

    def at(self, phase: str) -> None:
        self.counts[phase] = self.counts.get(phase, 0) + 1
        if phase != self.phase and not (phase == "batch" and self.phase == "kill"):
            return
        if self.counts[phase] != self.k:
            return
        with open(f"{self.out}.paused.{self.rank}.tmp", "w") as fh:
            fh.write(str(os.getpid()))
        os.replace(f"{self.out}.paused.{self.rank}.tmp", f"{self.out}.paused.{self.rank}")
        deadline = time.monotonic() + PAUSE_S
        while not self.speedups.preemption.received and time.monotonic() < deadline:
            time.sleep(0.002)


class PausingSaver(DiskSaver):
    """A DiskSaver whose test can stop it inside a save and right after one."""

    def __init__(self, dirname: str, pauses: Pauses) -> None:
        super().__init__(dirname, require_empty=False)
        self.pauses = pauses

    def __call__(self, checkpoint: Any, filename: str, metadata: Any = None) -> None:
        self.pauses.at("save")
        super().__call__(checkpoint, filename, metadata)
        self.pauses.at("saved")


def _data(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return TensorDataset(x, (x * torch.linspace(-1, 1, 4)).sum(1, keepdim=True) + 0.1 * torch.randn(n, 1, generator=g))


def run(rank: int, mode: str, ckpt_dir: str, out: str, accum: int, shuffle: bool, early_stop: bool) -> int:
    torch.manual_seed(0)
    model: Any = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))
    world = idist.get_world_size()
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    pauses = Pauses(out, rank)
    train_set = _data(BATCHES * 4 * world, 1)
    if world > 1:
        sampler = torch.utils.data.distributed.DistributedSampler(train_set, shuffle=shuffle, seed=3)
        train = DataLoader(train_set, batch_size=4, sampler=sampler)
    else:
        train = DataLoader(
            train_set, batch_size=4, shuffle=shuffle, generator=torch.Generator().manual_seed(3) if shuffle else None
        )

    def model_fn(m: Any, x: torch.Tensor) -> torch.Tensor:
        y = m(x)
        pauses.at("batch")
        return y

    cfg: dict[str, Any] = {
        "max_epochs": EPOCHS,
        "autoresume": True,
        "val_check_interval": VAL_EVERY,
        "num_sanity_val_steps": 0,
        "accumulate_grad_batches": accum,
    }
    if early_stop:  # no improvement after the first validation: stops at the 3rd (patience 2)
        cfg["early_stopping"] = {"monitor": "val_loss", "patience": 2, "min_delta": 100.0}
    trainer = create_trainer(model, opt, torch.nn.functional.mse_loss, cfg, model_fn=model_fn)
    attach_set_epoch(trainer, train)

    val_log = ValLog()
    val_set = _data(8, 2)

    def val_step(engine: Engine, batch: Any) -> float:
        pauses.at("val")
        model.eval()  # (create_trainer's step puts it back in training mode)
        with torch.no_grad():
            return float(torch.nn.functional.mse_loss(model(batch[0]), batch[1]))

    evaluator = Engine(val_step)
    losses: list[float] = []
    evaluator.add_event_handler(Events.STARTED, lambda _: losses.clear())
    evaluator.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(e.state.output))

    @evaluator.on(Events.COMPLETED)
    def _metric(engine: Engine) -> None:
        engine.state.metrics["val_loss"] = sum(losses) / len(losses)
        val_log.at.append(trainer.state.iteration)

    speedups = attach_speedups(trainer, evaluator, cfg, val_data=DataLoader(val_set, batch_size=4))
    pauses.speedups = speedups
    to_save = {"trainer": trainer, "model": model, "optimizer": opt, "speedups": speedups, "val_log": val_log}
    ckpt = Checkpoint(
        to_save, PausingSaver(ckpt_dir, pauses), n_saved=2, global_step_transform=lambda e, _: e.state.iteration
    )
    trainer.add_event_handler(Events.ITERATION_COMPLETED(every=SAVE_EVERY) | Events.EPOCH_COMPLETED, ckpt)

    trainer.run(train)
    assert speedups.autoresume is not None and speedups.preemption is not None
    weights = {k: v.flatten().tolist() for k, v in sorted(model.state_dict().items())}
    result = {
        "rank": rank,
        "world_size": world,
        "iteration": trainer.state.iteration,
        "epoch": trainer.state.epoch,
        "global_step": speedups.global_step,
        "reason": speedups.stop_reason.value,
        "message": speedups.stop_message,
        "exit_code": speedups.exit_code,
        "val_at": val_log.at,
        "weights": weights,
        "resumed_from": speedups.autoresume.resumed_from,
        "skipped": speedups.autoresume.skipped,
        "received": speedups.preemption.received,
        "saved": speedups.preemption.saved,
        "files": sorted(os.listdir(ckpt_dir)),
        "restart_count": int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")),
    }
    with open(f"{out}.rank{rank}.json", "w") as fh:
        json.dump(result, fh)
    return speedups.exit_code


def _rank_job(local_rank: int, mode: str, ckpt_dir: str, out: str, accum: int, shuffle: bool, early_stop: bool) -> None:
    torch.set_num_threads(1)
    code = run(idist.get_rank(), mode, ckpt_dir, out, accum, shuffle, early_stop)
    with open(f"{out}.exit{idist.get_rank()}", "w") as fh:
        fh.write(str(code))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("single", "gloo", "torchrun"))
    parser.add_argument("ckpt_dir")
    parser.add_argument("out")
    parser.add_argument("--accum", type=int, default=1)
    parser.add_argument("--shuffle", action="store_true")
    parser.add_argument("--early-stop", action="store_true")
    parser.add_argument("--port", type=int, default=0)
    a = parser.parse_args()
    torch.set_num_threads(1)
    args = (a.mode, a.ckpt_dir, a.out, a.accum, a.shuffle, a.early_stop)
    if a.mode == "single":
        return run(0, *args)
    for rank in (0, 1):
        if os.path.exists(f"{a.out}.exit{rank}"):
            os.remove(f"{a.out}.exit{rank}")
    if a.mode == "gloo":
        with idist.Parallel(
            backend="gloo", nproc_per_node=2, master_addr="127.0.0.1", master_port=a.port, timeout=GROUP_TIMEOUT
        ) as parallel:
            parallel.run(_rank_job, *args)
        return max(int(open(f"{a.out}.exit{rank}").read()) for rank in (0, 1))
    _torchrun_group()
    try:
        _rank_job(int(os.environ["LOCAL_RANK"]), *args)
    finally:
        torch.distributed.destroy_process_group()
    return int(open(f"{a.out}.exit{os.environ['RANK']}").read())


def _torchrun_group() -> None:
    """The default group of a torchrun worker, on the agent's store under a prefix of this restart: with
    ``init_method="env://"`` (``idist.Parallel``), the workers that torchrun restarts read the addresses that the
    workers of the first attempt left in the agent's store, and gloo's connect is refused (torch 2.13)."""
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = torch.distributed.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        world,
        is_master=rank == 0 and not agent_store,
        timeout=GROUP_TIMEOUT,
    )
    prefixed = torch.distributed.PrefixStore(f"restart_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)
    torch.distributed.init_process_group("gloo", store=prefixed, rank=rank, world_size=world, timeout=GROUP_TIMEOUT)


if __name__ == "__main__":
    sys.exit(main())
