"""``speedups.advise()``: induced bottlenecks are named first, with shares of what the sleeps put there, and
the advised switch, applied, saves at least half of what it predicts (with and without early stopping).

The runs "sleep" on a fake clock (:class:`~tests.report.timed_runs.FakeClock`) wherever the run stays in
one process: shares and savings are then exact, whatever the machine's load. Reading in worker processes
needs the real clock: that test's margin is in its docstring.
"""

from __future__ import annotations

import dataclasses
import inspect
import time

import pytest
import torch
from ignite.engine import Events
from torch.utils.data import DataLoader

from ignite_speed import SpeedConfig, create_trainer
from ignite_speed.report import RunProfile, ValidationPoint
from ignite_speed.report.advice import Advice, RunFacts, advise
from tests.report.timed_runs import FakeClock, TimedRun


def first_finding(speedups, part):
    advice = speedups.advise()
    assert advice.findings, speedups.report().profile
    assert advice[0].part == part, str(advice)
    return advice[0]


def assert_saves_half(predicted, before, after):
    assert predicted > 0 and before - after >= 0.5 * predicted, (predicted, before, after)


def faked(run: TimedRun) -> TimedRun:
    return dataclasses.replace(run, clock=FakeClock())


def test_a_data_bound_run_is_told_to_read_in_workers():
    """The finding on a fake clock (exact share); what the advised workers realise on the real clock, where
    they sleep in parallel. The prediction counts 0.2 s to start each worker (0.1 to 0.3 s measured on a
    loaded 2-core machine): about 0.75 s to save, 0.38 s needed, while the workers' 1.2 s of sleeps overlap
    the steps' 0.4 s; a start slower by 0.3 s a worker still leaves the realised saving above half."""
    run = TimedRun(data=0.04, step=0.01, batches=20)
    speedups, before = faked(run).run(max_epochs=2, profile=True)
    finding = first_finding(speedups, "data")
    assert finding.share == pytest.approx(40 * 0.04 / before)
    assert finding.setting["num_workers"] >= 1 and finding.setting["persistent_workers"] is True
    assert (
        finding.switch.startswith("DataLoader(num_workers=") and finding.where == "arguments of the training DataLoader"
    )
    assert "batched_fetch could not read this loader a batch at a time: its dataset is a SleepyData" in finding.why
    real, before = run.run(max_epochs=2, profile=True)
    finding = first_finding(real, "data")
    faster = dataclasses.replace(run, workers=finding.setting["num_workers"])
    trainer, _ = faster.engines(max_epochs=2, profile=True)
    loader = faster.train_loader()
    started = time.perf_counter()
    trainer.run(loader)
    after = time.perf_counter() - started
    assert_saves_half(finding.saving, before, after)
    loader._iterator._shutdown_workers()  # (now: a collected loader's persistent workers take seconds to go)


def test_a_validation_heavy_run_is_told_to_validate_less_often():
    run = faked(TimedRun(step=0.01, val_batch=0.04, batches=8, val_batches=6))
    flags = {"max_epochs": 1, "val_check_interval": 0.5, "num_sanity_val_steps": 0}
    speedups, before = run.run(**flags)  # (the coarse profile is enough)
    finding = first_finding(speedups, "validation")
    assert finding.share == pytest.approx(2 * 6 * 0.04 / before)
    assert finding.setting == {"val_check_interval": 1.0}
    assert finding.saving == pytest.approx(0.5 * speedups.report().profile.parts["validation"])
    assert "val_time_fraction" in finding.why and finding.where == "a flag of attach_speedups"
    _, after = run.run(**{**flags, **finding.setting})
    assert_saves_half(finding.saving, before, after)


