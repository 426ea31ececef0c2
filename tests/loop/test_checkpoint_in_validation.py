"""A checkpoint written during a validation run of the schedule resumes exactly.

Apps often save on the evaluator's ``COMPLETED`` (Ignite's examples save their best model there); with the
trainer and the speedups in ``to_save``, that file is also a point to resume from. It is written inside the
loop's decision for a batch (or, for a loader of unknown length, for its epoch's end), before the loop counts
the validation run and tells its handlers. A run resumed from it makes that decision again, validation
included, from the generator states the validation started with, and ends as the uninterrupted run did: same
weights, counters, validation runs, early-stopping state and stop reason. (Before, a file written at an
epoch's last validation resumed into a run that never ended.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver

from ignite_speed import attach_speedups
from tests.helpers import loader, mse_step, stream_loader

EPOCHS = 4
BATCHES = 8  # per epoch
ITERATION_GUARD = 3 * EPOCHS * BATCHES  # a resumed run that goes past this never ends


def _build(data: str) -> tuple[Engine, Engine, torch.nn.Module, torch.optim.Optimizer, object, object, list]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.Dropout(0.3), torch.nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    trainer = Engine(mse_step(model, opt))
    losses: list[float] = []

    def eval_step(engine: Engine, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        x, y = batch
        with torch.no_grad():  # noisy inputs: validation draws from the global generator
            losses.append(torch.nn.functional.mse_loss(model(x + 0.1 * torch.randn_like(x)), y).item())

    evaluator = Engine(eval_step)
    evaluator.add_event_handler(Events.STARTED, lambda _: losses.clear())
    evaluator.add_event_handler(Events.COMPLETED, lambda e: e.state.metrics.update(val_loss=sum(losses) / len(losses)))
    train = loader(BATCHES, shuffle=True, generator=torch.Generator().manual_seed(1)) if data == "sized" else None
    cfg = {
        "max_epochs": EPOCHS,
        "num_sanity_val_steps": 0,
        "early_stopping": {"monitor": "val_loss", "patience": 2, "min_delta": 1e9},  # stops after 3 runs
    }
    if data == "sized":
        cfg["val_check_interval"] = 0.5
    else:
        train = stream_loader(BATCHES)  # no length: validation when the epoch's data runs out
    speedups = attach_speedups(trainer, evaluator, cfg, val_data=loader(2, offset=0.5))
    runs: list[int] = []
    evaluator.add_event_handler(Events.COMPLETED, lambda _: runs.append(trainer.state.iteration))

    @trainer.on(Events.ITERATION_COMPLETED)
    def _guard(engine: Engine) -> None:
        if engine.state.iteration > ITERATION_GUARD:
            raise RuntimeError(f"the resumed run went on past iteration {ITERATION_GUARD}")

    return trainer, evaluator, model, opt, speedups, train, runs


def _outcome(trainer: Engine, model: torch.nn.Module, speedups: object) -> dict:
    state = speedups.state_dict()
    return {
        "weights": [p.detach().clone() for p in model.parameters()],
        "iteration": trainer.state.iteration,
        "progress": state["loop"]["state"]["progress"],
        "early_stopping": state["early_stopping"],
        "reason": speedups.stop_reason,
        "message": speedups.stop_message,
        "rng": torch.get_rng_state(),
    }


def _train_saving_in_validation(data: str, folder: Path) -> tuple[dict, list[int], list[Path]]:
    trainer, evaluator, model, opt, speedups, train, runs = _build(data)
    to_save = {"trainer": trainer, "model": model, "optimizer": opt, "speedups": speedups}
    saver = Checkpoint(
        to_save,
        DiskSaver(str(folder), require_empty=False),
        n_saved=None,
        global_step_transform=lambda *_: trainer.state.iteration,
    )
    evaluator.add_event_handler(Events.COMPLETED, saver)
    trainer.run(train)
    files = sorted(folder.glob("*.pt"), key=lambda f: int(f.stem.split("_")[-1]))
    return _outcome(trainer, model, speedups), runs, files


@pytest.mark.parametrize("data", ["sized", "unsized"])
def test_every_checkpoint_written_in_a_validation_run_resumes_to_the_same_end(data, tmp_path):
    reference, runs, files = _train_saving_in_validation(data, tmp_path)
    assert reference["reason"] == "early_stopping"  # the 3rd run's judgment stops the run
    assert len(files) == len(runs) == reference["progress"]["val_runs"] == 3
    for k, file in enumerate(files):
        trainer, evaluator, model, opt, speedups, train, resumed_runs = _build(data)
        to_load = {"trainer": trainer, "model": model, "optimizer": opt, "speedups": speedups}
        Checkpoint.load_objects(to_load=to_load, checkpoint=torch.load(file, weights_only=True))
        trainer.run(train)
        outcome = _outcome(trainer, model, speedups)
        assert resumed_runs == runs[k:], file.name  # the file's own validation run again, then the rest
        for key in ("iteration", "progress", "early_stopping", "reason", "message"):
            assert outcome[key] == reference[key], (file.name, key)
        assert all(torch.equal(a, b) for a, b in zip(outcome["weights"], reference["weights"])), file.name
        assert torch.equal(outcome["rng"], reference["rng"]), file.name
