"""``Speedups.extend(**flags)``: every flag it accepts acts on the next run (exact counts), every other one is
refused at ``extend`` naming the flag, and nothing is accepted and then ignored.

The runs are on a fake clock that the steps advance (a training batch 1 s, a validation batch 1 s), so that the
time flags decide exactly. The first run trains one epoch of 8 batches and validates once (4 batches); ``extend``
then changes one flag and the next run continues.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
import torch
from ignite.engine import Engine, Events
from ignite.metrics import Average

from ignite_speed import SpeedConfig, attach_speedups
from ignite_speed.handlers import StopReason
from ignite_speed.speedups import EXTEND_REFUSED
from tests.helpers import loader


class Job:
    """A trainer and an evaluator on a fake clock, with what they did."""

    def __init__(
        self,
        cfg: dict[str, Any],
        *,
        nan_at: int | None = None,
        signal_at: tuple[int, int] | None = None,
        stop_at: int | None = None,
        metric: float = 1.0,
    ) -> None:
        self.now = 0.0
        self.batches: dict[int, int] = {}
        self.val_at: list[int] = []
        self.val_batches: list[int] = []
        self.tested = 0

        def train_step(engine: Engine, batch: Any) -> float:
            self.now += 1.0
            return float("nan") if engine.state.iteration == nan_at else 0.5

        def val_step(engine: Engine, batch: Any) -> None:
            self.now += 1.0

        self.trainer, self.evaluator = Engine(train_step), Engine(val_step)
        self.tester = Engine(lambda e, b: None)
        self.tester.add_event_handler(Events.ITERATION_COMPLETED, lambda _: setattr(self, "tested", self.tested + 1))

        @self.trainer.on(Events.ITERATION_COMPLETED)
        def _count(engine: Engine) -> None:
            self.batches[engine.state.epoch] = self.batches.get(engine.state.epoch, 0) + 1
            if signal_at is not None and engine.state.iteration == signal_at[0]:
                os.kill(os.getpid(), signal_at[1])
            if engine.state.iteration == stop_at:
                self.speedups.request_stop()

        @self.evaluator.on(Events.COMPLETED)
        def _validated(engine: Engine) -> None:
            self.val_at.append(self.trainer.state.iteration)
            self.val_batches.append(engine.state.iteration)
            engine.state.metrics["val_loss"] = metric

        self.speedups = attach_speedups(
            self.trainer, self.evaluator, {"max_epochs": 1, "num_sanity_val_steps": 0, **cfg}, val_data=loader(4, 100.0)
        )
        self.speedups.loop.clock.time_source = lambda: self.now
        self.run()

    def run(self) -> None:
        self.trainer.run(loader(8))

    def extend_and_run(self, **flags: Any) -> Job:
        self.speedups.extend(**flags)
        self.run()
        return self

    @property
    def per_epoch(self) -> list[int]:
        return [self.batches[k] for k in sorted(self.batches)]

    @property
    def outcome(self) -> tuple[int, StopReason]:
        return self.trainer.state.iteration, self.speedups.stop_reason


def _test_batches(flag: str, method: str) -> int:
    job = Job({})
    job.speedups.extend(**{flag: 2})
    getattr(job.speedups, method)(job.tester, loader(5))
    return job.tested


# flag -> (what the next run does with it, what it does without the change)
ACTS: dict[str, Any] = {
    "max_epochs": lambda: Job({}).extend_and_run(max_epochs=3).outcome == (24, StopReason.MAX_EPOCHS),
    "min_epochs": lambda: (
        Job({}, stop_at=10).extend_and_run(max_epochs=5, min_epochs=3).outcome == (24, StopReason.USER_REQUEST)
    ),
    "max_steps": lambda: Job({}).extend_and_run(max_epochs=5, max_steps=12).outcome == (12, StopReason.MAX_STEPS),
    "min_steps": lambda: (
        Job({}, stop_at=10).extend_and_run(max_epochs=5, min_steps=13).outcome == (13, StopReason.USER_REQUEST)
    ),
    # the first run took 8 + 4 s of the clock; the second epoch's batches end at 20 s, its validation at 24 s:
    # 20 s stop after batch 16; 22 s after batch 17 ("step") or at the end of epoch 2, after batch 16 ("epoch")
    "max_time": lambda: Job({}).extend_and_run(max_epochs=5, max_time=20).outcome == (16, StopReason.MAX_TIME),
    "max_time_mode": lambda: (
        [
            Job({"max_time": 22}).extend_and_run(max_epochs=5, **mode).outcome
            for mode in ({}, {"max_time_mode": "epoch"})
        ]
        == [(17, StopReason.MAX_TIME), (16, StopReason.MAX_TIME)]
    ),
    "max_time_reserve": lambda: (
        Job({"max_time": 40}).extend_and_run(max_epochs=5, max_time_reserve=24).outcome == (12, StopReason.MAX_TIME)
    ),
    "limit_train_batches": lambda: Job({}).extend_and_run(max_epochs=3, limit_train_batches=3).per_epoch == [8, 3, 3],
    "limit_val_batches": lambda: Job({}).extend_and_run(max_epochs=2, limit_val_batches=2).val_batches == [4, 2],
    "limit_test_batches": lambda: _test_batches("limit_test_batches", "test") == 2,
    "limit_predict_batches": lambda: _test_batches("limit_predict_batches", "predict") == 2,
    "overfit_batches": lambda: (lambda j: (j.per_epoch, j.val_batches) == ([8, 2], [4, 2]))(
        Job({}).extend_and_run(max_epochs=2, overfit_batches=2)
    ),
    "val_check_interval": lambda: Job({}).extend_and_run(max_epochs=2, val_check_interval=0.5).val_at == [8, 12, 16],
    "check_val_every_n_epoch": lambda: (
        Job({}).extend_and_run(max_epochs=3, check_val_every_n_epoch=2).val_at == [8, 16]
    ),
    # validation takes 4 s a run: with a budget of 1 %, the first candidate of the run validates, the others wait
    "val_time_fraction": lambda: (
        lambda j: (j.val_at, j.speedups.handlers.validation.budget.skipped) == ([2, 4, 6, 8, 10], 3)
    )(Job({"val_check_interval": 0.25}).extend_and_run(max_epochs=2, val_time_fraction=0.01)),
    "early_stopping": lambda: (
        Job({"early_stopping": {"monitor": "val_loss", "patience": 3}})
        .extend_and_run(max_epochs=9, early_stopping={"monitor": "val_loss", "patience": 1})
        .outcome
        == (16, StopReason.EARLY_STOPPING)
    ),
    "terminate_on_nan": lambda: (
        Job({}, nan_at=11).extend_and_run(max_epochs=3, terminate_on_nan=True).outcome
        == (11, StopReason.NON_FINITE_LOSS)
    ),
    "preemption_signals": lambda: (
        Job({}, signal_at=(11, signal.SIGUSR2)).extend_and_run(max_epochs=3, preemption_signals=["SIGUSR2"]).outcome
        == (11, StopReason.PREEMPTED)
    ),
    "batched_fetch": lambda: (
        Job({}).extend_and_run(max_epochs=2, batched_fetch=False).trainer.state.dataloader.__class__.__name__
        == "DataLoader"
    ),
    "profile": lambda: Job({}).extend_and_run(max_epochs=2, profile=True).speedups.loop.timer.fine_measured,
    "allow_resume_changes": lambda: (
        Job({}).extend_and_run(max_epochs=2, allow_resume_changes=True).speedups.loop.setup.allow_resume_changes
    ),
}

# a value of each refused flag that SpeedConfig accepts and that differs from the default
REFUSED_VALUES: dict[str, Any] = {
    "precision": "64-true",
    "amp_backend": "apex",
    "amp_level": "O2",
    "accumulate_grad_batches": 2,
    "gradient_clip_val": 1.0,
    "gradient_clip_algorithm": "value",
    "accelerator": "cpu",
    "devices": 1,
    "num_nodes": 2,
    "strategy": "ddp",
    "node_rank": 0,
    "master_addr": "127.0.0.1",
    "master_port": 29500,
    "deepspeed_config": {"train_batch_size": 2},
    "fast_dev_run": 2,
    "num_sanity_val_steps": 4,
    "autoresume": True,
    "pruning": {"trial": "ray_tune", "monitor": "val_loss"},
}


def test_every_flag_is_either_acted_on_or_refused():
    assert sorted(set(ACTS) | set(EXTEND_REFUSED)) == sorted(SpeedConfig.flag_names())
    assert not set(ACTS) & set(EXTEND_REFUSED)
    assert set(REFUSED_VALUES) == set(EXTEND_REFUSED)


@pytest.mark.parametrize("flag", sorted(ACTS))
def test_a_flag_extend_accepts_acts_on_the_next_run(flag):
    assert ACTS[flag]()


@pytest.mark.parametrize("flag", sorted(EXTEND_REFUSED))
def test_a_flag_that_cannot_act_on_a_continuing_run_is_refused_at_extend(flag):
    job = Job({})
    cfg = job.speedups.cfg
    with pytest.raises((ValueError, TypeError), match=flag):
        job.speedups.extend(max_epochs=2, **{flag: REFUSED_VALUES[flag]})
    assert job.speedups.cfg is cfg  # nothing changed: the run continues as it was
    job.extend_and_run(max_epochs=2)
    assert job.outcome == (16, StopReason.MAX_EPOCHS)


def test_the_refusals_say_what_to_do_instead():
    job = Job({})
    with pytest.raises(ValueError, match=r"extend\(fast_dev_run=2\).*attach_speedups without fast_dev_run"):
        job.speedups.extend(fast_dev_run=2)
    with pytest.raises(ValueError, match=r"accumulate_grad_batches=2.*global_step"):
        job.speedups.extend(accumulate_grad_batches=2)
    with pytest.raises(ValueError, match=r"extend\(devices=1\).*relaunch the job"):
        job.speedups.extend(devices=1)
    with pytest.raises(ValueError, match=r"extend\(autoresume=True\)"):
        job.speedups.extend(ckpt_path="last")  # (Lightning's spelling of autoresume=True)


@pytest.mark.parametrize(
    "flags",
    [{"max_epochs": 3}, {"max_steps": 10}, {"limit_val_batches": 1}, {"early_stopping": {"monitor": "val_loss"}}],
)
def test_what_fast_dev_run_overrides_is_refused_under_it(flags):
    job = Job({"fast_dev_run": 2})
    assert job.outcome == (2, StopReason.MAX_STEPS)
    (name,) = flags
    with pytest.raises(ValueError, match=rf"extend\({name}=.*fast_dev_run=2 overrides it.*without fast_dev_run"):
        job.speedups.extend(**flags)


def test_validation_flags_without_an_evaluator_are_refused():
    trainer = Engine(lambda e, b: None)
    speedups = attach_speedups(trainer, None, {"max_epochs": 1})
    trainer.run([0, 1])
    with pytest.raises(ValueError, match=r"extend\(val_check_interval=.*nothing validates"):
        speedups.extend(max_epochs=2, val_check_interval=0.5)


def test_unchanged_values_and_turning_handlers_off_are_accepted():
    job = Job({"terminate_on_nan": True, "val_check_interval": 0.5}, nan_at=11)
    job.extend_and_run(max_epochs=3, terminate_on_nan=False, val_check_interval=None, precision="32-true")
    assert job.outcome == (24, StopReason.MAX_EPOCHS) and job.val_at == [4, 8, 16, 24]
    assert job.speedups.nan_guard is None


HANDLERS = ("limits", "train_batches", "validation", "time_budget", "early_stopping", "nan_guard", "preemption")


def _trained_with_early_stopping_on_a_trainer_metric() -> tuple[Engine, Any]:
    """One epoch of 8 batches without validation; early stopping (patience 1) monitors a constant trainer metric."""
    trainer = Engine(lambda e, b: 0.5)
    Average(output_transform=lambda out: torch.tensor([out])).attach(trainer, "train_loss")
    cfg = {"max_epochs": 1, "early_stopping": {"monitor": "train_loss", "patience": 1}}
    speedups = attach_speedups(trainer, None, cfg)
    trainer.run(loader(8))
    return trainer, speedups


def _handler_states(speedups: Any) -> dict[str, Any]:
    """The checkpointed state of each attached handler (the loop's own part holds tensors: the data's RNG)."""
    return {key: value for key, value in speedups.state_dict().items() if key != "loop"}


def test_a_refused_extend_changes_nothing():
    trainer, speedups = _trained_with_early_stopping_on_a_trainer_metric()
    cfg, limits, state = speedups.cfg, speedups.limits, _handler_states(speedups)
    before = {name: getattr(speedups.handlers, name) for name in HANDLERS}
    described = {name: (repr(h), h.state_dict()) for name, h in before.items() if h is not None}
    attached = [type(h) for h in speedups.loop.handlers]
    with pytest.raises(ValueError, match=r"early_stopping monitors 'acc'.*validation is disabled"):
        speedups.extend(max_epochs=3, early_stopping={"monitor": "acc"})  # nothing computes acc
    assert speedups.cfg is cfg and speedups.limits == limits and _handler_states(speedups) == state
    for name, handler in before.items():
        now = getattr(speedups.handlers, name)
        if handler is None or now is None:
            assert now is handler, name
        else:
            assert now is handler or (repr(now), now.state_dict()) == described[name], name
    assert [type(h) for h in speedups.loop.handlers] == attached
    # the next run is the one it would have been: the second epoch's check stops it (patience 1)
    speedups.extend(max_epochs=3)
    trainer.run(loader(8))
    assert (trainer.state.iteration, speedups.stop_reason) == (16, StopReason.EARLY_STOPPING)


def test_val_time_fraction_with_an_evaluator_but_no_val_data_is_refused():
    trainer = Engine(lambda e, b: None)
    speedups = attach_speedups(trainer, Engine(lambda e, b: None), {"max_epochs": 1})  # (no val_data)
    trainer.run([0, 1])
    cfg = speedups.cfg
    with pytest.raises(ValueError, match=r"extend\(val_time_fraction=0.5\).*no val_data.*val_time_fraction=None"):
        speedups.extend(max_epochs=2, val_time_fraction=0.5)  # before: accepted, and nothing budgeted
    assert speedups.cfg is cfg
    speedups.extend(max_epochs=2)
    trainer.run([0, 1])
    assert (trainer.state.iteration, speedups.stop_reason) == (4, StopReason.MAX_EPOCHS)
