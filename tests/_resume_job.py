"""A small real training run with checkpoints at epoch ends and every few iterations, for the exact
resume tests: it can kill its own process with SIGKILL at a chosen point, and resume from the last
checkpoint in a new process. Module-level functions, so that a forked process can run them."""

from __future__ import annotations

import glob
import os
import signal
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver
from torch.utils.data import DataLoader, TensorDataset

from ignite_speed import Precision, attach_speedups, create_trainer

# Early stopping sees this score at each validation run: it stops improving at run 3 and asks to stop
# at run 5 (epoch index 2), which min_epochs=4 defers to the first decision point after 4 epochs.
SCORES = [5.0, 4.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0]

SCENARIOS: dict[str, dict[str, Any]] = {
    # shuffled, limited epochs (7 of 10 batches), validation twice an epoch, early stopping pending
    # under min_epochs: ends by early stopping at iteration 29
    "early_stop": dict(
        max_epochs=8,
        min_epochs=4,
        limit_train_batches=7,
        val_check_interval=0.5,
        num_sanity_val_steps=1,
        early_stopping={"monitor": "val_score", "patience": 2, "mode": "min"},
    ),
    # full epochs ended early by the user at batch 6 in odd epochs, max_steps with accumulation
    "max_steps": dict(max_steps=17, accumulate_grad_batches=2, check_val_every_n_epoch=2),
    # create_trainer's accumulation (3 batches per step, the last one of an epoch steps too), a checkpoint every
    # 2 batches, so that most land inside an accumulation window
    "accumulate": dict(
        accumulate_grad_batches=3,
        limit_train_batches=10,
        max_steps=20,
        val_check_interval=4,
        num_sanity_val_steps=0,
        early_stopping={"monitor": "val_score", "patience": 4, "mode": "min"},
    ),
}
# ... and the same with fp16 autocast and torch's CPU GradScaler (its scale is in the checkpoint)
SCENARIOS["accumulate_scaled"] = SCENARIOS["accumulate"]
CHECKPOINT_EVERY = {"early_stop": 5, "max_steps": 5, "accumulate": 2, "accumulate_scaled": 2}


def _build(scenario: str, ckpt_dir: str, kill: tuple[str, int] | None) -> dict[str, Any]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.3), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 4, generator=g)
    y = x.sum(dim=1, keepdim=True)
    train = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True)
    val = DataLoader(TensorDataset(x[:12], y[:12]), batch_size=4)

    def train_step(engine: Engine, batch: Any) -> float:
        model.train()
        xb, yb = batch
        loss = torch.nn.functional.mse_loss(model(xb), yb)
        loss.backward()
        if engine.state.iteration % cfg.get("accumulate_grad_batches", 1) == 0 or scenario != "max_steps":
            opt.step()
            opt.zero_grad()
        return loss.item()

    def eval_step(engine: Engine, batch: Any) -> Any:
        model.eval()
        with torch.no_grad():
            return torch.nn.functional.mse_loss(model(batch[0]), batch[1]).item()

    cfg = dict(SCENARIOS[scenario])
    if scenario == "accumulate":
        trainer = create_trainer(model, opt, torch.nn.functional.mse_loss, cfg)
    elif scenario == "accumulate_scaled":
        scaled = Precision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=1024.0))
        trainer = create_trainer(model, opt, torch.nn.functional.mse_loss, cfg, precision=scaled)
    else:
        trainer = Engine(train_step)
    evaluator = Engine(eval_step)
    record: dict[str, Any] = {"val_at": []}
    sp = attach_speedups(trainer, evaluator, cfg, val_data=val)

    @evaluator.on(Events.COMPLETED)
    def _score(engine: Engine) -> None:
        engine.state.metrics["val_score"] = SCORES[min(sp.progress.val_runs, len(SCORES) - 1)]
        record["val_at"].append(trainer.state.iteration)
        if kill == ("validation", len(record["val_at"]) + record.get("val_offset", 0)):
            os.kill(os.getpid(), signal.SIGKILL)

    if scenario == "max_steps":

        @trainer.on(Events.ITERATION_COMPLETED)
        def _end_odd_epochs(engine: Engine) -> None:
            if sp.progress.epoch % 2 == 0 and sp.progress.batch_in_epoch == 6:
                sp.end_epoch()

    to_save = {"trainer": trainer, "model": model, "optimizer": opt, "speedups": sp}
    saves = [0]

    def step(*_: Any) -> int:
        saves[0] += 1
        return saves[0]

    ckpt = Checkpoint(to_save, DiskSaver(ckpt_dir, require_empty=False), n_saved=1, global_step_transform=step)
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED(every=CHECKPOINT_EVERY[scenario]) | Events.EPOCH_COMPLETED, ckpt
    )

    if kill is not None and kill[0] == "iteration":
        trainer.add_event_handler(
            Events.ITERATION_COMPLETED(once=kill[1]), lambda _: os.kill(os.getpid(), signal.SIGKILL)
        )
    if kill is not None and kill[0] == "epoch":
        trainer.add_event_handler(Events.EPOCH_COMPLETED(once=kill[1]), lambda _: os.kill(os.getpid(), signal.SIGKILL))
    return dict(trainer=trainer, model=model, sp=sp, train=train, to_save=to_save, record=record, saves=saves)


def run_job(scenario: str, ckpt_dir: str, out: str, kill: tuple[str, int] | None = None, resume: bool = False) -> None:
    """Train (killing this process at ``kill``), or resume from the last checkpoint in ``ckpt_dir``;
    write the outcome to ``out``."""
    torch.set_num_threads(1)
    os.makedirs(ckpt_dir, exist_ok=True)
    b = _build(scenario, ckpt_dir, kill)
    start = 0
    if resume:
        # the last checkpoint (a resumed process's Checkpoint does not remove the earlier process's file)
        last = max(glob.glob(os.path.join(ckpt_dir, "*.pt")), key=lambda f: int(f.rsplit("_", 1)[1][:-3]))
        Checkpoint.load_objects(to_load=b["to_save"], checkpoint=torch.load(last, weights_only=True))
        b["saves"][0] = int(last.rsplit("_", 1)[1][:-3])
        start = b["trainer"].state.iteration
        b["record"]["val_offset"] = b["sp"].progress.val_runs
    b["trainer"].run(b["train"])
    sp, trainer = b["sp"], b["trainer"]
    torch.save(
        {
            "weights": {k: v.clone() for k, v in b["model"].state_dict().items()},
            "iteration": trainer.state.iteration,
            "epoch": trainer.state.epoch,
            "reason": sp.stop_reason.value,
            "message": sp.stop_message,
            "val_at": b["record"]["val_at"],
            "val_runs": sp.progress.val_runs,
            "global_step": sp.global_step,
            "epochs_done": sp.progress.epochs_done,
            "start": start,
            "history": sp.controller.history,
        },
        out,
    )