# Early stopping on val_loss = |iteration - best|: the validation runs see the same curve at any schedule.
def early_stopped(best, patience, val_batches, val_batch=0.02, **sizes):
    run = faked(
        TimedRun(
            step=0.01,
            val_batch=val_batch,
            batches=10,
            val_batches=val_batches,
            metric=lambda iteration: abs(iteration - best),
            **sizes,
        )
    )
    flags = {
        "max_epochs": 30,
        "val_check_interval": 0.5,
        "num_sanity_val_steps": 0,
        "early_stopping": {"monitor": "val_loss", "patience": patience},
    }
    return run, flags


@pytest.mark.parametrize(
    "best, patience, val_batches, val_batch, switch",
    [
        (40, 3, 3, 0.02, {"limit_val_batches": 1}),  # keeping the schedule saves more than validating once an epoch
        (40, 3, 1, 0.06, {"val_check_interval": 1.0}),  # one batch: fewer runs still pay, the longer tail counted
    ],
)
def test_under_early_stopping_the_advice_counts_the_longer_patience(best, patience, val_batches, val_batch, switch):
    run, flags = early_stopped(best, patience, val_batches, val_batch)
    speedups, before = run.run(**flags)
    assert speedups.report().stop_reason == "early_stopping"
    finding = first_finding(speedups, "validation")
    assert finding.setting == switch, str(finding)
    after_run, after = run.run(**{**flags, **finding.setting})
    assert after_run.report().stop_reason == "early_stopping"
    assert_saves_half(finding.saving, before, after)
    if "val_check_interval" in switch:  # the model is exact here: the tail after the best run doubles
        assert before - after == pytest.approx(finding.saving)
        assert "patience counts validation runs" in finding.why


def test_no_validation_switch_that_would_train_longer():
    """Best at the 2nd validation run, patience 6: validating once an epoch instead of twice would train 3
    epochs more than it saves (the README quickstart's case)."""
    run, flags = early_stopped(10, 6, 1)
    speedups, before = run.run(**flags)
    assert "validation" not in [f.part for f in speedups.advise()], str(speedups.advise())
    _, after = run.run(**{**flags, "val_check_interval": 1.0})
    assert after > before  # (what the advice did not say)


def test_slow_checkpoint_saves_are_named():
    run = faked(TimedRun(step=0.01, save=0.05, save_every=2, batches=8))
    speedups, before = run.run(max_epochs=1)
    finding = first_finding(speedups, "checkpoint")
    assert finding.share == pytest.approx(4 * 0.05 / before)
    assert finding.setting == {"event": "ITERATION_COMPLETED", "every": 4}
    assert finding.where == (
        "the event filter the Checkpoint is attached with: "
        "trainer.add_event_handler(Events.ITERATION_COMPLETED(every=4), checkpoint)"
    )
    _, after = dataclasses.replace(run, save_every=finding.setting["every"]).run(max_epochs=1)
    assert_saves_half(finding.saving, before, after)


def test_a_costly_app_handler_is_named_with_its_share():
    run = faked(TimedRun(step=0.01, batches=20, handler=0.01))
    speedups, before = run.run(max_epochs=1, profile=True)
    finding = first_finding(speedups, "app_handlers")
    assert finding.share == pytest.approx(20 * 0.01 / before) and finding.seconds == pytest.approx(0.2)
    assert finding.setting == {"handler": "TimedRun.engines.<locals>.<lambda>", "every": 10}
    assert "TimedRun.engines.<locals>.<lambda> runs at every batch's ITERATION_COMPLETED, 10 ms a call" in finding.why
    trainer, speedups = dataclasses.replace(run, handler=0.0).engines(max_epochs=1, profile=True)
    trainer.add_event_handler(Events.ITERATION_COMPLETED(every=finding.setting["every"]), lambda _: run.sleep(0.01))
    started = run.now()
    trainer.run(run.train_loader())
    assert_saves_half(finding.saving, before, run.now() - started)


def test_a_costly_sanity_check_is_named():
    run = faked(TimedRun(step=0.005, val_batch=0.05, batches=6, val_batches=4))
    speedups, before = run.run(max_epochs=1, num_sanity_val_steps=2, limit_val_batches=2)
    advice = speedups.advise()
    assert advice[0].part == "sanity_check" and advice[0].setting == {"num_sanity_val_steps": 0}, str(advice)
    assert advice[0].share == pytest.approx(2 * 0.05 / before)


