"""The run profile (``speedups.report().profile``): where the wall time of ``trainer.run`` goes.

Each run sleeps known times in its data, step, evaluator and checkpoint saves; the measured parts must
add up to the wall time of ``trainer.run`` (measured outside) within 2 %, and each share must be within a
few percent (absolute) of what the sleeps give.
"""

from __future__ import annotations

import json

import pytest
from ignite.engine import Events
from ignite.handlers import Checkpoint

from ignite_speed import SpeedConfig
from ignite_speed._compat import event_handlers, process_function
from ignite_speed.report import RunProfile
from tests.report.timed_runs import TimedRun

TOLERANCE = 0.05  # absolute, on a share: a loaded 2-core machine oversleeps, and Ignite runs between the sleeps


def assert_adds_up(profile: RunProfile, wall: float) -> None:
    assert sum(profile.parts.values()) == pytest.approx(profile.wall, rel=1e-9)
    assert profile.wall == pytest.approx(wall, rel=0.02)


def test_coarse_profile_is_on_by_default():
    run = TimedRun(step=0.02, val_batch=0.02, save=0.04, save_every=3, batches=6, val_batches=2)
    speedups, wall = run.run(max_epochs=2, val_check_interval=0.5, num_sanity_val_steps=1)
    profile = speedups.report().profile
    assert not profile.fine and set(profile.parts) == {"training", "setup", "validation", "sanity_check", "checkpoint"}
    assert_adds_up(profile, wall)
    assert (profile.batches, profile.val_runs, profile.checkpoint_calls) == (12, 4, 4)
    expected = {"training": 12 * 0.02, "validation": 4 * 2 * 0.02, "sanity_check": 0.02, "checkpoint": 4 * 0.04}
    for part, seconds in expected.items():
        assert profile.share(part) == pytest.approx(seconds / profile.wall, abs=TOLERANCE), (part, profile)


def test_fine_profile_splits_training():
    run = TimedRun(data=0.03, step=0.015, val_batch=0.01, save=0.03, save_every=4, batches=8)
    speedups, wall = run.run(max_epochs=1, val_check_interval=0.5, num_sanity_val_steps=2, profile=True)
    profile = speedups.report().profile
    assert profile.fine
    assert list(profile.parts) == ["data", "step", "app_handlers", "ignite_speed_handlers", "setup", "sanity_check",
                                   "validation", "checkpoint", "other"]
    assert_adds_up(profile, wall)
    expected = {"data": 8 * 0.03, "step": 8 * 0.015, "validation": 2 * 2 * 0.01, "sanity_check": 2 * 0.01,
                "checkpoint": 2 * 0.03, "app_handlers": 0.0}
    for part, seconds in expected.items():
        assert profile.share(part) == pytest.approx(seconds / profile.wall, abs=TOLERANCE), (part, profile)
    assert profile.share("other") + profile.share("ignite_speed_handlers") < 0.03, profile
    assert profile.batch_seconds == pytest.approx(0.045, rel=0.2)


def test_app_handlers_between_the_loops_own():
    import time

    run = TimedRun(step=0.01, batches=6)
    trainer, speedups = run.engines(max_epochs=1, profile=True)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda _: time.sleep(0.02))
    started = time.perf_counter()
    trainer.run(run.train_loader())
    wall = time.perf_counter() - started
    profile = speedups.report().profile
    assert_adds_up(profile, wall)
    assert profile.share("app_handlers") == pytest.approx(6 * 0.02 / wall, abs=TOLERANCE), profile
    assert profile.share("step") == pytest.approx(6 * 0.01 / wall, abs=TOLERANCE), profile


def test_the_run_sees_its_own_step_handlers_and_data():
    """The timed wrappers are in place only during the run; the step gets the same engine and batches,
    the data loader is the user's object, a Checkpoint keeps its class."""
    run = TimedRun(step=0.0, save=0.001, save_every=1, batches=4)
    trainer, speedups = run.engines(max_epochs=2, profile=True)
    step, handlers = process_function(trainer), list(event_handlers(trainer, Events.ITERATION_COMPLETED))
    checkpoint = next(h for h in (e[0] for e in handlers) if isinstance(getattr(h, "__wrapped__", h), Checkpoint))
    seen = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED,
                              lambda e: seen.append((e.state.dataloader, e.state.batch.item(), e.state.output)))
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
    assert data["profile"]["parts"].keys() == {"training", "setup", "validation", "sanity_check", "checkpoint"}
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
