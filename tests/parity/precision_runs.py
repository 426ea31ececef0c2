"""One seeded classification run, trained and validated under a ``precision`` value twice: by pytorch-lightning
2.6.6 and by an app shaped like Ignite's examples (``create_trainer`` + ``create_supervised_evaluator`` +
``attach_speedups``). Each returns the validation metrics of every validation run, in order."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

EPOCHS = 3


def _data() -> tuple[DataLoader, DataLoader]:
    generator = torch.Generator().manual_seed(7)
    x = torch.randn(320, 12, generator=generator)
    w = torch.randn(12, 4, generator=generator)
    y = (x @ w + 0.8 * torch.randn(320, 4, generator=generator)).argmax(1)
    train = DataLoader(TensorDataset(x[:192], y[:192]), batch_size=16, shuffle=False)
    val = DataLoader(TensorDataset(x[192:], y[192:]), batch_size=20, shuffle=False)
    return train, val


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(12, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4))


def _metrics(loss_sum: torch.Tensor, correct: int, n: int) -> dict[str, float]:
    # summed as Ignite's Loss and Accuracy sum (a float32 tensor of loss x batch size; a count)
    return {"val_loss": loss_sum.item() / n, "val_acc": correct / n}


def run_lightning(precision: str) -> list[dict[str, float]]:
    import pytorch_lightning as pl

    for name in ("lightning", "pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    train, val = _data()
    runs: list[dict[str, float]] = []

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = _model()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            return F.cross_entropy(self(x), y)

        def on_validation_epoch_start(self) -> None:
            self.loss_sum, self.correct, self.n = torch.tensor(0.0), 0, 0

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            logits = self(x)
            self.loss_sum += F.cross_entropy(logits, y).detach() * len(y)
            self.correct += int((logits.argmax(1) == y).sum())
            self.n += len(y)

        def on_validation_epoch_end(self) -> None:
            if not self.trainer.sanity_checking:
                runs.append(_metrics(self.loss_sum, self.correct, self.n))

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.2)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = pl.Trainer(
            precision=precision,
            accelerator="cpu",
            devices=1,
            max_epochs=EPOCHS,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
        )
        trainer.fit(Module(), train, val)
    return runs


def run_ignite_speed(precision: str) -> list[dict[str, float]]:
    from ignite.engine import Events, create_supervised_evaluator
    from ignite.metrics import Accuracy, Loss

    from ignite_speed import attach_speedups, create_trainer

    train, val = _data()
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2)
    cfg = {"precision": precision, "accelerator": "cpu", "max_epochs": EPOCHS, "num_sanity_val_steps": 0}
    runs: list[dict[str, float]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = create_trainer(model, optimizer, F.cross_entropy, cfg)
        evaluator = create_supervised_evaluator(
            model, metrics={"val_loss": Loss(F.cross_entropy), "val_acc": Accuracy()}
        )
        evaluator.add_event_handler(Events.COMPLETED, lambda e: runs.append(dict(e.state.metrics)))
        attach_speedups(trainer, evaluator, cfg, val_data=val)
        trainer.run(train)
    return runs
