"""A training script for the preemption tests: ``python tests/_preempt_job.py CKPT_DIR OUT_JSON [resume]``.

It trains a shuffled Linear regression (3 epochs of 10 batches, 0.05 s each) with a Checkpoint at every epoch
end, writes ``OUT_JSON.started`` after its third batch (the test then sends SIGTERM), and exits with
``speedups.exit_code`` as a job script does. With ``resume`` it first loads the newest checkpoint of CKPT_DIR.
It writes its outcome to OUT_JSON: iteration, stop reason and message, the weights (floats, exact in JSON)."""

from __future__ import annotations

import glob
import json
import os
import sys
import time
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ignite.engine import Engine, Events  # noqa: E402
from ignite.handlers import Checkpoint, DiskSaver  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from ignite_speed import attach_speedups  # noqa: E402

BATCHES, EPOCHS, STEP_S = 10, 3, 0.05


def main(ckpt_dir: str, out: str, resume: bool) -> int:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x = torch.randn(BATCHES * 4, 4, generator=torch.Generator().manual_seed(1))
    data = DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=4, shuffle=True)

    def step(engine: Engine, batch: Any) -> float:
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(batch[0]), batch[1])
        loss.backward()
        opt.step()
        time.sleep(STEP_S)
        return loss.item()

    trainer = Engine(step)
    speedups = attach_speedups(trainer, cfg={"max_epochs": EPOCHS})
    to_save = {"trainer": trainer, "model": model, "optimizer": opt, "speedups": speedups}
    trainer.add_event_handler(
        Events.EPOCH_COMPLETED, Checkpoint(to_save, DiskSaver(ckpt_dir, require_empty=False), n_saved=None)
    )
    trainer.add_event_handler(Events.ITERATION_COMPLETED(once=3), lambda _: open(out + ".started", "w").close())
    start = 0
    if resume:
        last = max(glob.glob(os.path.join(ckpt_dir, "*.pt")), key=lambda f: int(f.rsplit("_", 1)[1][:-3]))
        Checkpoint.load_objects(to_load=to_save, checkpoint=torch.load(last, weights_only=True))
        start = trainer.state.iteration
    trainer.run(data)
    with open(out, "w") as fh:
        json.dump(
            {
                "start": start,
                "iteration": trainer.state.iteration,
                "reason": speedups.stop_reason.value,
                "message": speedups.stop_message,
                "weight": model.weight.flatten().tolist(),
                "bias": model.bias.tolist(),
                "files": sorted(os.listdir(ckpt_dir)),
            },
            fh,
        )
    return speedups.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3:] == ["resume"]))
