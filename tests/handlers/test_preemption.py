"""PreemptionGuard in one process, with real signals (``os.kill`` of the test's own process): the run stops
after the batch during which the signal came, every ``Checkpoint`` saves there once, and a run resumed from
that checkpoint ends exactly as an uninterrupted one."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver
from torch.utils.data import DataLoader, TensorDataset

import ignite_speed
from ignite_speed import PREEMPTED_EXIT_CODE, PreemptionGuard, StopReason, attach_speedups
from ignite_speed.handlers import LoopLimits
from tests.helpers import mse_step

BATCHES = 6  # per epoch
EPOCHS = 3


def _build(
    ckpt_dir: Path,
    *,
    kill_at: tuple[int, ...] = (),
    sig: int = signal.SIGTERM,
    every: Events | None = None,
    evaluator: Engine | None = None,
    **cfg: Any,
) -> dict[str, Any]:
    """A shuffled Linear regression; the process function sends ``sig`` to this process at each iteration of
    ``kill_at``. A Checkpoint of trainer, model, optimizer and speedups at every epoch end (or ``every``)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(BATCHES * 4, 4, generator=g)
    data = DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=4, shuffle=True)

    train_step = mse_step(model, opt)

    def step(engine: Engine, batch: Any) -> float:
        loss = train_step(engine, batch)
        for _ in range(kill_at.count(engine.state.iteration)):
            os.kill(os.getpid(), sig)
        return loss

    trainer = Engine(step)
    val_data = None if evaluator is None else [torch.zeros(1)] * 3
    sp = attach_speedups(trainer, evaluator, {"max_epochs": EPOCHS, **cfg}, val_data=val_data)
    saves: list[int] = []  # the iteration of every save (a file written again under its name counts)

    class RecordingSaver(DiskSaver):
        def __call__(self, checkpoint: Any, filename: str, metadata: Any = None) -> None:
            saves.append(trainer.state.iteration)
            super().__call__(checkpoint, filename, metadata)

    ckpt = Checkpoint(
        {"trainer": trainer, "model": model, "optimizer": opt, "speedups": sp},
        RecordingSaver(str(ckpt_dir), require_empty=False),
        n_saved=None,
    )
    trainer.add_event_handler(every or Events.EPOCH_COMPLETED, ckpt)
    return {"trainer": trainer, "model": model, "opt": opt, "sp": sp, "ckpt": ckpt, "data": data, "saves": saves}


def _load(run: dict[str, Any], path: Path) -> None:
    """Load the checkpoint file ``path`` into the objects of ``run`` (as built by :func:`_build`)."""
    Checkpoint.load_objects(
        {"trainer": run["trainer"], "model": run["model"], "optimizer": run["opt"], "speedups": run["sp"]},
        torch.load(path, weights_only=False),
    )


def _resume(ckpt_dir: Path, filename: str) -> dict[str, Any]:
    run = _build(ckpt_dir / "resumed")
    _load(run, ckpt_dir / filename)
    run["trainer"].run(run["data"])
    return run


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    run = _build(tmp_path_factory.mktemp("preempt_reference"))
    run["trainer"].run(run["data"])
    assert run["sp"].stop_reason is StopReason.MAX_EPOCHS and run["trainer"].state.iteration == BATCHES * EPOCHS
    return {"weight": run["model"].weight.detach().clone(), "bias": run["model"].bias.detach().clone()}


def _files(folder: Path) -> list[str]:
    return sorted((p.name for p in folder.glob("*.pt")), key=lambda n: int(n.split("_")[-1][:-3]))


def test_sigterm_stops_after_the_batch_saves_once_and_resumes_exactly(tmp_path, reference):
    run = _build(tmp_path, kill_at=(8,))
    previous = signal.getsignal(signal.SIGTERM)
    run["trainer"].run(run["data"])
    sp = run["sp"]
    assert (run["trainer"].state.iteration, run["trainer"].state.epoch) == (8, 2)
    assert sp.stop_reason is StopReason.PREEMPTED
    assert sp.stop_message == "SIGTERM received at epoch 1 (0-based), iteration 8: preempted, saving and stopping"
    assert sp.exit_code == PREEMPTED_EXIT_CODE == ignite_speed.PREEMPTED_EXIT_CODE == 75
    assert (sp.progress.epochs_done, sp.progress.batch_in_epoch) == (1, 2)  # the interrupted epoch does not count
    assert _files(tmp_path) == ["checkpoint_6.pt", "checkpoint_8.pt"]  # epoch 1's end, and the stop
    assert sp.preemption.saved == ["checkpoint_8.pt"] and sp.preemption.received == [("SIGTERM", 8)]
    assert run["saves"] == [6, 8]
    assert signal.getsignal(signal.SIGTERM) is previous and not sp.preemption.installed

    resumed = _resume(tmp_path, "checkpoint_8.pt")
    assert resumed["sp"].stop_reason is StopReason.MAX_EPOCHS and resumed["sp"].exit_code == 0
    assert resumed["trainer"].state.iteration == BATCHES * EPOCHS == resumed["sp"].progress.total_batches
    assert resumed["sp"].progress.epochs_done == EPOCHS
    assert torch.equal(resumed["model"].weight, reference["weight"])
    assert torch.equal(resumed["model"].bias, reference["bias"])


