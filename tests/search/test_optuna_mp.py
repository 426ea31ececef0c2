"""An Optuna trial trained by 2 real gloo processes (``idist.Parallel``): the study lives in a journal file that
the launcher created, only rank 0 reports, and both ranks stop at the batch of the prune. An in-memory study is
refused on both ranks (its copies in the spawned processes would never reach the launcher's study). The job runs
in a subprocess bounded by a timeout."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

optuna = pytest.importorskip("optuna", reason="Optuna is an optional extra (tox -e optuna)")

import ignite.distributed as idist  # noqa: E402
from ignite.engine import Engine, Events  # noqa: E402

from ignite_speed.handlers import LoopLimits, StopController, ValidationSchedule  # noqa: E402
from ignite_speed.search.optuna_trial import OptunaPruning  # noqa: E402
from tests.helpers import run_on_two_gloo_ranks, run_rank_job  # noqa: E402

pytestmark = pytest.mark.slow  # 2 gloo processes
BATCHES = 4


def _train(trial: Any) -> dict[str, Any]:
    rank = idist.get_rank()
    torch.manual_seed(0)
    model = idist.auto_model(torch.nn.Linear(1, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def step(engine: Engine, batch: float) -> float:
        opt.zero_grad()
        x = torch.full((2, 1), float(batch + rank))
        torch.nn.functional.mse_loss(model(x), 2 * x).backward()  # DDP all-reduce: a lone stop would hang here
        opt.step()
        return 0.0

    trainer, evaluator = Engine(step), Engine(lambda e, b: None)
    runs: list[int] = []

    @evaluator.on(Events.COMPLETED)
    def score(e: Engine) -> None:
        runs.append(trainer.state.iteration)
        e.state.metrics["val_acc"] = round(0.5 + len(runs) / 10 + rank, 6)  # rank 1's value is never reported

    LoopLimits(max_epochs=5).attach(trainer)
    ValidationSchedule(evaluator, [0], val_check_interval=2, num_sanity_val_steps=0).attach(trainer)
    OptunaPruning(trial, "val_acc").attach(trainer)
    try:
        trainer.run(list(range(BATCHES)))
    except ValueError as exc:
        return {"error": str(exc)}
    controller = StopController.of(trainer)
    assert controller is not None
    return {
        "iteration": trainer.state.iteration,
        "reason": controller.stop_reason.value,
        "message": controller.stop_message,
    }


def job_rank(local_rank: int, out_dir: str, journal_trial: Any, memory_trial: Any) -> None:
    results = {"journal": _train(journal_trial), "memory": _train(memory_trial)}
    with open(os.path.join(out_dir, f"optuna_{idist.get_rank()}.json"), "w") as f:
        json.dump(results, f)


def main(job: str, out_dir: str, port: int) -> None:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(os.path.join(out_dir, "j.log")))
    study = optuna.create_study(
        study_name="mp", storage=storage, direction="maximize", pruner=optuna.pruners.ThresholdPruner(upper=0.75)
    )
    memory = optuna.create_study(direction="maximize")
    run_on_two_gloo_ranks(job_rank, port, out_dir, study.ask(), memory.ask())
    with open(os.path.join(out_dir, "study.json"), "w") as f:
        json.dump({str(k): v for k, v in study.trials[0].intermediate_values.items()}, f)


@pytest.fixture(scope="module")
def ran(tmp_path_factory: Any) -> tuple[Any, list[dict[str, Any]]]:
    out = tmp_path_factory.mktemp("optuna_mp")
    return out, run_rank_job(os.path.abspath(__file__), "optuna", out, timeout=120)


def test_a_journal_study_gets_rank_0s_reports_and_both_ranks_stop_at_the_prune(ran):
    tmp_path, (r0, r1) = ran
    assert (
        r0["journal"]
        == r1["journal"]
        == {"iteration": 6, "reason": "pruned", "message": "pruned at steps 6: val_acc=0.8"}
    )
    with open(tmp_path / "study.json") as f:
        assert json.load(f) == {"2": 0.6, "4": 0.7, "6": 0.8}  # in the launcher's study: rank 0's values


def test_an_in_memory_study_is_refused_on_every_rank(ran):
    r0, r1 = ran[1]
    for r in (r0, r1):
        assert "in-memory storage, but training runs in 2 processes" in r["memory"]["error"]


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
