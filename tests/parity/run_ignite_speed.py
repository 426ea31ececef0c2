"""Run each scenario through ignite-speed's public API and compare with the Lightning oracle.

Public API used (as the foundation issue specifies it):
    sp = attach_speedups(trainer, evaluator, cfg, val_data=val_loader)
    trainer.run(train_loader)
    sp.test(tester, test_loader)
Usage: python run_ignite_speed.py ORACLE.json   (prints mismatches, last line = figure)
"""
import json
import math
import sys
import warnings

import torch
from torch.utils.data import DataLoader, TensorDataset
from ignite.engine import Engine, Events

sys.path.insert(0, __file__.rsplit("/", 1)[0])
try:
    from scenarios import make  # noqa: E402
except ImportError:  # imported as tests.parity.*
    from .scenarios import make  # noqa: E402

warnings.filterwarnings("ignore")
torch.set_num_threads(1)


def loader(n_batches, offset=0.0):
    x = torch.arange(n_batches * 2, dtype=torch.float32).reshape(-1, 1) + offset
    return DataLoader(TensorDataset(x, x.clone()), batch_size=2, shuffle=False)


def run(sc):
    from ignite_speed import attach_speedups

    rec = {"id": sc["id"], "error": None}
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def train_step(engine, batch):
        x, y = batch
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    trainer, evaluator, tester = Engine(train_step), Engine(lambda e, b: None), Engine(lambda e, b: None)
    per_epoch, val_at, val_batches, test_batches = {}, [], [], [0]
    total = [0]
    seq, k = sc["metric_seq"], [0]

    @trainer.on(Events.ITERATION_COMPLETED)
    def _count(engine):
        total[0] += 1
        per_epoch[engine.state.epoch] = per_epoch.get(engine.state.epoch, 0) + 1

    @evaluator.on(Events.EPOCH_COMPLETED)
    def _metric(engine):
        engine.state.metrics["val_loss"] = float(seq[min(k[0], len(seq) - 1)])
        k[0] += 1

    vb = [0]
    evaluator.add_event_handler(Events.STARTED, lambda e: vb.__setitem__(0, 0))
    evaluator.add_event_handler(Events.ITERATION_COMPLETED, lambda e: vb.__setitem__(0, vb[0] + 1))

    @evaluator.on(Events.COMPLETED)
    def _val_done(engine):
        val_at.append(total[0])
        val_batches.append(vb[0])

    tester.add_event_handler(Events.ITERATION_COMPLETED, lambda e: test_batches.__setitem__(0, test_batches[0] + 1))

    cfg = dict(sc["flags"])
    cfg["num_sanity_val_steps"] = 0
    if sc.get("early_stopping"):
        cfg["early_stopping"] = dict(sc["early_stopping"])
    try:
        sp = attach_speedups(trainer, evaluator, cfg, val_data=loader(sc["n_val"], 1000.0))
        trainer.run(loader(sc["n_train"]))
        sp.test(tester, loader(sc["n_test"], 2000.0))
    except (ValueError, TypeError, RuntimeError) as e:
        rec["error"] = type(e).__name__
        rec["error_msg"] = str(e)[:200]
    except Exception as e:  # anything else is a defect: bad input must get a clear error
        rec["error"] = "UNCLEAR:" + type(e).__name__
        rec["error_msg"] = str(e)[:200]
    rec["train_per_epoch"] = [per_epoch[e] for e in sorted(per_epoch)]
    rec["total_train"] = total[0]
    rec["val_at"], rec["val_batches"], rec["test_batches"] = val_at, val_batches, test_batches[0]
    return rec


KEYS = ("train_per_epoch", "val_at", "val_batches", "test_batches")


def compare(oracle, ours):
    if oracle["error"]:
        return None if ours["error"] in ("ValueError", "TypeError", "RuntimeError") else "Lightning refuses this config; ignite-speed: %s" % (ours["error"] or "accepted")
    if ours["error"]:
        return "Lightning accepts; ignite-speed raised %s: %s" % (ours["error"], ours.get("error_msg"))
    diffs = [f"{k}: PL={oracle[k]} ours={ours[k]}" for k in KEYS if oracle[k] != ours[k]]
    return "; ".join(diffs) or None


if __name__ == "__main__":
    oracle = json.load(open(sys.argv[1]))
    bad = 0
    for o in oracle:
        sc = make(o["id"])
        msg = compare(o, run(sc))
        if msg:
            bad += 1
            if bad <= 15:
                print(f"scenario {o['id']} flags={sc['flags']} es={sc.get('early_stopping')}: {msg}")
    n = len(oracle)
    print(f"lightning parity: {n - bad}/{n} scenarios match ({100.0 * (n - bad) / n:.1f}%)")
    sys.exit(0 if bad == 0 else 1)
