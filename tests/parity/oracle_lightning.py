"""Run each scenario through pytorch-lightning 2.6.6 and record what happened (the oracle).

Usage: python oracle_lightning.py START COUNT OUT.json
"""
import json
import logging
import math
import sys
import warnings

import torch
from torch.utils.data import DataLoader, TensorDataset

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback, EarlyStopping

sys.path.insert(0, __file__.rsplit("/", 1)[0])
try:
    from scenarios import all_scenarios  # noqa: E402
except ImportError:  # imported as tests.parity.*
    from .scenarios import all_scenarios  # noqa: E402

warnings.filterwarnings("ignore")
for name in ("lightning", "pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
    logging.getLogger(name).setLevel(logging.CRITICAL)
torch.set_num_threads(1)


def loader(n_batches, offset=0.0):
    x = torch.arange(n_batches * 2, dtype=torch.float32).reshape(-1, 1) + offset
    return DataLoader(TensorDataset(x, x.clone()), batch_size=2, shuffle=False)


class Count(Callback):
    def __init__(self):
        self.per_epoch, self.total, self.val_at, self.val_batches, self.test_batches = {}, 0, [], [], 0
        self._vb = 0

    def on_train_batch_end(self, trainer, *a, **k):
        self.total += 1
        self.per_epoch[trainer.current_epoch] = self.per_epoch.get(trainer.current_epoch, 0) + 1

    def on_validation_start(self, trainer, *a):
        self._vb = 0

    def on_validation_batch_end(self, trainer, *a, **k):
        self._vb += 1

    def on_validation_end(self, trainer, *a):
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        self.val_at.append(self.total)
        self.val_batches.append(self._vb)

    def on_test_batch_end(self, *a, **k):
        self.test_batches += 1


class Model(pl.LightningModule):
    def __init__(self, seq):
        super().__init__()
        self.lin = torch.nn.Linear(1, 1)
        self.seq, self.k = seq, 0

    def training_step(self, batch, i):
        x, y = batch
        return torch.nn.functional.mse_loss(self.lin(x), y)

    def validation_step(self, batch, i):
        pass

    def on_validation_epoch_end(self):
        if self.trainer.sanity_checking:
            return
        v = self.seq[min(self.k, len(self.seq) - 1)]
        self.k += 1
        self.log("val_loss", float(v))

    def test_step(self, batch, i):
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1e-3)


def run(sc):
    rec = {"id": sc["id"], "error": None}
    cnt = Count()
    cbs = [cnt]
    es = None
    if sc.get("early_stopping"):
        es = EarlyStopping(**sc["early_stopping"])
        cbs.append(es)
    try:
        trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, accelerator="cpu", devices=1,
                             num_sanity_val_steps=0, callbacks=cbs, **sc["flags"])
        model = Model(sc["metric_seq"])
        trainer.fit(model, loader(sc["n_train"]), loader(sc["n_val"], 1000.0))
        trainer.test(model, loader(sc["n_test"], 2000.0), verbose=False)
    except Exception as e:  # the oracle says: this configuration is refused
        rec["error"] = type(e).__name__
        rec["error_msg"] = str(e)[:200]
    rec["train_per_epoch"] = [cnt.per_epoch[k] for k in sorted(cnt.per_epoch)]
    rec["total_train"] = cnt.total
    rec["val_at"] = cnt.val_at
    rec["val_batches"] = cnt.val_batches
    rec["test_batches"] = cnt.test_batches
    rec["es_reason"] = es.stopping_reason.name if es is not None and hasattr(es, "stopping_reason") else None
    return rec


if __name__ == "__main__":
    start, count, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    recs = [run(sc) for sc in all_scenarios(start, count)]
    json.dump(recs, open(out, "w"), indent=0)
    errs = sum(1 for r in recs if r["error"])
    print(f"{len(recs)} scenarios, {errs} refused by Lightning")
