"""``speedups.advise()``: induced bottlenecks are named first, with shares close to the sleeps, and the
advised switch, applied, saves at least half of what it predicts."""

from __future__ import annotations

import dataclasses
import gc
import time

import pytest
import torch

from ignite_speed.report import RunProfile, ValidationPoint
from ignite_speed.report.advice import Advice, RunFacts, advise
from tests.report.timed_runs import TimedRun


@pytest.fixture(autouse=True)
def _collect_workers():
    """A loader's persistent worker processes are shut down when it is collected: here, not inside the next
    test's timed run (engines sit in reference cycles)."""
    yield
    gc.collect()


TOLERANCE = 0.05  # absolute, on a share: a loaded 2-core machine oversleeps, and Ignite runs between the sleeps


def first_finding(speedups, part):
    advice = speedups.advise()
    assert advice.findings, speedups.report().profile
    assert advice[0].part == part, str(advice)
    return advice[0]


def assert_saves_half(predicted, before, after):
    assert before - after >= 0.5 * predicted, (predicted, before, after)


def test_a_data_bound_run_is_told_to_read_in_workers():
    run = TimedRun(data=0.04, step=0.01, batches=10)
    speedups, before = run.run(max_epochs=2, profile=True)
    finding = first_finding(speedups, "data")
    assert finding.share == pytest.approx(20 * 0.04 / before, abs=TOLERANCE)
    assert finding.setting["num_workers"] >= 1 and finding.setting["persistent_workers"] is True
    assert finding.switch.startswith("DataLoader(num_workers=")
    assert "batched_fetch could not read this loader a batch at a time: its dataset is a SleepyData" in finding.why
    faster = dataclasses.replace(run, workers=finding.setting["num_workers"])
    _, after = faster.run(max_epochs=2, profile=True)
    assert_saves_half(finding.saving, before, after)


def test_a_validation_heavy_run_is_told_to_validate_less_often():
    run = TimedRun(step=0.01, val_batch=0.04, batches=8, val_batches=6)
    flags = {"max_epochs": 1, "val_check_interval": 0.5, "num_sanity_val_steps": 0}
    speedups, before = run.run(**flags)  # (the coarse profile is enough)
    finding = first_finding(speedups, "validation")
    assert finding.share == pytest.approx(2 * 6 * 0.04 / before, abs=TOLERANCE)
    assert finding.setting == {"val_check_interval": 1.0}
    assert finding.saving == pytest.approx(0.5 * speedups.report().profile.parts["validation"])
    assert "val_time_fraction" in finding.why
    _, after = run.run(**{**flags, **finding.setting})
    assert_saves_half(finding.saving, before, after)


def test_slow_checkpoint_saves_are_named():
    run = TimedRun(step=0.01, save=0.05, save_every=2, batches=8)
    speedups, before = run.run(max_epochs=1)
    finding = first_finding(speedups, "checkpoint")
    assert finding.share == pytest.approx(4 * 0.05 / before, abs=TOLERANCE)
    assert finding.setting == {"checkpoint_every": 2}
    _, after = dataclasses.replace(run, save_every=4).run(max_epochs=1)
    assert_saves_half(finding.saving, before, after)


def test_a_costly_sanity_check_is_named():
    run = TimedRun(step=0.005, val_batch=0.05, batches=6, val_batches=4)
    speedups, before = run.run(max_epochs=1, num_sanity_val_steps=2, limit_val_batches=2)
    advice = speedups.advise()
    assert advice[0].part == "sanity_check" and advice[0].setting == {"num_sanity_val_steps": 0}, str(advice)
    assert advice[0].share == pytest.approx(2 * 0.05 / before, abs=TOLERANCE)


def test_nothing_worth_changing_prints_nothing():
    run = TimedRun(step=0.01, batches=6)
    trainer, speedups = run.engines(max_epochs=1, profile=True)
    trainer.run([torch.tensor([float(i)]) for i in range(6)])  # in memory: no wait for data
    advice = speedups.advise()
    assert len(advice) == 0 and str(advice) == ""


