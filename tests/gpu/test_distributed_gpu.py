"""GPU checks (skipped without CUDA): nccl DDP on one GPU and torch FSDP2 with world size 1.

Needs only torch and pytorch-ignite. Run: ``python -m pytest -q tests/gpu/test_distributed_gpu.py``.
The job runs in a subprocess bounded by a timeout; its process group has a 60 s collective timeout.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _train(cfg: dict[str, Any], ckpt_dir: str, resume_from: str | None = None) -> dict[str, Any]:
    import ignite.distributed as idist
    from ignite.engine import Engine, Events
    from ignite.handlers import Checkpoint, DiskSaver
    from torch import nn
    from torch.utils.data import TensorDataset

    from ignite_speed.distributed import attach_set_epoch, checkpoint_objects, prepare, prepare_dataloader

    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 32, generator=g)
    data = TensorDataset(x, x.sum(dim=1, keepdim=True))
    torch.manual_seed(1)
    model, opt = prepare(
        nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 1)), lambda p: torch.optim.Adam(p, lr=1e-2), cfg
    )
    loader = prepare_dataloader(data, cfg, batch_size=32, shuffle=True)
    device = next(iter(model.parameters())).device
    losses: list[float] = []

    def step(engine: Engine, batch: Any) -> float:
        opt.zero_grad()
        xb, yb = (t.to(device, non_blocking=True) for t in batch)
        loss = nn.functional.mse_loss(model(xb), yb)
        loss.backward()
        opt.step()
        return float(loss.item())

    trainer = Engine(step)
    attach_set_epoch(trainer, loader)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: losses.append(e.state.output))
    objects = checkpoint_objects(model, opt)
    to_save = {"trainer": trainer, **objects}
    saver = Checkpoint(to_save, DiskSaver(ckpt_dir, require_empty=False), n_saved=1)
    trainer.add_event_handler(Events.EPOCH_COMPLETED(once=2), saver)
    if resume_from:
        Checkpoint.load_objects(to_load=to_save, checkpoint=resume_from)
    trainer.run(loader, max_epochs=4)
    full = objects["model"].state_dict()
    return {
        "device": str(device),
        "backend": idist.backend(),
        "world_size": idist.get_world_size(),
        "losses": losses,
        "checkpoint": os.path.join(ckpt_dir, saver.last_checkpoint or ""),
        "params": torch.cat([v.float().flatten().cpu() for _, v in sorted(full.items())]).tolist(),
        "wrapper": type(model).__name__,
    }


def _job(local_rank: int, out_dir: str) -> None:
    results = {}
    for strategy in ("ddp", "fsdp"):
        cfg = {"accelerator": "gpu", "devices": 1, "strategy": strategy}
        run = _train(cfg, os.path.join(out_dir, strategy))
        resumed = _train(cfg, os.path.join(out_dir, strategy + "_resumed"), resume_from=run["checkpoint"])
        results[strategy] = {"run": run, "resumed": resumed}
    with open(os.path.join(out_dir, "gpu.json"), "w") as fh:
        json.dump(results, fh)


def test_nccl_ddp_and_fsdp_on_one_gpu(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, __file__, str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    results = json.loads((tmp_path / "gpu.json").read_text())
    for strategy, wrapper in (("ddp", "Sequential"), ("fsdp", "FSDPSequential")):
        run, resumed = results[strategy]["run"], results[strategy]["resumed"]
        assert run["backend"] == "nccl" and run["world_size"] == 1 and run["device"].startswith("cuda")
        assert run["wrapper"] == wrapper
        assert run["losses"][-1] < run["losses"][0], run["losses"]
        assert len(resumed["losses"]) == 2
        assert max(abs(a - b) for a, b in zip(run["params"], resumed["params"])) < 1e-4, strategy


if __name__ == "__main__":
    from ignite_speed.distributed import launch

    launch(
        {"accelerator": "gpu", "devices": 1, "strategy": "ddp"},
        _job,
        sys.argv[1],
        timeout=datetime.timedelta(seconds=60),
    )
