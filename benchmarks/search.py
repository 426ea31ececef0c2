"""A hyperparameter search on the demo's model and data (scikit-learn's digits): how much pruning saves.

``python benchmarks/search.py [--trials 20] [--epochs 10] [--seeds 1]`` runs three Optuna studies of ``--trials``
trials each, with the same seeded TPE sampler and a median pruner, and prints the time of each search, the best
validation accuracy it found, and whether the goals hold:

(a) no pruning: every trial trains ``--epochs`` epochs and validates at each epoch end;
(b) Optuna's ``PyTorchIgnitePruningHandler`` (``optuna-integration``, skipped when it is not installed): validation
    and a report at each epoch end, the trial pruned by the ``TrialPruned`` it raises;
(c) ignite-speed: ``attach_speedups(..., val_check_interval=0.5, pruning={"trial": trial, "monitor": "val_acc"})``,
    validation and a report twice per epoch, in optimizer steps.

Goals: (c)'s best validation accuracy within 0.5 points of (a)'s, in at most half of (a)'s time and in less time
than (b). ``--seeds n`` repeats the three searches with ``TPESampler(seed=0 ... n-1)`` (the same seeds for all
three, one seed's three searches back to back, so that a change of the machine's load hits all three) and judges
the goals on the totals and the mean best accuracy. Times are wall and CPU seconds of the process: with one torch
thread and no loader workers the CPU time is what the search costs, whatever else the machine runs (the wall
times of a loaded machine are not: at load 13, seed 0's (c) took 0.21 of (a)'s wall time, 0.40 on an idle one).

The pruner, the same for (b) and (c): ``MedianPruner(n_startup_trials=5, n_warmup_steps=<1 epoch>)``, Optuna's
default pruner with a warm-up of one epoch, expressed in each search's unit: (b) reports the epoch number
(``n_warmup_steps=1``), (c) optimizer steps (``n_warmup_steps=34``, the steps of one epoch), so both judge a trial
first at the end of its first epoch, and (c) at every half epoch after that.

Why seed 0's (c) misses (a)'s best (97.78 % against 97.22 %), and (b) does too: it is the pruner, not the
report. (a)'s best trial (number 16, lr 0.018, width 242) is proposed by TPE from the 16 complete trials before
it; in (b) and (c), TPE learns from pruned trials from trial 5 on and proposes other trials from trial 11 on
(trials 0-9 are TPE's random start-up, the same in all three). (a)'s runner-up, trial 7 (lr 0.06, 97.50 % at
the end), is one of those random trials: a high learning rate that pays off once the decay lowers it. At the end
of epoch 2 its best value so far, 0.892 (0.886 in (b)), is below the median of trials 0-4 there, 0.903, and
both (b) and (c) prune it at that same point (it reaches 0.964 at epoch 4); (c)'s extra report at epoch 1.5
(0.892 against a median of 0.872) let it through once more. Had it survived, (c)'s best would be within 0.5
points. Only a longer warm-up or more start-up trials keep it, and both spend the time pruning saves: measured on
an idle machine, seed 0, CPU time of (c) against (a):

=============================================  ===========  ==================
pruner                                         (c) / (a)    (c) best - (a) best
=============================================  ===========  ==================
warm-up 1 epoch, 5 start-up trials (this one)  0.41         -0.56
warm-up 3 epochs                               0.49         -0.56
warm-up 4 epochs                               0.55          0.00
10 start-up trials (TPE's random start-up)     0.53          0.00
10 start-up trials, warm-up 0                  0.53, 0.57    0.00
=============================================  ===========  ==================

(one run each, a variant of this script; the last row twice: over seeds 0-5 it kept (a)'s best on every seed,
in 0.62-0.86 of (a)'s CPU time per seed, 0.73 in total, and 0.80-0.94 of (b)'s: the safe choice, not a half).
Over seeds 0-5 (``--seeds 6``, two runs on a machine shared with other jobs) this pruner found (a)'s best on 4
seeds, 0.28 points below it on seed 3 and 0.56 below on seed 0 (mean -0.14), in 0.40-0.73 of (a)'s CPU time per
seed and 0.55-0.57 of it in total, less than (b)'s in total
(per seed, (c) took as long as (b) or 0.1 s more twice, where both pruned about the same trials: (c) pays for its
extra validation runs). So a single seed's verdict on "half the time, within 0.5 points" depends on the seed:
seed 0 holds the time goals and misses the accuracy one, the other seeds mostly the other way round. This
benchmark keeps Optuna's pruner with the one-epoch warm-up (the setting a user starts from, the same progress in
(b) and (c)) and reports what it gives, rather than a setting tuned to one seed.

The search space: the learning rate (1e-4 to 0.3, log), the hidden width (8 to 256, log) and the per-epoch decay.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import statistics
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

STARTUP_TRIALS = 5  # the median pruner's: complete trials before it prunes (Optuna's default)
WARMUP_EPOCHS = 1  # ... and the epochs before it judges a trial, in each search's unit (the docstring says why)
ACC_GOAL_POINTS = 0.5  # (c)'s best within this many points of (a)'s
TIME_GOAL_RATIO = 0.5  # ... in at most this share of (a)'s time


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
    objective: Callable[[optuna.Trial, int], float], trials: int, epochs: int, warmup_steps: int, seed: int
) -> dict[str, Any]:
    pruner = optuna.pruners.MedianPruner(n_startup_trials=STARTUP_TRIALS, n_warmup_steps=warmup_steps)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruner)
    start, cpu_start = time.perf_counter(), time.process_time()
    study.optimize(lambda t: objective(t, epochs), n_trials=trials)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    states = [t.state for t in study.trials]
    return {
        "seconds": seconds,
        "cpu": cpu,
        "best_acc": 100 * study.best_value,
        "best_trial": study.best_trial.number,
        "pruned": states.count(optuna.trial.TrialState.PRUNED),
    }


def searches(trials: int, epochs: int, seed: int) -> dict[str, dict[str, Any]]:
    """The three searches of one sampler seed, back to back."""
    steps_per_epoch = len(make_loaders(0)[0])
    runs: dict[str, dict[str, Any]] = {"(a) no pruning": search(objective_plain, trials, epochs, 0, seed)}
    try:
        import optuna_integration  # noqa: F401
    except ImportError:
        pass
    else:
        # PyTorchIgnitePruningHandler reports the epoch number (1, 2, ...)
        runs["(b) PyTorchIgnitePruningHandler"] = search(objective_optuna_handler, trials, epochs, WARMUP_EPOCHS, seed)
    runs["(c) ignite-speed, validation 2x/epoch"] = search(
        objective_ignite_speed,
        trials,
        epochs,
        WARMUP_EPOCHS * steps_per_epoch,
        seed,  # optimizer steps
    )
    return runs


def print_runs(title: str, runs: dict[str, dict[str, Any]], trials: int) -> None:
    base = runs["(a) no pruning"]
    print(title)
    for name, r in runs.items():
        print(
            f"  {name:38s} {r['seconds']:7.1f} s wall ({r['seconds'] / base['seconds']:4.2f}x) "
            f"{r['cpu']:7.1f} s CPU ({r['cpu'] / base['cpu']:4.2f}x)  best val acc {r['best_acc']:.2f} % "
            f"(trial {r['best_trial']})  pruned {r['pruned']}/{trials}",
            flush=True,
        )


def total(per_seed: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Times summed over the seeds, the mean best accuracy, the trials pruned summed."""
    return {
        name: {
            "seconds": sum(runs[name]["seconds"] for runs in per_seed),
            "cpu": sum(runs[name]["cpu"] for runs in per_seed),
            "best_acc": statistics.mean(runs[name]["best_acc"] for runs in per_seed),
            "best_trial": "-",
            "pruned": sum(runs[name]["pruned"] for runs in per_seed),
        }
        for name in per_seed[0]
    }


