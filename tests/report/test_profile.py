"""The run profile (``speedups.report().profile``): where the wall time of ``trainer.run`` goes.

Each run "sleeps" known times in its data, step, evaluator, checkpoint saves and handlers. On a fake clock
(:class:`~tests.report.timed_runs.FakeClock`: the sleeps advance it, the run's timer reads it) every part
must be exactly what the sleeps put there, and the parts must add up to the wall time of ``trainer.run``:
nothing here depends on how loaded the machine is. One run on the real clock checks that the wall the
profile measures is the call's wall measured outside (see its docstring for the margin).
"""

from __future__ import annotations

import gc
import importlib
import json
import sys
import weakref

import pytest
from ignite.engine import Events
from ignite.handlers import Checkpoint

from ignite_speed import SpeedConfig, attach_speedups
from ignite_speed._compat import event_handlers, process_function
from ignite_speed.report import RunProfile
from tests.helpers import loader, make_run
from tests.report.timed_runs import FakeClock, TimedRun

COARSE = {"training", "setup", "validation", "sanity_check", "checkpoint", "imports", "after_run"}


def assert_adds_up(profile: RunProfile, wall: float) -> None:
    assert sum(profile.parts.values()) == pytest.approx(profile.wall, rel=1e-9)
    assert profile.wall == pytest.approx(wall, rel=1e-9)


def assert_parts(profile: RunProfile, expected: dict[str, float]) -> None:
    """Every part is what the sleeps put there; the parts not named took no (fake) time."""
    for part, seconds in profile.parts.items():
        assert seconds == pytest.approx(expected.get(part, 0.0), abs=1e-9), (part, profile)


def test_coarse_profile_is_on_by_default():
    run = TimedRun(step=0.02, val_batch=0.02, save=0.04, save_every=3, batches=6, val_batches=2, clock=FakeClock())
    speedups, wall = run.run(max_epochs=2, val_check_interval=0.5, num_sanity_val_steps=1)
    profile = speedups.report().profile
    assert not profile.fine and set(profile.parts) == COARSE
    assert_adds_up(profile, wall)
    assert (profile.batches, profile.val_runs, profile.checkpoint_calls) == (12, 4, 4)
    assert_parts(
        profile, {"training": 12 * 0.02, "validation": 4 * 2 * 0.02, "sanity_check": 0.02, "checkpoint": 4 * 0.04}
    )


@pytest.mark.parametrize(
    "data, step, val_batch, save, batches", [(0.03, 0.015, 0.01, 0.03, 8), (0.004, 0.2, 0.05, 0.5, 12)]
)
def test_fine_profile_splits_training(data, step, val_batch, save, batches):
    run = TimedRun(
        data=data, step=step, val_batch=val_batch, save=save, save_every=4, batches=batches, clock=FakeClock()
    )
    speedups, wall = run.run(max_epochs=1, val_check_interval=0.5, num_sanity_val_steps=2, profile=True)
    profile = speedups.report().profile
    assert profile.fine
    assert list(profile.parts) == [
        "data",
        "step",
        "app_handlers",
        "ignite_speed_handlers",
        "setup",
        "sanity_check",
        "validation",
        "checkpoint",
        "imports",
        "after_run",
        "other",
    ]
    assert_adds_up(profile, wall)
    assert_parts(
        profile,
        {
            "data": batches * data,
            "step": batches * step,
            "validation": 2 * 2 * val_batch,
            "sanity_check": 2 * val_batch,
            "checkpoint": batches // 4 * save,
        },
    )
    assert profile.batch_seconds == pytest.approx(data + step)


def test_app_handlers_between_the_loops_own():
    run = TimedRun(step=0.01, batches=6, handler=0.02, clock=FakeClock())
    speedups, wall = run.run(max_epochs=1, profile=True)
    profile = speedups.report().profile
    assert_adds_up(profile, wall)
    assert_parts(profile, {"app_handlers": 6 * 0.02, "step": 6 * 0.01})


CLOCK = FakeClock()  # the clock that the module imported by the step below advances