def test_a_checkpoint_that_saved_at_the_stop_is_not_saved_again_and_resumes_exactly(tmp_path, reference):
    """A Checkpoint every 4 iterations saved at 8 already (before the loop's decision on batch 8): no second
    save, and its checkpoint (which a signal came before) resumes without stopping again."""
    run = _build(tmp_path, kill_at=(8, 8), every=Events.ITERATION_COMPLETED(every=4))
    run["trainer"].run(run["data"])
    assert run["trainer"].state.iteration == 8 and run["sp"].stop_reason is StopReason.PREEMPTED
    assert _files(tmp_path) == ["checkpoint_4.pt", "checkpoint_8.pt"]
    guard = run["sp"].preemption
    assert guard.saved == [] and guard.received == [("SIGTERM", 8), ("SIGTERM", 8)]  # the second did nothing
    # not saved again at the stop (Ignite 0.5 tells by its SAVED_CHECKPOINT event, 0.4 by the Checkpoint's own list)
    assert run["saves"] == [4, 8]
    resumed = _resume(tmp_path, "checkpoint_8.pt")
    assert resumed["trainer"].state.iteration == BATCHES * EPOCHS
    assert resumed["sp"].stop_reason is StopReason.MAX_EPOCHS
    assert torch.equal(resumed["model"].weight, reference["weight"])


def test_a_signal_at_an_epochs_last_batch_ends_the_epoch_and_resumes_at_the_next(tmp_path, reference):
    run = _build(tmp_path, kill_at=(12,), sig=signal.SIGUSR1)
    run["trainer"].run(run["data"])
    assert run["trainer"].state.iteration == 12 and run["sp"].progress.epochs_done == 2
    assert run["sp"].stop_message.startswith("SIGUSR1 received at epoch 1 (0-based), iteration 12")
    assert _files(tmp_path) == ["checkpoint_6.pt", "checkpoint_12.pt"] and run["sp"].preemption.saved == []
    assert run["saves"] == [6, 12]
    resumed = _resume(tmp_path, "checkpoint_12.pt")
    assert resumed["trainer"].state.iteration == BATCHES * EPOCHS
    assert torch.equal(resumed["model"].weight, reference["weight"])


def test_preempted_is_urgent_min_epochs_do_not_defer_it(tmp_path):
    run = _build(tmp_path, kill_at=(2,), min_epochs=3)
    run["trainer"].run(run["data"])
    assert run["trainer"].state.iteration == 2 and run["sp"].stop_reason is StopReason.PREEMPTED


def test_handlers_installed_only_during_the_run_and_restored_after_it(tmp_path):
    seen: list[Any] = []

    def mine(signum: int, frame: Any) -> None:  # pragma: no cover  (never called)
        pass

    previous = signal.signal(signal.SIGUSR1, mine)
    try:
        run = _build(tmp_path, preemption_signals=["USR1", 15])
        run["trainer"].add_event_handler(
            Events.ITERATION_COMPLETED(once=3),
            lambda _: seen.append((signal.getsignal(signal.SIGUSR1), signal.getsignal(signal.SIGTERM))),
        )
        guard = run["sp"].preemption
        assert guard.signals == ("SIGUSR1", "SIGTERM") and not guard.installed
        run["trainer"].run(run["data"])
        assert seen == [(guard._on_signal, guard._on_signal)]
        assert signal.getsignal(signal.SIGUSR1) is mine and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        assert run["sp"].stop_reason is StopReason.MAX_EPOCHS and run["sp"].exit_code == 0
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_handlers_restored_when_the_run_raises():
    def step(engine: Engine, batch: Any) -> float:
        assert signal.getsignal(signal.SIGTERM) == guard._on_signal
        if engine.state.iteration == 3:
            raise ValueError("boom")
        return 0.0

    trainer = Engine(step)
    guard = PreemptionGuard().attach(trainer)
    LoopLimits(max_epochs=2).attach(trainer)
    with pytest.raises(ValueError, match="boom"):
        trainer.run(range(4))
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL and signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL
    assert not guard.installed


def test_no_guard_when_turned_off(tmp_path):
    for off in ((), [], None):
        run = _build(tmp_path / str(off), preemption_signals=off)
        assert run["sp"].preemption is None and run["sp"].cfg.preemption_signals == ()
        assert "preemption" not in run["sp"].loop.handlers.names()