def print_goals(runs: dict[str, dict[str, Any]]) -> bool:
    """Print whether each goal holds for (c); True when all do."""
    a, c = runs["(a) no pruning"], runs["(c) ignite-speed, validation 2x/epoch"]
    b = runs.get("(b) PyTorchIgnitePruningHandler")
    gap = a["best_acc"] - c["best_acc"]
    goals = [(f"best val acc within {ACC_GOAL_POINTS} points of (a)'s: {-gap:+.2f}", gap <= ACC_GOAL_POINTS + 1e-9)]
    for unit, key in (("wall", "seconds"), ("CPU", "cpu")):
        ratio = c[key] / a[key]
        goals.append((f"at most {TIME_GOAL_RATIO} of (a)'s {unit} time: {ratio:.2f}", ratio <= TIME_GOAL_RATIO))
        if b is not None:
            goals.append((f"less {unit} time than (b): {c[key]:.1f} s against {b[key]:.1f} s", c[key] < b[key]))
    for text, holds in goals:
        print(f"  goal {'holds ' if holds else 'MISSED'}: (c) {text}")
    return all(holds for _, holds in goals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=1, help="run with TPESampler(seed=0 ... seeds-1)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("ignite").setLevel(logging.CRITICAL)  # (b)'s TrialPruned is logged as an Engine failure
    print(
        f"{args.trials} trials of up to {args.epochs} epochs, MedianPruner(n_startup_trials={STARTUP_TRIALS}, "
        f"warm-up {WARMUP_EPOCHS} epoch), torch threads 1"
        + (
            ""
            if importlib.util.find_spec("optuna_integration")
            else "; (b) skipped: optuna-integration is not installed"
        )
    )
    per_seed = []
    for seed in range(args.seeds):
        per_seed.append(searches(args.trials, args.epochs, seed))
        print_runs(f"TPESampler(seed={seed})", per_seed[-1], args.trials)
        if args.seeds == 1:
            print_goals(per_seed[-1])
    if args.seeds > 1:
        print_runs(
            f"seeds 0-{args.seeds - 1}: times and trials summed, best val acc the mean",
            total(per_seed),
            args.trials * args.seeds,
        )
        print_goals(total(per_seed))


if __name__ == "__main__":
    main()
