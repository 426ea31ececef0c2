"""A job script for the Ray Tune tests (tests/search/test_ray_tune.py): Ray on the local machine, run in a
subprocess bounded by the test's timeout. ``python tests/search/_ray_job.py OUT_DIR`` runs two searches and writes
``OUT_DIR/result.json``:

* ``asha``: 3 trials, one at a time (so ASHA's decisions do not depend on timing), best first: ``val_acc`` of the
  k-th validation run is ``quality * k``; the trials that ASHA stops at a rung end with ``pruned``, the best one,
  stopped by ASHA at ``max_t`` (the trial's length, in steps) at its last report, with ``max_epochs``.
* ``pause``: two trials with the same seed; a scheduler pauses one of them after its 2nd report and Ray resumes it
  from the checkpoint of that report; its final weights must equal the other's (``torch.equal``).
* ``explore``: as ``pause``, but the scheduler also changes the paused trial's ``lr`` (PBT's explore step); the
  resumed trial must train on with the new ``lr``, and end with the weights of a never-paused trial whose own
  code sets that ``lr`` after the same batch.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import ray  # noqa: E402
from ignite.engine import Engine, Events  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from ignite_speed import attach_speedups, create_trainer  # noqa: E402

BATCHES, EPOCHS = 6, 3  # validation every 3 batches: 6 reports per trial


def train_fn(config: dict[str, Any]) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(BATCHES * 4, 4, generator=g)
    data = TensorDataset(x, x.sum(1, keepdim=True))
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=config.get("lr", 0.01), momentum=0.9)
    train = DataLoader(data, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(3))
    cfg = {
        "max_epochs": EPOCHS,
        "val_check_interval": 3,
        "num_sanity_val_steps": 0,
        "pruning": {"trial": "ray_tune", "monitor": "val_acc", "to_save": {"model": model, "optimizer": opt}},
    }
    trainer = create_trainer(model, opt, torch.nn.functional.mse_loss, cfg)
    evaluator = Engine(lambda e, b: None)
    runs: list[int] = []

    @evaluator.on(Events.COMPLETED)
    def score(e: Engine) -> None:
        runs.append(trainer.state.iteration)
        e.state.metrics["val_acc"] = round(config["quality"] * trainer.state.iteration, 6)

    lrs: dict[int, float] = {}  # iteration -> the lr it trained with, where it changed

    @trainer.on(Events.ITERATION_STARTED)
    def lr_of_batch(e: Engine) -> None:
        if e.state.iteration == config.get("switch_after", -1) + 1:  # the reference of ``explore``, by hand
            opt.param_groups[0]["lr"] = config["switch_lr"]
        lr = opt.param_groups[0]["lr"]
        if not lrs or list(lrs.values())[-1] != lr:
            lrs[e.state.iteration] = lr

    speedups = attach_speedups(trainer, evaluator, cfg, val_data=[0])
    trainer.run(train)
    name = config["name"]
    out = os.path.join(config["out_dir"], f"{name}.attempt{len(_attempts(config['out_dir'], name))}")
    torch.save({k: v.clone() for k, v in model.state_dict().items()}, out + ".pt")
    with open(out + ".json", "w") as fh:
        json.dump(
            {
                "reason": speedups.stop_reason.value,
                "message": speedups.stop_message,
                "iteration": trainer.state.iteration,
                "val_at": runs,
                "lrs": lrs,
                "config_changes": next(h for h in speedups.loop.handlers if h.name == "pruning").config_changes,
            },
            fh,
        )


def _attempts(out_dir: str, name: str) -> list[str]:
    return sorted(f for f in os.listdir(out_dir) if f.startswith(name + ".attempt") and f.endswith(".json"))


class PauseOnce(FIFOScheduler):
    """Pause the trial whose config says ``pause`` once, at its 2nd report (a PBT/HyperBand pause, on cue), and
    set its ``lr`` to the config's ``explore_lr`` where it has one (PBT's explore step)."""

    def __init__(self) -> None:
        super().__init__()
        self.paused: set[str] = set()

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        if trial.config.get("pause") and trial.trial_id not in self.paused and result["training_iteration"] == 2:
            self.paused.add(trial.trial_id)
            if "explore_lr" in trial.config:
                trial.set_config({**trial.config, "lr": trial.config["explore_lr"]})
            return TrialScheduler.PAUSE
        return TrialScheduler.CONTINUE


def _search(scheduler: Any, space: dict[str, Any], storage: str, name: str) -> Any:
    tuner = tune.Tuner(
        tune.with_resources(train_fn, {"cpu": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(scheduler=scheduler, max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=storage, name=name, verbose=0),
    )
    return tuner.fit()


def main(out_dir: str) -> None:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # (the test bounds the job with a timeout)
    storage = os.path.join(out_dir, "ray_results")
    asha_dir, pause_dir, explore_dir = (os.path.join(out_dir, name) for name in ("asha", "pause", "explore"))
    for folder in (asha_dir, pause_dir, explore_dir):
        os.makedirs(folder)
    asha = ASHAScheduler(
        time_attr="step", metric="val_acc", mode="max", max_t=BATCHES * EPOCHS, grace_period=6, reduction_factor=2
    )
    _search(
        asha,
        {
            "quality": tune.grid_search([1.0, 0.4, 0.1]),
            "out_dir": asha_dir,
            "name": tune.sample_from(lambda spec: f"q{spec.config.quality}"),
        },
        storage,
        "asha",
    )
    _search(
        PauseOnce(),
        {
            "pause": tune.grid_search([False, True]),
            "quality": 1.0,
            "out_dir": pause_dir,
            "name": tune.sample_from(lambda spec: f"pause{spec.config.pause}"),
        },
        storage,
        "pause",
    )
    _search(
        PauseOnce(),
        {
            "pause": tune.grid_search([False, True]),
            "quality": 1.0,
            "out_dir": explore_dir,
            "name": tune.sample_from(lambda spec: f"explore{spec.config.pause}"),
            # paused after its 2nd report (batch 6) with lr 0.005 (half; 0.05 diverges to inf); the reference sets it after batch 6 itself
            "explore_lr": 0.005,
            "switch_after": tune.sample_from(lambda spec: -1 if spec.config.pause else 6),
            "switch_lr": 0.005,
        },
        storage,
        "explore",
    )
    result: dict[str, Any] = {"asha": {}, "pause": {}, "explore": {}}
    for folder, key in ((asha_dir, "asha"), (pause_dir, "pause"), (explore_dir, "explore")):
        for f in sorted(os.listdir(folder)):
            if f.endswith(".json"):
                with open(os.path.join(folder, f)) as fh:
                    result[key][f[:-5]] = json.load(fh)
    for folder, name in ((pause_dir, "pause"), (explore_dir, "explore")):
        plain = torch.load(os.path.join(folder, f"{name}False.attempt0.pt"))
        resumed = [f for f in os.listdir(folder) if f.startswith(f"{name}True") and f.endswith(".pt")]
        last = torch.load(os.path.join(folder, sorted(resumed)[-1]))
        result[f"{name}_weights_equal"] = all(torch.equal(plain[k], last[k]) for k in plain)
    with open(os.path.join(out_dir, "result.json"), "w") as fh:
        json.dump(result, fh, indent=1)
    ray.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