def test_advice_prints_ranked_with_the_note_of_an_unsplit_profile():
    run = TimedRun(step=0.005, val_batch=0.04, save=0.04, save_every=3, batches=6, val_batches=2)
    speedups, _ = run.run(max_epochs=1, val_check_interval=0.5, num_sanity_val_steps=0)
    advice = speedups.advise()
    assert [f.part for f in advice] == ["validation", "checkpoint"]
    assert advice[0].saving >= advice[1].saving
    text = str(advice)
    assert text.startswith("Where to save time") and "1. validation: " in text and "2. checkpoint saves: " in text
    assert text.endswith("(training was not split: attach with profile=True to see its data, step and handler time)")


# ---------------------------------------------------------------------------------------------- facts alone
def a_report(**changes):
    speedups, _ = TimedRun(step=0.0, batches=2).run(max_epochs=1)
    return dataclasses.replace(speedups.report(), **changes)


def test_fp32_on_a_gpu_with_bf16():
    profile = RunProfile(wall=10.0, parts={"data": 0.5, "step": 8.0, "app_handlers": 0.0,
                                           "ignite_speed_handlers": 0.1, "other": 1.4}, fine=True, batches=100)
    report = a_report(profile=profile)
    assert advise(report, RunFacts(on_gpu=False)).findings == ()
    advice = advise(report, RunFacts(on_gpu=True, bf16=True))
    assert advice[0].part == "step" and advice[0].setting == {"precision": "bf16-mixed"}
    assert advice[0].saving == pytest.approx(0.3 * 8.0) and advice[0].share == pytest.approx(0.8)
    assert advise(report, RunFacts(on_gpu=True, bf16=True, precision="bf16-mixed")).findings == ()


def test_early_stopping_that_never_fired():
    values = [0.9, 0.5, 0.6, 0.7, 0.65, 0.8, 0.7, 0.75]
    points = tuple(ValidationPoint(i + 1, i, i + 1, i + 1, float(i + 1), 0.0, v) for i, v in enumerate(values))
    profile = RunProfile(wall=8.0, parts={"training": 8.0}, batches=8)
    report = a_report(profile=profile, validations=points, best_at=points[1], best=0.5, monitor="val_loss",
                      mode="min", seconds=8.0, stop_reason="max_epochs")
    advice = advise(report, RunFacts(early_stopping=None))
    finding = advice[0]
    assert finding.part == "early_stopping" and finding.setting["early_stopping"]["patience"] == 3
    assert finding.saving == pytest.approx(3.0)  # stopped at run 5 (5 s) instead of 8 s
    assert "patience=3 (now 8)" in advise(report, RunFacts(early_stopping=8))[0].switch
    assert advise(dataclasses.replace(report, stop_reason="early_stopping"), RunFacts()).findings == ()


def test_advice_without_a_profile_is_empty():
    assert advise(a_report(profile=None)) == Advice()


def test_the_timed_runs_sleep_what_they_say():
    started = time.perf_counter()
    TimedRun(step=0.02, batches=3).run(max_epochs=1)
    assert time.perf_counter() - started >= 0.06


def test_no_workers_for_a_wait_shorter_than_handing_a_batch_over():
    """A batch read in memory in 0.1 ms comes faster in the process than from a worker (about 1 ms)."""
    profile = RunProfile(wall=1.0, parts={"data": 0.2, "step": 0.7, "app_handlers": 0.0, "ignite_speed_handlers": 0.05,
                                          "other": 0.05}, fine=True, batches=2000)
    assert advise(a_report(profile=profile), RunFacts(num_workers=0, cpus=4)).findings == ()
    slow = dataclasses.replace(profile, batches=20)  # 10 ms a batch: workers pay
    assert advise(a_report(profile=slow), RunFacts(num_workers=0, cpus=4))[0].setting["num_workers"] == 1