def test_outside_the_main_thread_a_warning_and_no_handlers(tmp_path):
    run = _build(tmp_path)
    errors: list[BaseException] = []
    caught: list[Any] = []

    def train() -> None:
        import warnings

        try:
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                run["trainer"].run(run["data"])
                caught.extend(x for x in w if issubclass(x.category, RuntimeWarning))
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    thread = threading.Thread(target=train)
    thread.start()
    thread.join(60)
    assert not errors and run["sp"].stop_reason is StopReason.MAX_EPOCHS
    assert len(caught) == 1 and "outside the main thread" in str(caught[0].message)
    assert "SIGTERM, SIGUSR1" in str(caught[0].message)
    assert caught[0].filename == __file__  # the app's trainer.run, where the fix goes


def test_guard_refuses_no_signals_and_bad_ones():
    with pytest.raises(ValueError, match=r"^PreemptionGuard\(signals=\(\)\) handles no signal"):
        PreemptionGuard(())
    with pytest.raises(
        ValueError,
        match=r"^preemption_signals='TERN': 'TERN' is not a signal name; did you mean "
        r"'TERM'\?",
    ):
        PreemptionGuard("TERN")


def test_preempted_ranks_right_after_rank_failure_and_adds_no_per_batch_hook(tmp_path):
    from ignite_speed import StopController

    controller = StopController()
    for reason in (
        StopReason.USER_REQUEST,
        StopReason.EARLY_STOPPING,
        StopReason.NON_FINITE_LOSS,
        StopReason.PREEMPTED,
    ):
        controller.request(reason, reason.value)
    assert controller.sync(1).reason is StopReason.PREEMPTED
    controller = StopController()
    controller.request(StopReason.PREEMPTED, "preempted")
    controller.request(StopReason.RANK_FAILURE, "failed")
    assert controller.sync(1).reason is StopReason.RANK_FAILURE
    run = _build(tmp_path)
    hooks = run["sp"].loop.handlers.hooks
    assert [m.__self__.name for m in hooks["on_batch_end"]] == []
    assert [m.__self__.name for m in hooks["on_train_start"]] == ["preemption"]


def _with_validation(ckpt_dir: Path, kill_in_validation_at: int = 0, kill_at: tuple[int, ...] = ()) -> dict[str, Any]:
    """The regression of :func:`_build`, validated every 2 batches; the evaluator sends SIGTERM to this process
    during the validation run after training iteration ``kill_in_validation_at``."""
    evaluator = Engine(lambda engine, batch: None)
    validated: list[int] = []
    run = _build(ckpt_dir, kill_at=kill_at, evaluator=evaluator, val_check_interval=2, num_sanity_val_steps=0)
    trainer = run["trainer"]

    @evaluator.on(Events.ITERATION_COMPLETED)
    def _signal(engine: Engine) -> None:
        if trainer.state.iteration == kill_in_validation_at and engine.state.iteration == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    @evaluator.on(Events.COMPLETED)
    def _record(engine: Engine) -> None:
        validated.append(trainer.state.iteration)

    return {**run, "validated": validated}


def test_a_signal_during_a_validation_run_stops_after_that_batch_and_resumes_exactly(tmp_path, reference):
    run = _with_validation(tmp_path, kill_in_validation_at=8)
    run["trainer"].run(run["data"])
    sp = run["sp"]
    assert sp.stop_reason is StopReason.PREEMPTED and run["trainer"].state.iteration == 8
    assert run["validated"] == [2, 4, 6, 8]  # the run stopped after batch 8's validation, not after batch 9
    assert _files(tmp_path) == ["checkpoint_6.pt", "checkpoint_8.pt"]

    resumed = _with_validation(tmp_path / "resumed")
    _load(resumed, tmp_path / "checkpoint_8.pt")
    resumed["trainer"].run(resumed["data"])
    assert resumed["sp"].stop_reason is StopReason.MAX_EPOCHS
    assert resumed["validated"] == [10, 12, 14, 16, 18]  # batch 8's validation is not repeated
    assert torch.equal(resumed["model"].weight, reference["weight"])
    assert torch.equal(resumed["model"].bias, reference["bias"])


def test_a_signal_at_a_batch_with_a_validation_due_leaves_it_to_the_resumed_run(tmp_path, reference):
    run = _with_validation(tmp_path, kill_at=(8,))  # validation is due after batch 8; the signal comes in its step
    run["trainer"].run(run["data"])
    assert run["sp"].stop_reason is StopReason.PREEMPTED and run["trainer"].state.iteration == 8
    assert run["validated"] == [2, 4, 6]  # a preempted run does not validate at its stop
    assert _files(tmp_path) == ["checkpoint_6.pt", "checkpoint_8.pt"]  # the save at the stop

    resumed = _with_validation(tmp_path / "resumed")
    _load(resumed, tmp_path / "checkpoint_8.pt")
    resumed["trainer"].run(resumed["data"])
    assert resumed["validated"] == [8, 10, 12, 14, 16, 18]  # batch 8's validation runs first
    assert resumed["sp"].report().val_runs == 9  # 3 before the stop, 6 after
    assert torch.equal(resumed["model"].weight, reference["weight"])