def test_nothing_worth_changing_prints_nothing():
    run = faked(TimedRun(step=0.01, batches=6))
    trainer, speedups = run.engines(max_epochs=1, profile=True)
    trainer.run([torch.tensor([float(i)]) for i in range(6)])  # in memory: no wait for data
    advice = speedups.advise()
    assert len(advice) == 0 and str(advice) == ""


def test_training_in_bulk_and_unsplit_gets_the_hint_alone():
    speedups, _ = faked(TimedRun(step=0.01, batches=6)).run(max_epochs=1)
    advice = speedups.advise()
    assert len(advice) == 0
    assert str(advice) == "(training was not split: attach with profile=True to see its data, step and handler time)"


def test_advice_prints_ranked_with_the_note_of_an_unsplit_profile():
    run = faked(TimedRun(step=0.005, val_batch=0.04, save=0.04, save_every=3, batches=6, val_batches=2))
    speedups, _ = run.run(max_epochs=1, val_check_interval=0.5, num_sanity_val_steps=0)
    advice = speedups.advise()
    assert [f.part for f in advice] == ["validation", "checkpoint"]
    assert advice[0].saving >= advice[1].saving
    text = str(advice)
    assert text.startswith("Where to save time") and "1. validation: " in text and "2. checkpoint saves: " in text
    assert text.endswith("(training was not split: attach with profile=True to see its data, step and handler time)")


def test_no_data_advice_from_a_handful_of_batches_or_for_memory():
    """A fast_dev_run's batch or two say too little of the data's pace; data in memory is read fastest in the
    process."""
    run = faked(TimedRun(data=0.04, step=0.01, batches=40))
    assert first_finding(run.run(max_epochs=1, profile=True)[0], "data")
    fast, _ = run.run(fast_dev_run=2, max_epochs=1)
    assert "data" not in [f.part for f in fast.advise()]
    profile = RunProfile(wall=1.0, parts={"data": 0.6, "step": 0.4}, fine=True, batches=100)
    assert advise(a_report(profile=profile), RunFacts(num_workers=0, cpus=4))[0].part == "data"
    assert advise(a_report(profile=profile), RunFacts(num_workers=0, cpus=4, in_memory=True)).findings == ()


def test_every_advised_setting_can_be_passed_where_it_says():
    findings = []
    for run, flags in [
        (TimedRun(data=0.04, step=0.01, batches=40), {"max_epochs": 1, "profile": True}),
        (
            TimedRun(step=0.005, val_batch=0.05, save=0.04, save_every=3, batches=6, val_batches=4),
            {"max_epochs": 2, "val_check_interval": 0.5, "num_sanity_val_steps": 2},
        ),
        (TimedRun(step=0.01, batches=20, handler=0.01), {"max_epochs": 1, "profile": True}),
    ]:
        findings += list(faked(run).run(**flags)[0].advise())
    findings += list(advise(a_report(profile=GPU_PROFILE), RunFacts(on_gpu=True, bf16=True, step_returns_number=True)))
    assert {f.part for f in findings} >= {"data", "validation", "sanity_check", "checkpoint", "app_handlers", "step"}
    for f in findings:
        if f.where.startswith("a flag of attach_speedups"):
            SpeedConfig(**f.setting)
        elif f.where == "arguments of the training DataLoader":
            DataLoader(list(range(4)), **f.setting)
        elif f.part in ("checkpoint", "app_handlers"):
            getattr(Events, f.setting.get("event", "ITERATION_COMPLETED"))(every=f.setting["every"])
        else:
            assert f.where.startswith("an argument of create_trainer")
            assert set(f.setting) <= set(inspect.signature(create_trainer).parameters)


