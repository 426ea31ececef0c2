"""The projection of the full run at the end of a ``fast_dev_run``: within 15 % of the full run's wall
time on a sleep-timed run, and whether (and where) ``max_time`` stops it."""

from __future__ import annotations

import logging

import pytest

from ignite_speed.report import RunProfile
from ignite_speed.report.projection import FullRun, project
from tests.report.timed_runs import TimedRun

RUN = TimedRun(step=0.02, val_batch=0.02, batches=10, val_batches=3)
FLAGS = {"max_epochs": 2, "val_check_interval": 0.5, "num_sanity_val_steps": 2}


def test_fast_dev_run_projects_the_full_run(capsys):
    RUN.run(fast_dev_run=2, **FLAGS)  # (warm-up: the first run of a process pays for imports)
    capsys.readouterr()
    fast, _ = RUN.run(fast_dev_run=4, **FLAGS)
    told = capsys.readouterr().err  # (printed on standard error: seen without any logging set up)
    projection = fast.report().projection
    assert projection is not None and fast.report().to_dict()["projection"]["run"]["batches"] == 20
    run = projection.run
    assert (run.epochs, run.batches_per_epoch, run.batches, run.val_runs, run.val_batches, run.sanity_batches) == \
        (2, 10, 20, 4, 3, 2)
    assert projection.fits is None and "fast_dev_run projection of the full run: about" in told
    full, wall = RUN.run(**FLAGS)
    assert projection.seconds == pytest.approx(wall, rel=0.15), (str(projection), str(full.report().profile))
    assert projection.seconds == pytest.approx(projection.setup_seconds + projection.train_seconds
                                               + projection.val_seconds + projection.sanity_seconds)


def test_a_full_run_that_does_not_fit_in_max_time():
    fast, _ = RUN.run(fast_dev_run=3, max_time=0.5, max_time_mode="fit", **FLAGS)
    projection = fast.report().projection
    assert projection.fits is False
    assert set(projection.stops) == {"step", "epoch", "fit"}
    text = str(projection)
    assert "it does not fit in max_time (500 ms to train and validate)" in text
    assert "max_time_mode='fit' stops it after epoch 1 of 2, the last that fits" in text
    roomy, _ = RUN.run(fast_dev_run=3, max_time=60, **FLAGS)
    assert roomy.report().projection.fits is True and "it fits in max_time" in str(roomy.report().projection)


def test_no_projection_without_fast_dev_run_or_a_bound():
    full, _ = TimedRun(step=0.0, batches=2).run(max_epochs=1)
    assert full.report().projection is None
    unbounded, _ = TimedRun(step=0.0, batches=2).run(fast_dev_run=1, max_epochs=-1, max_time=60)
    assert unbounded.report().projection is None


def test_projection_arithmetic():
    profile = RunProfile(wall=1.0, parts={"training": 0.5, "validation": 0.2, "setup": 0.1, "sanity_check": 0.0,
                                          "checkpoint": 0.2}, batches=5, val_runs=1)
    run = FullRun(epochs=3, batches_per_epoch=100, batches=300, val_runs=6, val_batches=10, sanity_batches=2,
                  max_time=40.0, max_time_reserve=5.0, max_time_mode="fit")
    p = project(profile, val_batches_measured=5, run=run)  # 0.1 s per batch, 0.04 s per validation batch
    assert (p.batch_seconds, p.val_batch_seconds) == pytest.approx((0.1, 0.04))
    assert (p.train_seconds, p.val_seconds, p.sanity_seconds, p.setup_seconds) == pytest.approx((30.0, 2.4, 0.08, 0.1))
    assert p.fits is True
    tight = project(profile, 5, FullRun(3, 100, 300, 6, 10, 2, max_time=25.0))  # 10.8 s an epoch, 25 s to spend
    assert tight.fits is False
    assert tight.stops == {"step": "after about 231 of 300 batches (in epoch 3)",
                           "epoch": "at the end of epoch 3 of 3, past the budget",
                           "fit": "after epoch 2 of 3, the last that fits"}


def test_a_failing_projection_does_not_fail_the_run(monkeypatch, caplog):
    import ignite_speed.speedups as speedups_module

    def broken(*args):
        raise ValueError("no plan")

    monkeypatch.setattr(speedups_module, "full_run_plan", broken)
    with caplog.at_level(logging.WARNING, logger="ignite_speed"):
        fast, _ = TimedRun(step=0.0, batches=2).run(fast_dev_run=1, max_epochs=2)
    assert fast.progress.total_batches == 1 and fast.report().projection is None
    assert "failed: ValueError: no plan" in caplog.text
