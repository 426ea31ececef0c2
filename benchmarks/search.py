"""A hyperparameter search on the demo's model and data (scikit-learn's digits): how much pruning saves.

``python benchmarks/search.py [--trials 20] [--epochs 10]`` runs three Optuna studies of ``--trials`` trials each,
with the same seeded TPE sampler and a median pruner, and prints the total wall time of each search and the best
validation accuracy it found:

(a) no pruning: every trial trains ``--epochs`` epochs and validates at each epoch end;
(b) Optuna's ``PyTorchIgnitePruningHandler`` (``optuna-integration``, skipped when it is not installed): validation
    and a report at each epoch end, the trial pruned by the ``TrialPruned`` it raises;
(c) ignite-speed: ``attach_speedups(..., val_check_interval=0.5, pruning={"trial": trial, "monitor": "val_acc"})``,
    validation and a report twice per epoch, in optimizer steps.

The median pruner starts pruning after 5 complete trials and from the end of the first epoch on in (b) and (c).
The search space: the learning rate (1e-4 to 0.3, log), the hidden width (8 to 256, log) and the per-epoch decay.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import optuna
import torch
from ignite.engine import Engine, Events, create_supervised_evaluator, create_supervised_trainer
from ignite.metrics import Accuracy

from ignite_speed import attach_speedups
from ignite_speed.demo import make_loaders
from ignite_speed.search.optuna_trial import raise_if_pruned

STARTUP_TRIALS = 5  # the median pruner's: complete trials before it prunes


def _trial_setup(trial: optuna.Trial) -> tuple[Engine, Engine, Any, Any]:
    lr = trial.suggest_float("lr", 1e-4, 0.3, log=True)
    hidden = trial.suggest_int("hidden", 8, 256, log=True)
    decay = trial.suggest_float("decay", 0.5, 1.0)
    torch.manual_seed(trial.number)
    model = torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=decay)
    trainer = create_supervised_trainer(model, opt, torch.nn.functional.cross_entropy)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: scheduler.step())
    evaluator = create_supervised_evaluator(model, metrics={"val_acc": Accuracy()})
    train, val, _ = make_loaders(seed=trial.number)
    return trainer, evaluator, train, val


def objective_plain(trial: optuna.Trial, epochs: int) -> float:
    trainer, evaluator, train, val = _trial_setup(trial)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: evaluator.run(val))
    trainer.run(train, max_epochs=epochs)
    return float(evaluator.state.metrics["val_acc"])


def objective_optuna_handler(trial: optuna.Trial, epochs: int) -> float:
    from optuna_integration import PyTorchIgnitePruningHandler

    trainer, evaluator, train, val = _trial_setup(trial)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: evaluator.run(val))
    evaluator.add_event_handler(Events.COMPLETED, PyTorchIgnitePruningHandler(trial, "val_acc", trainer))
    trainer.run(train, max_epochs=epochs)
    return float(evaluator.state.metrics["val_acc"])


def objective_ignite_speed(trial: optuna.Trial, epochs: int) -> float:
    trainer, evaluator, train, val = _trial_setup(trial)
    attach_speedups(
        trainer,
        evaluator,
        {
            "max_epochs": epochs,
            "val_check_interval": 0.5,
            "num_sanity_val_steps": 0,
            "pruning": {"trial": trial, "monitor": "val_acc"},
        },
        val_data=val,
    )
    trainer.run(train)
    raise_if_pruned(trainer)  # the one line: optuna.TrialPruned when the trial was pruned
    return float(evaluator.state.metrics["val_acc"])


def search(
    objective: Callable[[optuna.Trial, int], float], trials: int, epochs: int, warmup_steps: int
) -> dict[str, Any]:
    pruner = optuna.pruners.MedianPruner(n_startup_trials=STARTUP_TRIALS, n_warmup_steps=warmup_steps)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0), pruner=pruner)
    start = time.perf_counter()
    study.optimize(lambda t: objective(t, epochs), n_trials=trials)
    seconds = time.perf_counter() - start
    states = [t.state for t in study.trials]
    return {
        "seconds": seconds,
        "best_acc": 100 * study.best_value,
        "pruned": states.count(optuna.trial.TrialState.PRUNED),
        "best_params": study.best_params,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    steps_per_epoch = len(make_loaders(0)[0])
    runs: dict[str, dict[str, Any]] = {}
    runs["(a) no pruning"] = search(objective_plain, args.trials, args.epochs, 0)
    try:
        import optuna_integration  # noqa: F401
    except ImportError:
        print("(b) skipped: optuna-integration is not installed")
    else:
        # PyTorchIgnitePruningHandler reports the epoch number (1, 2, ...): pruning from the first epoch's end on
        runs["(b) PyTorchIgnitePruningHandler"] = search(objective_optuna_handler, args.trials, args.epochs, 1)
    # optimizer steps: pruning from the first epoch's end on, as in (b)
    runs["(c) ignite-speed, validation 2x/epoch"] = search(
        objective_ignite_speed, args.trials, args.epochs, steps_per_epoch
    )
    print(
        f"{args.trials} trials of up to {args.epochs} epochs, TPE(seed=0) + MedianPruner(n_startup_trials="
        f"{STARTUP_TRIALS}), torch threads 1"
    )
    base = runs["(a) no pruning"]["seconds"]
    for name, r in runs.items():
        print(
            f"{name:40s} {r['seconds']:7.1f} s ({r['seconds'] / base:5.2f}x)  best val acc {r['best_acc']:.2f} %  "
            f"pruned {r['pruned']:2d}/{args.trials}"
        )


if __name__ == "__main__":
    main()
