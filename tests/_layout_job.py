"""Two-process jobs of tests/loop/test_resume_world_size.py: a run on 2 gloo processes whose checkpoint a
1-process run resumes (``write``), and a 2-process resume of a checkpoint written by 1 process (``resume``).

Run as ``python tests/_layout_job.py JOB CKPT_DIR`` in a subprocess bounded by a timeout; every collective has
a 60 s timeout. The model, data and Checkpoint match ``_build`` of tests/loop/test_resume_rules.py, except
that each process reads its half of the data through a ``DistributedSampler``.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import warnings
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ignite.distributed as idist  # noqa: E402
from ignite.engine import Events  # noqa: E402
from ignite.handlers import Checkpoint, DiskSaver  # noqa: E402
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset  # noqa: E402

from ignite_speed import attach_speedups, create_trainer  # noqa: E402
from ignite_speed.distributed import launch  # noqa: E402

SAMPLES = 24


def _build(ckpt_dir: str, **cfg: Any) -> dict[str, Any]:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x = torch.randn(SAMPLES, 4, generator=torch.Generator().manual_seed(1))
    index = torch.arange(SAMPLES, dtype=torch.float32).unsqueeze(1)
    dataset = TensorDataset(x, x.sum(dim=1, keepdim=True), index)
    data = DataLoader(dataset, batch_size=4, sampler=DistributedSampler(dataset, shuffle=True, seed=3))
    trainer = create_trainer(
        model, opt, torch.nn.MSELoss(), prepare_batch=lambda batch, device, non_blocking: (batch[0], batch[1])
    )
    sp = attach_speedups(trainer, cfg={"max_epochs": 3, **cfg})
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: data.sampler.set_epoch(e.state.epoch))
    to_save = {"trainer": trainer, "model": model, "optimizer": opt, "speedups": sp}
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED(every=2), Checkpoint(to_save, DiskSaver(ckpt_dir, require_empty=False), n_saved=None)
    )
    epochs: list[list[int]] = []
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: epochs.append([e.state.epoch, e.state.iteration]))
    return {"trainer": trainer, "sp": sp, "data": data, "to_save": to_save, "epochs": epochs}


def job_write(local_rank: int, ckpt_dir: str) -> None:
    run = _build(ckpt_dir)
    run["trainer"].run(run["data"])


def job_resume(local_rank: int, ckpt_dir: str) -> None:
    run = _build(os.path.join(ckpt_dir, f"resumed{idist.get_rank()}"))
    state = torch.load(os.path.join(ckpt_dir, "checkpoint_8.pt"), weights_only=True)
    Checkpoint.load_objects(to_load=run["to_save"], checkpoint=state)
    record: dict[str, Any] = {}
    try:
        run["trainer"].run(run["data"])
    except ValueError as exc:
        record["refused"] = str(exc)
    run["sp"].loop.setup.allow_resume_changes = True  # (attach_speedups' allow_resume_changes=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run["trainer"].run(run["data"])
    sp = run["sp"]
    record.update(
        warnings=[str(w.message) for w in caught if "allow_resume_changes" in str(w.message)],
        epochs_completed=run["epochs"],
        iteration=run["trainer"].state.iteration,
        global_step=sp.global_step,
        epochs_done=sp.progress.epochs_done,
        stop_reason=sp.stop_reason.value,
    )
    with open(os.path.join(ckpt_dir, f"resume_{idist.get_rank()}.json"), "w") as fh:
        json.dump(record, fh)


def main() -> None:
    job, ckpt_dir = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    target = {"write": job_write, "resume": job_resume}[job]
    launch({"accelerator": "cpu", "devices": 2}, target, ckpt_dir, timeout=datetime.timedelta(seconds=60))


if __name__ == "__main__":
    main()