def test_a_first_import_is_its_own_part_not_the_step_s(tmp_path, monkeypatch):
    """A module imported for the first time inside the step costs the ``imports`` part, not ``step``."""
    (tmp_path / "slow_to_import_for_the_profile.py").write_text(
        "import sys\nsys.modules['tests.report.test_profile'].CLOCK.sleep(0.3)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "slow_to_import_for_the_profile", raising=False)
    run = TimedRun(step=0.01, batches=4, clock=CLOCK)
    trainer, speedups = run.engines(max_epochs=1, profile=True)

    @trainer.on(Events.ITERATION_STARTED)
    def import_in_the_first_batch(engine):
        if engine.state.iteration == 2:
            import slow_to_import_for_the_profile  # noqa: F401

    started = CLOCK()
    trainer.run(run.train_loader())
    profile = speedups.report().profile
    assert_adds_up(profile, CLOCK() - started)
    assert_parts(profile, {"step": 4 * 0.01, "imports": 0.3})


def test_a_first_import_leaves_its_loader_as_it_was_and_keeps_nothing_alive(tmp_path, monkeypatch):
    """The timed ``exec_module`` given to a loader during the run is removed when the run ends: the loader
    (kept by ``sys.modules``) would otherwise keep the run's timer, and with it the trainer, alive."""
    name = "imported_once_for_the_loader_check"
    (tmp_path / f"{name}.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    run = make_run()
    speedups = attach_speedups(run.trainer, None, {"max_epochs": 1})
    run.trainer.add_event_handler(Events.ITERATION_COMPLETED(once=2), lambda _: importlib.import_module(name))
    run.trainer.run(loader(3))
    spec_loader = sys.modules[name].__spec__.loader
    assert (sys.modules[name].VALUE, "exec_module" in vars(spec_loader)) == (1, False)
    collected = weakref.ref(speedups)
    del speedups, run
    gc.collect()
    assert collected() is None


def test_the_wall_includes_the_work_after_the_run():
    """The listeners after Ignite's run (a fast_dev_run's projection) are in the wall, as ``after_run``."""
    clock = FakeClock()
    run = TimedRun(step=0.01, val_batch=0.02, batches=6, clock=clock)
    trainer, speedups = run.engines(fast_dev_run=2, max_epochs=3)
    speedups.loop.timer.listeners.append(lambda: clock.sleep(0.25))
    started = clock()
    trainer.run(run.train_loader())
    profile = speedups.report().profile
    assert speedups.report().projection is not None
    assert_adds_up(profile, clock() - started)
    assert profile.parts["after_run"] == pytest.approx(0.25)
    assert profile.parts["validation"] == pytest.approx(2 * 0.02) and profile.batches == 2


def test_on_the_real_clock_the_wall_is_the_call_s():
    """On the real clock, with sleeps: the profile's wall is that of ``trainer.run`` measured around it, less
    only the two calls between the outer clock reads and the timer's own (microseconds). The margin, 30 ms on
    a 0.3 s run, is there for one preemption of this process between those reads by a busy machine's
    scheduler (a few ms each); the parts add up to the wall exactly, as they do by construction."""
    run = TimedRun(data=0.005, step=0.01, val_batch=0.01, batches=10, val_batches=2)
    speedups, wall = run.run(fast_dev_run=10, profile=True)
    profile = speedups.report().profile
    assert sum(profile.parts.values()) == pytest.approx(profile.wall, rel=1e-9)
    assert 0.0 <= wall - profile.wall < 0.03, (wall, profile)
    assert profile.parts["step"] >= 10 * 0.01 and profile.parts["data"] >= 10 * 0.005


def test_the_run_sees_its_own_step_handlers_and_data():
    """The timed wrappers are in place only during the run; the step gets the same engine and batches,
    the data loader is the user's object, a Checkpoint keeps its class."""
    run = TimedRun(step=0.0, save=0.001, save_every=1, batches=4)
    trainer, speedups = run.engines(max_epochs=2, profile=True)
    step, handlers = process_function(trainer), list(event_handlers(trainer, Events.ITERATION_COMPLETED))
    checkpoint = next(h for h in (e[0] for e in handlers) if isinstance(getattr(h, "__wrapped__", h), Checkpoint))
    seen = []
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED, lambda e: seen.append((e.state.dataloader, e.state.batch.item(), e.state.output))
    )
    loader = run.train_loader()
    trainer.run(loader)
    assert process_function(trainer) is step
    after = [e[0] for e in event_handlers(trainer, Events.ITERATION_COMPLETED)]
    assert all(h in after for h in (e[0] for e in handlers)) and len(after) == len(handlers) + 1
    for event in (Events.ITERATION_COMPLETED, Events.EPOCH_STARTED):
        assert not [e for e in event_handlers(trainer, event) if "run_timer" in getattr(e[0], "__module__", "")]
    checkpoint = getattr(checkpoint, "__wrapped__", checkpoint)
    assert type(checkpoint) is Checkpoint and "_ignite_speed_timer" not in vars(checkpoint)
    assert [(d is loader, b, o) for d, b, o in seen] == [(True, float(i % 4), float(i % 4)) for i in range(8)]
    assert speedups.report().profile.checkpoint_calls == 8


def test_profile_is_plain_data_and_prints():
    speedups, _ = TimedRun(step=0.001, batches=3).run(max_epochs=1)
    data = speedups.report().to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["profile"]["parts"].keys() == COARSE
    text = str(speedups.report().profile)
    assert "training (not split)" in text and "wall time of trainer.run" in text


def test_a_new_run_starts_a_new_profile():
    run = TimedRun(step=0.005, batches=4)
    trainer, speedups = run.engines(max_epochs=1)
    trainer.run(run.train_loader())
    trainer.state.max_epochs = None
    trainer.run(run.train_loader())
    assert speedups.report().profile.batches == 4


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_profile_flag_is_a_bool(value):
    with pytest.raises(TypeError, match=r"^profile=.* has type .*; accepted: True"):
        SpeedConfig(profile=value)


def test_plot_draws_the_profile(tmp_path):
    pytest.importorskip("matplotlib")
    speedups, _ = TimedRun(step=0.002, val_batch=0.002, batches=4).run(max_epochs=2, profile=True)
    path = speedups.plot(tmp_path / "run.png", monitor="missing")
    assert path.stat().st_size > 0
