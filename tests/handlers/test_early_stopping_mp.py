"""Early stopping and the non-finite loss guard on 2 real gloo processes (``idist.Parallel``).

Each test runs this file as a script in a subprocess bounded by a timeout, so a rank that stops
alone (and leaves the other one waiting in a collective) fails the test instead of hanging it.
The models are DDP-wrapped and really trained, so a rank-divergent stop would block in backward.
Every rank writes ``OUT_DIR/<job>_<rank>.json``.
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import ignite.distributed as idist  # noqa: E402
from ignite.engine import Engine, Events  # noqa: E402

from ignite_speed.handlers import EarlyStopping, LoopLimits  # noqa: E402
from ignite_speed.handlers.nan_guard import NonFiniteLossGuard  # noqa: E402
from ignite_speed.loop import TrainingLoop  # noqa: E402
from ignite_speed.loop.stop import StopController  # noqa: E402
from tests.helpers import run_on_two_gloo_ranks, run_rank_job  # noqa: E402

pytestmark = pytest.mark.slow  # 2 gloo processes per job

JOB_TIMEOUT_S = 90
BATCHES = 4  # per rank per epoch (Lightning's [DDP] case)


# ---------------------------------------------------------------------------------------------- on the ranks


def _ddp_trainer(seed: int = 0) -> tuple[Engine, torch.nn.Module, list[torch.Tensor]]:
    torch.manual_seed(seed)
    model = idist.auto_model(torch.nn.Linear(1, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    rank = idist.get_rank()

    def step(engine: Engine, batch: float) -> float:
        x = torch.full((2, 1), float(batch + rank))
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), 2 * x)
        loss.backward()  # a DDP all-reduce: a rank that stopped alone would leave the other one here
        opt.step()
        return loss.item()

    return Engine(step), model, []


def _scenario(
    values_by_rank: dict[int, list[float]],
    *,
    val_every_iters: int | None = None,
    max_epochs: int = 10,
    minimums: dict[str, Any] | None = None,
    **es_kwargs: Any,
) -> dict[str, Any]:
    rank = idist.get_rank()
    values = values_by_rank[rank]
    trainer, model, weights = _ddp_trainer()
    evaluator = Engine(lambda e, b: None)
    checks: list[int] = []

    @evaluator.on(Events.COMPLETED)
    def log(e: Engine) -> None:
        e.state.metrics["val_loss"] = values[min(len(checks), len(values) - 1)]
        checks.append(trainer.state.iteration)
        weights.append(model.module.weight.detach().clone() if hasattr(model, "module") else model.weight.clone())

    def run_val(_: Engine) -> None:
        evaluator.run([0, 1])

    if val_every_iters:
        trainer.add_event_handler(Events.ITERATION_COMPLETED(every=val_every_iters), run_val)
    else:
        trainer.add_event_handler(Events.EPOCH_COMPLETED, run_val)
    if minimums:  # the trainer's stop controller applies them (LoopLimits gives them)
        LoopLimits(**minimums).attach(trainer)
    es = EarlyStopping(evaluator, monitor="val_loss", model=model, **es_kwargs).attach(trainer)
    error = None
    try:
        trainer.run(list(range(BATCHES)), max_epochs=max_epochs)
    except RuntimeError as exc:
        error = str(exc)
    controller = StopController.of(trainer)
    assert controller is not None
    final_weight = (model.module if hasattr(model, "module") else model).weight.detach().clone()
    return {
        "error": error,
        "iteration": trainer.state.iteration,
        "epoch": trainer.state.epoch,
        "val_at": checks,
        "reason": es.stopping_reason.name,
        "message": es.stopping_reason_message,
        "stopped_epoch": es.stopped_epoch,
        "wait_count": es.wait_count,
        "best_score": es.best_score,
        "stop_reason": controller.stop_reason.value,
        "stop_message": controller.stop_message,
        "restored_is_check": [bool(torch.equal(final_weight, w)) for w in weights],
        "final_weight": final_weight.flatten().tolist(),
    }


def _guard_scenario(nan_at: int) -> dict[str, Any]:
    rank = idist.get_rank()
    trainer, _, _ = _ddp_trainer()

    @trainer.on(Events.ITERATION_COMPLETED)
    def poison(engine: Engine) -> None:  # registered before the guard: rank 1's loss turns NaN at `nan_at`
        if rank == 1 and engine.state.iteration == nan_at:
            engine.state.output = math.nan

    NonFiniteLossGuard().attach(trainer)
    TrainingLoop.of(trainer).sync_every_n_batches = 2  # the ranks agree on stop requests every 2 batches
    trainer.run(list(range(BATCHES)), max_epochs=5)
    controller = StopController.of(trainer)
    assert controller is not None
    return {
        "iteration": trainer.state.iteration,
        "stop_reason": controller.stop_reason.value,
        "stop_message": controller.stop_message,
    }


def job_divergent(local_rank: int, out_dir: str) -> None:
    """All scenarios in one job (a 2-process job costs a few seconds to start)."""
    rank = idist.get_rank()
    inf = math.inf
    results = {
        # Lightning's [DDP] (case 63): rank 0 improves, rank 1 is constant, patience 2
        "ddp63": _scenario({0: [1.0, 0.9, 0.8, 0.7, 0.6, 0.5], 1: [1.0]}, patience=2),
        # a NaN on rank 1 only, at the 2nd check
        "nan_rank1": _scenario({0: [1.0, 0.9, 0.8, 0.7], 1: [1.0, math.nan, 1.0]}, patience=5),
        # different reasons at the same check: the lowest stopping rank (0, patience) speaks for all
        "mixed": _scenario({0: [1.0, 1.0], 1: [1.0, inf]}, patience=1),
        # mid-epoch checks: rank 0 diverges at the 3rd validation (iteration 6)
        "diverge_mid_epoch": _scenario(
            {0: [1.0, 2.0, 9.0], 1: [1.0, 0.5, 0.4, 0.3, 0.2, 0.1]},
            val_every_iters=2,
            divergence_threshold=5.0,
            patience=10,
        ),
        # strict: the monitor is missing on rank 1 only -> both ranks raise, no hang
        "missing_rank1": _scenario({0: [1.0]}, patience=2) if rank == 0 else _missing_on_this_rank(),
        # a stop deferred by min_epochs ends both ranks on the same iteration
        "min_epochs": _scenario({0: [1.0], 1: [1.0, 0.5, 0.4]}, patience=1, minimums={"min_epochs": 4}),
        # the non-finite training loss guard: NaN on rank 1 only, at iteration 5
        "guard": _guard_scenario(nan_at=5),
        # restore_best_weights on a DDP model: rank 0's best is its 2nd check, rank 1's its 3rd; the
        # snapshot follows rank 0 on both ranks, so the replicas stay identical after the restore
        "restore": _scenario(
            {0: [3.0, 1.0, 2.0, 2.0, 2.0], 1: [3.0, 2.0, 1.0, 2.0, 2.0]}, patience=3, restore_best_weights=True
        ),
        "epochs_unit": _scenario({0: [1.0], 1: [1.0]}, patience=2, patience_unit="epochs", val_every_iters=2),
    }
    with open(os.path.join(out_dir, f"divergent_{rank}.json"), "w") as f:
        json.dump(results, f)


def _missing_on_this_rank() -> dict[str, Any]:
    trainer, model, _ = _ddp_trainer()
    evaluator = Engine(lambda e, b: None)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: evaluator.run([0, 1]))
    EarlyStopping(evaluator, monitor="val_loss", patience=2).attach(trainer)
    try:
        trainer.run(list(range(BATCHES)), max_epochs=10)
    except RuntimeError as exc:
        return {"error": str(exc), "iteration": trainer.state.iteration}
    return {"error": None, "iteration": trainer.state.iteration}


JOBS = {"divergent": job_divergent}


def main(job: str, out_dir: str, port: int) -> None:
    run_on_two_gloo_ranks(JOBS[job], port, out_dir)


# ---------------------------------------------------------------------------------------------- the tests


def _run_job(job: str, tmp_path: Any) -> list[dict[str, Any]]:
    return run_rank_job(os.path.abspath(__file__), job, tmp_path, timeout=JOB_TIMEOUT_S)


@pytest.fixture(scope="module")
def divergent(tmp_path_factory: Any) -> list[dict[str, Any]]:
    return _run_job("divergent", tmp_path_factory.mktemp("es_mp_divergent"))


AGREED = ("error", "iteration", "epoch", "reason", "message", "stopped_epoch", "stop_reason", "stop_message")


def _agree(results: list[dict[str, Any]], name: str) -> dict[str, Any]:
    r0, r1 = results[0][name], results[1][name]
    for key in AGREED:
        assert r0.get(key) == r1.get(key), (name, key, r0.get(key), r1.get(key))
    return r0


def test_case63_any_rank_stops_all_and_ranks_agree_on_the_reason(divergent):
    r = _agree(divergent, "ddp63")
    assert (r["iteration"], r["stopped_epoch"], r["reason"]) == (12, 2, "PATIENCE_EXHAUSTED")  # global_step 12
    assert r["stop_reason"] == "early_stopping"
    assert r["message"].startswith("Monitored metric val_loss did not improve in the last 2 records. ")
    # the tallies stay rank-local (they follow each rank's own metric)
    assert (divergent[0]["ddp63"]["wait_count"], divergent[1]["ddp63"]["wait_count"]) == (0, 2)
    assert (divergent[0]["ddp63"]["best_score"], divergent[1]["ddp63"]["best_score"]) == (0.8, 1.0)


def test_nan_metric_on_one_rank_stops_both(divergent):
    r = _agree(divergent, "nan_rank1")
    assert (r["iteration"], r["stopped_epoch"], r["reason"]) == (8, 1, "NON_FINITE_METRIC")
    assert r["message"].startswith("Monitored metric val_loss = nan is not finite. ")


def test_ranks_with_different_reasons_take_the_lowest_stopping_rank(divergent):
    r = _agree(divergent, "mixed")
    assert (r["iteration"], r["reason"]) == (8, "PATIENCE_EXHAUSTED")


def test_mid_epoch_divergence_stops_both_on_the_same_iteration(divergent):
    r = _agree(divergent, "diverge_mid_epoch")
    assert (r["iteration"], r["val_at"], r["reason"], r["stopped_epoch"]) == (6, [2, 4, 6], "DIVERGENCE_THRESHOLD", 1)


def test_missing_monitor_on_one_rank_raises_on_both(divergent):
    r0, r1 = divergent[0]["missing_rank1"], divergent[1]["missing_rank1"]
    assert r0["iteration"] == r1["iteration"] == 4
    assert "on another rank" in r0["error"]
    assert "could not find the monitor 'val_loss' (strict=True)" in r1["error"]


def test_min_epochs_deferral_ends_both_ranks_together(divergent):
    r = _agree(divergent, "min_epochs")
    assert (r["iteration"], r["epoch"], r["stop_reason"]) == (16, 4, "early_stopping")


def test_non_finite_loss_on_one_rank_stops_both(divergent):
    r0, r1 = divergent[0]["guard"], divergent[1]["guard"]
    assert r0 == r1
    # seen at 5 on rank 1; the sync of the agreement at 6 carries it, read at the next agreement
    assert (r0["iteration"], r0["stop_reason"]) == (8, "non_finite_loss")
    assert "training loss is nan" in r0["stop_message"]


def test_restore_best_weights_of_a_ddp_model_is_rank_consistent(divergent):
    r = _agree(divergent, "restore")
    assert (r["iteration"], r["reason"]) == (20, "PATIENCE_EXHAUSTED")
    assert divergent[0]["restore"]["final_weight"] == divergent[1]["restore"]["final_weight"]
    # both ranks restored the weights of rank 0's best check (the 2nd), not rank 1's (the 3rd)
    assert divergent[0]["restore"]["restored_is_check"][:3] == [False, True, False]
    assert divergent[1]["restore"]["restored_is_check"][:3] == [False, True, False]


def test_patience_in_epochs_on_two_ranks(divergent):
    r = _agree(divergent, "epochs_unit")
    # checks every 2 iterations (2 per epoch); best at epoch 0; stop at the first check of epoch 2
    assert (r["iteration"], r["stopped_epoch"], r["reason"]) == (10, 2, "PATIENCE_EXHAUSTED")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
