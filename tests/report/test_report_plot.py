"""``Speedups.report()`` (the run's record as plain data) and ``Speedups.plot()`` (its picture).

The engines advance a clock of the test's own (the training clock's ``time_source``): a training batch
takes 0.25 s and a validation batch 0.125 s, so every time in the report is exact.
"""

from __future__ import annotations

import json
import sys

import pytest
from ignite.engine import Events

from ignite_speed import attach_speedups
from ignite_speed.report import EpochTime, RunReport, ValidationPoint, format_seconds, run_report
from tests.handlers.test_time_budget import ManualClock, clocked_engines
from tests.helpers import loader

VAL_LOSS = [0.9, 0.5, 0.6, 0.4, 0.45, 0.42]
ES = {"monitor": "val_loss", "patience": 3, "stopping_threshold": 0.05, "divergence_threshold": 10.0}


def clocked_speedups(**flags):
    clock = ManualClock()
    trainer, evaluator = clocked_engines(clock)
    losses = iter(VAL_LOSS)
    evaluator.add_event_handler(
        Events.EPOCH_COMPLETED, lambda e: e.state.metrics.update(val_loss=next(losses), note="text")
    )
    speedups = attach_speedups(trainer, evaluator, val_data=loader(2), **flags)
    speedups.clock.time_source = clock
    return trainer, speedups


def fit_run():
    """4 batches (1 s) and 2 validation runs (0.5 s) per epoch; 5 s to plan with: 3 epochs, stopped at 4.5 s."""
    trainer, speedups = clocked_speedups(
        max_epochs=10, max_time=6, max_time_mode="fit", max_time_reserve=1, val_check_interval=0.5, early_stopping=ES
    )
    trainer.run(loader(4))
    return speedups


def test_report_content():
    speedups = fit_run()
    points = tuple(
        ValidationPoint(i + 1, i // 2, 2 * (i + 1), 2 * (i + 1), 0.75 * (i + 1), 0.25, v)
        for i, v in enumerate(VAL_LOSS)
    )
    assert speedups.report() == RunReport(
        stop_reason="max_time",
        stop_message="max_time=0:00:06 less max_time_reserve=0:00:01: the next epoch (about 1.50 s with validation) "
        "would not fit in the 0.50 s left",
        epochs=3,
        steps=12,
        batches=12,
        val_runs=6,
        seconds=4.5,
        train_seconds=3.0,
        val_seconds=1.5,
        sanity_seconds=0.25,
        monitor="val_loss",
        mode="min",
        best=0.4,
        best_at=points[3],
        stopping_threshold=0.05,
        divergence_threshold=10.0,
        max_time=6.0,
        max_time_reserve=1.0,
        max_time_mode="fit",
        validations=points,
        epoch_times=tuple(EpochTime(e, 1.5, 0.5, 2, True) for e in range(3)),
    )
    assert points[3] == ValidationPoint(run=4, epoch=1, step=8, batches=8, time=3.0, seconds=0.25, value=0.4)


def test_report_is_plain_data():
    data = speedups_dict = fit_run().report().to_dict()
    assert json.loads(json.dumps(data)) == speedups_dict
    assert data["best_at"] == {
        "run": 4,
        "epoch": 1,
        "step": 8,
        "batches": 8,
        "time": 3.0,
        "seconds": 0.25,
        "value": 0.4,
    }
    assert data["validations"][0] == {
        "run": 1,
        "epoch": 0,
        "step": 2,
        "batches": 2,
        "time": 0.75,
        "seconds": 0.25,
        "value": 0.9,
    }
    assert data["epoch_times"][2] == {"epoch": 2, "seconds": 1.5, "val_seconds": 0.5, "val_runs": 2, "complete": True}


def test_report_of_another_metric_and_without_early_stopping():
    trainer, speedups = clocked_speedups(max_epochs=2, val_check_interval=0.5, num_sanity_val_steps=0)
    trainer.run(loader(4))
    plain = speedups.report()
    assert (plain.monitor, plain.best, plain.best_at, plain.max_time, plain.epoch_times) == (None, None, None, None, ())
    assert [v.value for v in plain.validations] == [None] * 4
    assert (plain.seconds, plain.train_seconds, plain.val_seconds, plain.sanity_seconds) == (3.0, 2.0, 1.0, 0.0)
    best = speedups.report("val_loss", "max")
    assert (best.best, best.best_at.run, best.mode, best.stopping_threshold) == (0.9, 1, "max", None)
    assert run_report(speedups.loop, "val_loss") == speedups.report("val_loss")  # for the handlers alone
    with pytest.raises(ValueError, match=r"report\(mode='up'\): accepted: 'min' or 'max'"):
        speedups.report("val_loss", "up")


def test_format_seconds():
    assert [format_seconds(s) for s in (0.0, 0.5, 9.994, 10, 90.4, 3725)] == [
        "0.00 s",
        "0.50 s",
        "9.99 s",
        "0:00:10",
        "0:01:30",
        "1:02:05",
    ]


# ---------------------------------------------------------------------------------------------- plot
def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    speedups = fit_run()
    for x in ("step", "time"):
        path = tmp_path / f"run_{x}.png"
        assert speedups.plot(path, x=x) == path
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    with pytest.raises(ValueError, match=r"plot\(x='epoch'\): accepted: 'step' or 'time'"):
        speedups.plot(tmp_path / "bad.png", x="epoch")
    trainer, plain = clocked_speedups(max_epochs=1, num_sanity_val_steps=0)
    trainer.run(loader(4))
    with pytest.raises(ValueError, match="plot\\(\\) needs a monitored metric and early stopping is off"):
        plain.plot(tmp_path / "none.png")
    assert plain.plot(tmp_path / "loss.png", monitor="val_loss").exists()


def test_plot_without_matplotlib_says_how_to_install_it(tmp_path, monkeypatch):
    speedups = fit_run()
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(
        ImportError,
        match=r"plotting needs matplotlib, which is not installed: pip install "
        r"matplotlib \(or pip install 'ignite-speed\[plot\]'\)",
    ):
        speedups.plot(tmp_path / "run.png")
    assert not (tmp_path / "run.png").exists()