# ---------------------------------------------------------------------------------------------- facts alone
def a_report(**changes):
    speedups, _ = TimedRun(step=0.0, batches=2).run(max_epochs=1)
    return dataclasses.replace(speedups.report(), **changes)


GPU_PROFILE = RunProfile(
    wall=10.0,
    parts={"data": 2.0, "step": 6.0, "app_handlers": 1.0, "ignite_speed_handlers": 0.2, "other": 0.8},
    fine=True,
    batches=1000,
)


def test_a_step_that_returns_a_number_on_a_gpu_syncs_every_batch():
    """The device facts given to the pure function: on a GPU, the host waits for each batch's loss.item()."""
    report = a_report(profile=GPU_PROFILE)
    assert advise(report, RunFacts(on_gpu=False, step_returns_number=True)).findings == ()
    assert advise(report, RunFacts(on_gpu=True, step_returns_number=False)).findings == ()
    finding = advise(report, RunFacts(on_gpu=True, step_returns_number=True))[0]
    assert finding.part == "step" and finding.share == pytest.approx(0.6)
    assert finding.saving == pytest.approx(3.2)  # the host's 3.2 s (data and handlers) hidden behind the GPU's 6 s
    assert finding.setting == {"output_transform": "lambda x, y, y_pred, loss: loss"}
    assert "each of the 1000 batches waits in the step for the GPU" in finding.why
    assert "read it (.item()) every n batches" in finding.why and finding.where.startswith(
        "an argument of create_trainer"
    )
    coarse = RunProfile(wall=10.0, parts={"training": 9.0, "validation": 1.0}, batches=1000)
    advice = advise(a_report(profile=coarse), RunFacts(on_gpu=True, step_returns_number=True))
    assert "the step returns a Python number, which makes the host wait for the GPU every batch" in str(advice)


def test_the_facts_of_a_run_say_what_its_step_returns_and_where_its_data_lives():
    from ignite_speed.speedups import run_facts

    speedups, _ = faked(TimedRun(step=0.0, batches=2)).run(max_epochs=1)  # its step returns float(batch.sum())
    facts = run_facts(speedups)
    assert facts.step_returns_number is True and facts.in_memory is False
    run = faked(TimedRun(step=0.0, batches=2))
    trainer, speedups = run.engines(max_epochs=1)
    trainer.run([torch.ones(1), torch.ones(1)])
    assert run_facts(speedups).in_memory is True


def test_fp32_on_a_gpu_with_bf16():
    profile = RunProfile(
        wall=10.0,
        parts={"data": 0.5, "step": 8.0, "app_handlers": 0.0, "ignite_speed_handlers": 0.1, "other": 1.4},
        fine=True,
        batches=100,
    )
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
    report = a_report(
        profile=profile,
        validations=points,
        best_at=points[1],
        best=0.5,
        monitor="val_loss",
        mode="min",
        seconds=8.0,
        stop_reason="max_epochs",
    )
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
    clock = FakeClock()
    assert TimedRun(step=0.02, data=0.01, batches=3, clock=clock).run(max_epochs=1)[1] == pytest.approx(0.09)


def test_no_workers_for_a_wait_shorter_than_handing_a_batch_over():
    """A batch read in memory in 0.1 ms comes faster in the process than from a worker (about 1 ms)."""
    profile = RunProfile(
        wall=1.0,
        parts={"data": 0.2, "step": 0.7, "app_handlers": 0.0, "ignite_speed_handlers": 0.05, "other": 0.05},
        fine=True,
        batches=2000,
    )
    assert advise(a_report(profile=profile), RunFacts(num_workers=0, cpus=4)).findings == ()
    slow = RunProfile(
        wall=10.0,
        parts={"data": 2.0, "step": 7.0, "app_handlers": 0.0, "ignite_speed_handlers": 0.5, "other": 0.5},
        fine=True,
        batches=200,
    )  # 10 ms a batch: workers pay
    assert advise(a_report(profile=slow), RunFacts(num_workers=0, cpus=4))[0].setting["num_workers"] == 1
