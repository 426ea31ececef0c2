"""A job script for the Optuna relaunch test (tests/search/test_optuna.py): one trial of a file-backed study.

``python tests/search/_optuna_job.py JOURNAL RUN_KEY CKPT_DIR OUT [--preempt-at K]``

The job opens the study in the journal file, takes its trial with ``continue_or_ask(study, RUN_KEY)`` (the same
trial when relaunched), trains with ``autoresume=True`` and a ``Checkpoint`` every ``SAVE_EVERY`` iterations,
validates every ``VAL_EVERY`` batches and reports ``val_loss`` through the ``pruning`` flag. ``--preempt-at K``
sends this process SIGTERM at iteration K (a real preemption signal: the run saves and exits with 75). The job
writes ``OUT`` (JSON: the trial number, how the run ended) and exits with ``speedups.exit_code``; a finished
trial is told its value.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import optuna  # noqa: E402
from ignite.engine import Engine, Events  # noqa: E402
from ignite.handlers import Checkpoint, DiskSaver  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from ignite_speed import attach_speedups, create_trainer  # noqa: E402
from ignite_speed.search.optuna_trial import continue_or_ask  # noqa: E402

BATCHES, EPOCHS, SAVE_EVERY, VAL_EVERY = 8, 3, 3, 4


def _data(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return TensorDataset(x, (x * torch.linspace(-1, 1, 4)).sum(1, keepdim=True) + 0.1 * torch.randn(n, 1, generator=g))


def main() -> int:
    parser = argparse.ArgumentParser()
    for name in ("journal", "run_key", "ckpt_dir", "out"):
        parser.add_argument(name)
    parser.add_argument("--preempt-at", type=int, default=0)
    a = parser.parse_args()
    torch.set_num_threads(1)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(a.journal))
    study = optuna.load_study(study_name="relaunch", storage=storage, pruner=optuna.pruners.NopPruner())
    trial = continue_or_ask(study, a.run_key)
    lr = trial.suggest_float("lr", 0.001, 0.1, log=True)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    train = DataLoader(_data(BATCHES * 4, 1), batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(3))
    cfg = {
        "max_epochs": EPOCHS,
        "autoresume": True,
        "val_check_interval": VAL_EVERY,
        "num_sanity_val_steps": 0,
        "pruning": {"trial": trial, "monitor": "val_loss"},
    }
    trainer = create_trainer(model, opt, torch.nn.functional.mse_loss, cfg)

    def val_step(engine: Engine, batch: tuple[torch.Tensor, torch.Tensor]) -> float:
        model.eval()
        with torch.no_grad():
            return float(torch.nn.functional.mse_loss(model(batch[0]), batch[1]))

    evaluator = Engine(val_step)
    losses: list[float] = []
    evaluator.add_event_handler(Events.STARTED, lambda _: losses.clear())
    evaluator.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(e.state.output))
    evaluator.add_event_handler(Events.COMPLETED, lambda e: e.state.metrics.update(val_loss=sum(losses) / len(losses)))
    speedups = attach_speedups(trainer, evaluator, cfg, val_data=DataLoader(_data(8, 2), batch_size=4))
    to_save = {"trainer": trainer, "model": model, "optimizer": opt, "speedups": speedups}
    checkpoint = Checkpoint(
        to_save,
        DiskSaver(a.ckpt_dir, require_empty=False),
        n_saved=2,
        global_step_transform=lambda e, _: e.state.iteration,
    )
    trainer.add_event_handler(Events.ITERATION_COMPLETED(every=SAVE_EVERY) | Events.EPOCH_COMPLETED, checkpoint)
    if a.preempt_at:
        trainer.add_event_handler(
            Events.ITERATION_COMPLETED(once=a.preempt_at), lambda _: os.kill(os.getpid(), signal.SIGTERM)
        )
    trainer.run(train)
    if speedups.exit_code == 0:
        study.tell(trial, evaluator.state.metrics["val_loss"])
    weights = {k: v.flatten().tolist() for k, v in sorted(model.state_dict().items())}
    with open(a.out, "w") as fh:
        json.dump(
            {
                "number": trial.number,
                "reason": speedups.stop_reason.value,
                "iteration": trainer.state.iteration,
                "resumed_from": speedups.autoresume.resumed_from if speedups.autoresume else None,
                "weights": weights,
            },
            fh,
        )
    return speedups.exit_code


if __name__ == "__main__":
    sys.exit(main())
