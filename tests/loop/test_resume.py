"""Exact resume after SIGKILL, and the finished-run guard, with Ignite's Checkpoint + DiskSaver.

Each case trains in a forked process that kills itself with SIGKILL at a chosen point, resumes from
the last checkpoint (written at epoch ends and every 5 iterations) in another process, and compares
the outcome with a run that was never interrupted: identical weights (``torch.equal``), iterations,
validation runs, stop reason and message.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal

import pytest
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver

from ignite_speed import StopReason, attach_speedups
from tests import _resume_job
from tests.helpers import loader, make_run

pytestmark = pytest.mark.slow  # each case trains, is killed and resumes in forked processes

_FORK = mp.get_context("fork")


def _process(target, *args, **kwargs) -> int:
    proc = _FORK.Process(target=target, args=args, kwargs=kwargs)
    proc.start()
    proc.join(60)
    if proc.is_alive():  # pragma: no cover - a hang fails the test
        proc.kill()
        pytest.fail("training process hung")
    return proc.exitcode


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    results = {}
    for scenario in _resume_job.SCENARIOS:
        d = tmp_path_factory.mktemp(f"ref_{scenario}")
        assert _process(_resume_job.run_job, scenario, str(d / "ckpt"), str(d / "out.pt")) == 0
        results[scenario] = torch.load(d / "out.pt", weights_only=True)
    return results


KILL_POINTS = [
    ("early_stop", ("iteration", 12)),  # mid-epoch, 2 batches after a checkpoint (decision pending in it)
    ("early_stop", ("iteration", 10)),  # right after an every-5 checkpoint
    ("early_stop", ("iteration", 7)),  # last batch of a limited epoch, before its epoch-end checkpoint
    ("early_stop", ("epoch", 2)),  # at an epoch boundary, after the epoch-end checkpoint
    ("early_stop", ("validation", 3)),  # right after a validation run (mid-decision)
    ("early_stop", ("iteration", 24)),  # early stopping pending under min_epochs
    ("early_stop", ("iteration", 28)),  # the stop point itself (the last batch, before the epoch-end checkpoint)
    ("max_steps", ("iteration", 9)),  # after an epoch the user ended early (partial epochs, accumulation)
    ("max_steps", ("iteration", 20)),  # mid-epoch after partial epochs, shortly before max_steps
    # create_trainer with accumulate_grad_batches=3 and a checkpoint every 2 batches: most of these land inside
    # an accumulation window (the gradients of its first batches are replayed), some at a window's end
    *[("accumulate", ("iteration", i)) for i in (3, 5, 8, 11, 13, 16, 19, 22, 25, 27, 31, 33)],
    *[("accumulate_scaled", ("iteration", i)) for i in (5, 13, 27)],
]


@pytest.mark.parametrize("scenario,kill", KILL_POINTS, ids=[f"{s}-{k[0]}{k[1]}" for s, k in KILL_POINTS])
def test_resume_after_sigkill_is_exact(tmp_path, reference, scenario, kill):
    ckpt, out = str(tmp_path / "ckpt"), str(tmp_path / "out.pt")
    assert _process(_resume_job.run_job, scenario, ckpt, out, kill=kill) == -signal.SIGKILL
    assert not os.path.exists(out)
    assert _process(_resume_job.run_job, scenario, ckpt, out, resume=True) == 0
    ref, got = reference[scenario], torch.load(out, weights_only=True)
    assert got["start"] > 0
    for name, value in ref["weights"].items():
        assert torch.equal(value, got["weights"][name]), name
    for key in ("iteration", "epoch", "reason", "message", "val_runs", "global_step", "epochs_done", "history"):
        assert got[key] == ref[key], key
    assert got["val_at"] == ref["val_at"][len(ref["val_at"]) - len(got["val_at"]) :]


def test_reference_outcomes(reference):
    es, ms, acc = reference["early_stop"], reference["max_steps"], reference["accumulate"]
    assert (es["reason"], es["iteration"], es["epochs_done"]) == ("early_stopping", 28, 4)
    assert ms["reason"] == "max_steps" and ms["global_step"] == 17
    assert (acc["reason"], acc["iteration"], acc["global_step"], acc["epochs_done"]) == ("early_stopping", 34, 13, 4)


def test_resume_twice_killed(tmp_path, reference):
    ckpt, out = str(tmp_path / "ckpt"), str(tmp_path / "out.pt")
    assert _process(_resume_job.run_job, "early_stop", ckpt, out, kill=("iteration", 8)) == -signal.SIGKILL
    assert (
        _process(_resume_job.run_job, "early_stop", ckpt, out, kill=("iteration", 18), resume=True) == -signal.SIGKILL
    )
    assert _process(_resume_job.run_job, "early_stop", ckpt, out, resume=True) == 0
    got, ref = torch.load(out, weights_only=True), reference["early_stop"]
    assert all(torch.equal(v, got["weights"][k]) for k, v in ref["weights"].items())
    assert got["iteration"] == ref["iteration"] and got["reason"] == ref["reason"]


# ---------------------------------------------------------------- the finished-run guard
def _finished(tmp_path, **cfg):
    """Train to the end, checkpointing at COMPLETED; return a fresh set-up with the checkpoint loaded."""

    def setup():
        run = make_run(metric_seq=[3.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0])
        sp = attach_speedups(run.trainer, run.evaluator, cfg, val_data=loader(2, 100.0))
        opt = torch.optim.SGD(run.model.parameters(), lr=0.01)
        return run, sp, {"trainer": run.trainer, "model": run.model, "optimizer": opt, "speedups": sp}

    run, sp, to_save = setup()
    run.trainer.add_event_handler(Events.COMPLETED, Checkpoint(to_save, DiskSaver(str(tmp_path), require_empty=False)))
    run.trainer.run(loader(6))
    (path,) = tmp_path.glob("*.pt")
    run2, sp2, to_load = setup()
    Checkpoint.load_objects(to_load=to_load, checkpoint=torch.load(path, weights_only=True))
    return run, sp, run2, sp2


@pytest.mark.parametrize(
    "cfg,reason,extend",
    [
        (dict(max_epochs=2), "max_epochs", dict(max_epochs=3)),
        (dict(max_steps=8), "max_steps", dict(max_steps=14)),
        (
            dict(max_epochs=10, early_stopping={"monitor": "val_loss", "patience": 1}),
            "early_stopping",
            dict(early_stopping={"monitor": "val_loss", "patience": 3}),
        ),
        (dict(max_epochs=10, max_time=0), "max_time", dict(max_time=3600, max_epochs=2)),
    ],
)
def test_finished_run_guard_and_extend(tmp_path, cfg, reason, extend):
    run, sp, run2, sp2 = _finished(tmp_path, **cfg)
    assert sp.stop_reason.value == reason == sp2.stop_reason.value
    before = run2.trainer.state.iteration
    with pytest.raises(RuntimeError, match=rf"already finished \({reason}: .*speedups.extend"):
        run2.trainer.run(loader(6))
    assert run2.total == 0 and run2.trainer.state.iteration == before
    sp2.extend(**extend)
    run2.trainer.run(loader(6))
    assert run2.total > 0 and sp2.progress.total_batches == before + run2.total
    assert sp2.stop_reason is not StopReason.NOT_STOPPED


def test_loaded_speedups_without_trainer_state_is_refused(tmp_path):
    run, sp, run2, sp2 = _finished(tmp_path, max_epochs=1)
    run3 = make_run()
    sp3 = attach_speedups(run3.trainer, run3.evaluator, dict(max_epochs=1))
    sp3.load_state_dict(sp.state_dict())
    with pytest.raises(ValueError, match="load the trainer's checkpoint too"):
        run3.trainer.run(loader(6))


def test_mismatched_trainer_and_speedups_states_are_refused():
    run, sp = make_run(), None
    sp = attach_speedups(run.trainer, None, dict(max_epochs=3))
    state = {}
    run.trainer.add_event_handler(Events.ITERATION_COMPLETED(once=4), lambda _: state.update(sp.state_dict()))
    run.trainer.run(loader(6))
    run2 = make_run()
    sp2 = attach_speedups(run2.trainer, None, dict(max_epochs=3))
    sp2.load_state_dict(state)
    run2.trainer.load_state_dict({"iteration": 9, "epoch_length": 6, "max_epochs": 3})
    with pytest.raises(ValueError, match=r"iteration=9.*total_batches=4"):
        run2.trainer.run(loader(6))
    with pytest.raises(ValueError, match="version"):
        sp2.load_state_dict({"version": 99})
    with pytest.raises(TypeError, match="state_dict"):
        sp2.load_state_dict([1, 2])


def test_plain_ignite_would_replay_the_interrupted_epoch():
    """Why ignite-speed positions the trainer itself: plain Ignite restarts an interrupted epoch at batch 0."""
    seen = []
    engine = Engine(lambda e, b: seen.append(int(b)))
    engine.load_state_dict({"iteration": 7, "epoch_length": 5, "max_epochs": 2})
    engine.run(list(range(5)))
    assert seen == [0, 1, 2]
