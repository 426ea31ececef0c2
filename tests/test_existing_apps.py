"""ignite-speed dropped into an existing Ignite app: the app's own terminate() calls, Checkpoint and
evaluator handlers never give a silently wrong result."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from ignite.engine import Events
from ignite.handlers import Checkpoint, DiskSaver
from ignite.handlers import EarlyStopping as IgniteEarlyStopping

from ignite_speed import StopReason, attach_speedups
from tests.helpers import loader, make_run, warns_accumulation


@pytest.mark.parametrize("where", ["epoch_end", "mid_epoch"])
def test_a_raw_terminate_is_its_own_reason_and_extend_continues_it_exactly(where):
    run = make_run()
    sp = attach_speedups(run.trainer, None, {"max_epochs": 3})
    if where == "epoch_end":
        run.trainer.add_event_handler(Events.EPOCH_COMPLETED(once=2), lambda e: e.terminate())
    else:
        run.trainer.add_event_handler(Events.ITERATION_COMPLETED(once=15), lambda e: e.terminate())
    run.trainer.run(loader(10))
    assert (sp.stop_reason, sp.stop_message) == (
        StopReason.TERMINATED,
        "trainer.terminate() was called by a handler or user code (not by ignite-speed)",
    )
    first = list(run.batches_per_epoch)
    assert first == ([10, 10] if where == "epoch_end" else [10, 5])
    assert sp.progress.epochs_done == 2  # a partial epoch ends and counts, as with request_stop()

    with pytest.raises(RuntimeError, match="already finished"):
        run.trainer.run(loader(10))
    sp.extend()
    run.trainer.run(loader(10))
    assert (sp.stop_reason, sp.progress.epochs_done, run.trainer.state.epoch) == (StopReason.MAX_EPOCHS, 3, 3)
    assert run.batches_per_epoch == first + [10]


def test_ignites_own_early_stopping_ends_the_run_as_terminated():
    run = make_run([1.0] * 10)
    sp = attach_speedups(run.trainer, run.evaluator, {"max_epochs": 10, "num_sanity_val_steps": 0}, val_data=loader(2))
    run.evaluator.add_event_handler(
        Events.COMPLETED,
        IgniteEarlyStopping(patience=2, score_function=lambda e: -e.state.metrics["val_loss"], trainer=run.trainer),
    )
    run.trainer.run(loader(5))
    assert (sp.stop_reason, sp.progress.epochs_done, run.val_at) == (StopReason.TERMINATED, 3, [5, 10, 15])


def test_a_checkpoint_without_the_speedups_state_is_refused_with_the_fix(tmp_path):
    run = make_run()
    attach_speedups(run.trainer, None, {"max_epochs": 6})
    run.trainer.add_event_handler(
        Events.EPOCH_COMPLETED,
        Checkpoint(
            {"trainer": run.trainer, "model": run.model}, DiskSaver(str(tmp_path), require_empty=False), n_saved=1
        ),
    )

    def crash(_):
        raise KeyboardInterrupt

    run.trainer.add_event_handler(Events.EPOCH_COMPLETED(once=3), crash)
    with pytest.raises(KeyboardInterrupt):
        run.trainer.run(loader(10))

    resumed = make_run()
    sp = attach_speedups(resumed.trainer, None, {"max_epochs": 6})
    Checkpoint.load_objects(
        {"trainer": resumed.trainer, "model": resumed.model}, torch.load(next(tmp_path.glob("*.pt")), weights_only=True)
    )
    with pytest.raises(
        RuntimeError,
        match=r"the trainer was restored to iteration 30 \(epoch 3\), but ignite-speed's "
        r"state was not .* add the Speedups object",
    ):
        resumed.trainer.run(loader(10))
    assert resumed.total == 0 and sp.stop_reason is StopReason.NOT_STOPPED


@pytest.mark.parametrize(
    "cfg, expected",
    [
        ({"max_epochs": 3}, 30),
        ({"max_epochs": 3, "accumulate_grad_batches": 3}, 12),  # ceil(10 / 3) steps per epoch
        ({"max_steps": 7}, 7),
        ({"max_epochs": 5, "max_steps": 12}, 12),
        ({"max_epochs": 2, "limit_train_batches": 0.5, "accumulate_grad_batches": 2}, 6),
        ({"fast_dev_run": 3, "accumulate_grad_batches": 2}, 2),
        ({"overfit_batches": 4, "max_epochs": 3}, 12),
        ({"max_epochs": -1}, float("inf")),
        ({"max_time": "00:00:01:00"}, float("inf")),
        ({}, 10_000),  # max_epochs unset: Lightning's 1000
    ],
)
def test_estimated_stepping_batches_follows_lightnings_rule(cfg, expected):
    # the expected values are what pytorch-lightning 2.6.6's Trainer.estimated_stepping_batches gives
    with warns_accumulation(cfg):
        sp = attach_speedups(make_run().trainer, None, cfg)
    assert sp.estimated_stepping_batches(loader(10)) == expected


def test_estimated_stepping_batches_sizes_a_one_cycle_schedule_that_ends_with_training():
    run = make_run()
    with warns_accumulation({"accumulate_grad_batches": 2}):
        sp = attach_speedups(
            run.trainer, None, {"max_epochs": 4, "limit_train_batches": 6, "accumulate_grad_batches": 2}
        )
    opt = torch.optim.SGD(run.model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=0.1, total_steps=sp.estimated_stepping_batches(loader(10))
    )
    run.trainer.add_event_handler(Events.ITERATION_COMPLETED(every=2), lambda _: (opt.step(), scheduler.step()))
    run.trainer.run(loader(10))
    assert scheduler.last_epoch == scheduler.total_steps == sp.global_step == 12


def test_a_progress_bar_shows_no_total_when_no_epoch_count_bounds_the_run():
    import time

    from ignite.engine import Engine

    from ignite_speed._compat import ProgressBar

    trainer = Engine(lambda e, b: time.sleep(0.01))
    sp = attach_speedups(trainer, None, {"max_time": {"seconds": 1}})
    descriptions: list[str] = []
    bar = ProgressBar(persist=False, disable=True)
    bar.attach(trainer)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda _: descriptions.append(bar.pbar.desc))
    trainer.add_event_handler(Events.EPOCH_COMPLETED(once=3), lambda _: sp.request_stop())
    trainer.run(list(range(4)))
    # max_time alone plans no number of epochs: no total (not "Epoch [2/2]", "[3/3]" or a moving estimate), and
    # not Ignite's one-epoch label "Iteration" in epoch 1; the batch total of an epoch stays
    assert descriptions == ["Epoch 1: "] * 4 + ["Epoch 2: "] * 4 + ["Epoch 3: "] * 4
    assert trainer.state.epoch == 3 and sp.stop_reason is StopReason.USER_REQUEST
    # extended with a planned total, the bar shows it again (the bar's own label and totals are given back)
    sp.extend(max_epochs=4, max_time=None)
    trainer.run(list(range(4)))
    assert descriptions[12:] == ["Epoch [4/4]: "] * 4
    assert "get_max_number_events" not in vars(
        next(h for h, *_ in trainer._event_handlers[Events.ITERATION_COMPLETED] if type(h).__name__ == "_OutputHandler")
    )


def test_a_trainer_metric_attached_after_attach_speedups_is_named_as_an_order_problem():
    from ignite.metrics import Average

    run = make_run()
    with pytest.raises(
        ValueError, match="a metric attached to the trainer after attach_speedups is not there yet: attach it first"
    ):
        attach_speedups(run.trainer, None, {"max_epochs": 2, "early_stopping": {"monitor": "train_loss"}})
    run = make_run()
    Average().attach(run.trainer, "train_loss")  # the fix: the metric first
    sp = attach_speedups(run.trainer, None, {"max_epochs": 2, "early_stopping": {"monitor": "train_loss"}})
    run.trainer.run(loader(3))
    assert sp.early_stopping.checks == 2


def test_an_apps_own_validation_handler_is_named_once(recwarn):
    run = make_run()
    val_loader = loader(2, 100.0)
    sp = attach_speedups(run.trainer, run.evaluator, {"max_epochs": 2, "num_sanity_val_steps": 0}, val_data=val_loader)

    @run.trainer.on(Events.EPOCH_COMPLETED)
    def log_validation_results(engine):  # as in Ignite's examples
        run.evaluator.run(val_loader)

    run.trainer.run(loader(4))
    # the schedule's run and the app's run each epoch: validated twice per epoch
    assert (run.val_at, sp.progress.val_runs) == ([4, 4, 8, 8], 2)
    warned = [w for w in recwarn.list if "also run during training" in str(w.message)]
    assert len(warned) == 1
    message = str(warned[0].message)
    assert (
        "by test_an_apps_own_validation_handler_is_named_once.<locals>.log_validation_results "
        "(test_existing_apps.py:" in message
    )
    assert "remove it (the schedule validates: val_check_interval=None (1.0), check_val_every_n_epoch=1)" in message
    assert warned[0].filename == __file__


def test_fast_dev_run_limits_every_run_of_the_evaluator():
    run = make_run()
    sp = attach_speedups(run.trainer, run.evaluator, {"fast_dev_run": 2}, val_data=loader(6))
    run.trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: run.evaluator.run(loader(9)))
    with pytest.warns(UserWarning, match="also run during training"):
        run.trainer.run(loader(10))
    run.evaluator.run(loader(9))  # after training too: the debug run stays fast
    assert (run.total, run.val_batches, sp.stop_reason) == (2, [2, 2, 2], StopReason.MAX_STEPS)


def test_concurrent_fast_dev_runs_in_two_threads_limit_their_own_engines_and_restore_engine_run():
    import threading

    from ignite.engine import Engine

    from ignite_speed._compat import engine_run_original

    real_run = Engine.__dict__["run"]
    a_started, b_started, a_ended = threading.Event(), threading.Event(), threading.Event()
    counted: dict[str, list[int]] = {"a": [], "b": []}
    errors: list[BaseException] = []

    def train(name: str, on_started: Any, before: Any, after: Any) -> None:
        try:
            run = make_run()
            sp = attach_speedups(run.trainer, None, {"fast_dev_run": 2, "preemption_signals": ()})
            other = Engine(lambda e, b: counted[name].append(1))
            run.trainer.add_event_handler(Events.STARTED, on_started)
            run.trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: other.run(loader(9)))
            before()
            run.trainer.run(loader(10))
            after()
            counted[name] = [len(counted[name]), run.trainer.state.iteration, sp.progress.total_batches]
        except BaseException as exc:  # (re-raised in the main thread below)
            errors.append(exc)
            for event in (a_started, b_started, a_ended):
                event.set()

    def seen_by_b() -> None:  # with only B's run open: the dispatcher stands in, engine_run_original bypasses it
        bound = engine_run_original(Engine(lambda e, b: None))
        counted["dispatcher"] = [Engine.__dict__["run"] is not real_run, bound.__func__ is real_run]

    # the order: A starts, B starts, A ends (B's run still open), B runs its other engine and ends
    a = threading.Thread(
        target=train, args=("a", lambda _: (a_started.set(), b_started.wait(10)), lambda: None, a_ended.set)
    )
    b = threading.Thread(
        target=train,
        args=(
            "b",
            lambda _: (b_started.set(), a_ended.wait(10), seen_by_b()),
            lambda: a_started.wait(10),
            lambda: None,
        ),
    )
    for thread in (a, b):
        thread.start()
    for thread in (a, b):
        thread.join(30)
    assert not errors, errors
    assert (a.is_alive(), b.is_alive()) == (False, False)
    # each thread's other engine: 2 of its 9 batches (B's too, run after A's debug run had ended)
    assert counted == {"a": [2, 2, 2], "b": [2, 2, 2], "dispatcher": [True, True]}
    assert Engine.__dict__["run"] is real_run  # the real run is back once both have ended
    after: list[int] = []
    Engine(lambda e, b: after.append(1)).run(loader(9))
    assert len(after) == 9


def test_step_flags_given_to_attach_speedups_for_a_plain_trainer_are_named():
    run = make_run()
    with (
        pytest.warns(
            UserWarning,
            match=r"precision='bf16-mixed', gradient_clip_val=1.0 given to attach_speedups is "
            r"not applied: this trainer was not made by ignite_speed.create_trainer",
        ),
        pytest.warns(UserWarning, match=r"precision='bf16' is a legacy spelling; using precision='bf16-mixed'"),
    ):
        attach_speedups(run.trainer, None, {"max_steps": 10, "precision": "bf16", "gradient_clip_val": 1.0})
    with pytest.warns(
        UserWarning,
        match="accumulate_grad_batches=4 given to attach_speedups for a trainer not made "
        "by ignite_speed.create_trainer: ignite-speed counts one optimizer step per 4",
    ):
        attach_speedups(make_run().trainer, None, {"max_steps": 10, "accumulate_grad_batches": 4})


def test_one_cfg_for_create_trainer_and_attach_speedups_stays_silent(recwarn):
    from ignite_speed import create_trainer

    cfg = {"max_epochs": 2, "precision": "bf16-mixed", "accumulate_grad_batches": 2, "gradient_clip_val": 1.0}
    model = torch.nn.Linear(1, 1)
    trainer = create_trainer(model, torch.optim.SGD(model.parameters(), lr=0.01), torch.nn.functional.mse_loss, cfg)
    sp = attach_speedups(trainer, None, cfg)
    trainer.run(loader(4))
    assert sp.global_step == 4 and not [str(w.message) for w in recwarn.list]


def test_fast_dev_run_rehearses_the_apps_checkpoints_in_a_temporary_folder(tmp_path):
    run = make_run()
    sp = attach_speedups(run.trainer, run.evaluator, {"fast_dev_run": 2}, val_data=loader(3))
    opt = torch.optim.SGD(run.model.parameters(), lr=0.1)
    saver = DiskSaver(str(tmp_path), require_empty=False)
    every_epoch = Checkpoint(
        {"trainer": run.trainer, "model": run.model, "optimizer": opt, "speedups": sp}, saver, n_saved=2
    )
    rare = Checkpoint({"model": run.model}, saver, filename_prefix="rare", n_saved=1)
    run.trainer.add_event_handler(Events.EPOCH_COMPLETED, every_epoch)
    run.trainer.add_event_handler(Events.ITERATION_COMPLETED(every=1000), rare)  # never fires in 2 batches
    weights = []
    run.trainer.add_event_handler(Events.COMPLETED, lambda _: weights.append(run.model.weight.detach().clone()))
    run.trainer.run(loader(10))
    assert list(tmp_path.iterdir()) == []  # the user's folder stays untouched
    assert every_epoch.save_handler is saver and rare.save_handler is saver  # the savers are put back
    assert every_epoch._saved == [] and rare._saved == []
    assert torch.equal(run.model.weight, weights[0])  # the objects have their state back after the load
    assert (run.trainer.state.iteration, sp.stop_reason, sp.progress.total_batches) == (2, StopReason.MAX_STEPS, 2)


def test_fast_dev_run_fails_at_once_on_a_checkpoint_that_cannot_be_loaded(tmp_path):
    class Broken:  # writes a state it cannot read back (a layout changed between save and load, say)
        def state_dict(self):
            return {"weights": 1}

        def load_state_dict(self, state):
            raise KeyError("the layout changed")

    run = make_run()
    attach_speedups(run.trainer, None, {"fast_dev_run": 2})
    run.trainer.add_event_handler(
        Events.EPOCH_COMPLETED,
        Checkpoint({"model": run.model, "extra": Broken()}, DiskSaver(str(tmp_path), require_empty=False)),
    )
    with pytest.raises(
        RuntimeError,
        match=r"fast_dev_run: the checkpoint that Checkpoint\(to_save=\['extra', "
        r"'model'\]\) writes could not be loaded back \(KeyError",
    ):
        run.trainer.run(loader(10))
    assert list(tmp_path.iterdir()) == [] and run.trainer.state.iteration == 2


def test_loop_flags_given_only_to_create_trainer_are_named_when_the_run_starts():
    from ignite_speed import create_trainer

    model = torch.nn.Linear(1, 1)
    cfg = {"max_epochs": 2, "early_stopping": {"monitor": "val_loss"}, "precision": "bf16-mixed"}
    trainer = create_trainer(model, torch.optim.SGD(model.parameters(), lr=0.01), torch.nn.functional.mse_loss, cfg)
    with pytest.warns(
        UserWarning,
        match=r"max_epochs=2, early_stopping=\{.*\} given to create_trainer is applied by "
        r"attach_speedups .* none is attached to this trainer",
    ) as record:
        trainer.run(loader(2), max_epochs=1)
    assert record[0].filename == __file__  # the user's trainer.run line
    assert trainer.state.epoch == 1  # (the flags did nothing, as the warning says)


def test_an_empty_epoch_of_a_re_iterable_counts_and_training_goes_on():
    from ignite.engine import Engine

    class ByEpoch:  # re-iterable (a new iterator per epoch); epoch index 1 has no data
        epoch = 0

        def __iter__(self):
            return iter([] if ByEpoch.epoch == 1 else range(3))

    trainer = Engine(lambda e, b: 0.0)
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: setattr(ByEpoch, "epoch", e.state.epoch - 1))
    batches = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: batches.append((e.state.epoch, e.state.batch)))
    sp = attach_speedups(trainer, None, {"max_epochs": 4})
    trainer.run(ByEpoch())
    # as in Lightning: the empty epoch counts, and the next epochs train
    assert (sp.stop_reason, sp.progress.epochs_done, sp.progress.total_batches) == (StopReason.MAX_EPOCHS, 4, 9)
    assert batches == [(1, 0), (1, 1), (1, 2), (3, 0), (3, 1), (3, 2), (4, 0), (4, 1), (4, 2)]


def test_a_refused_config_leaves_the_trainer_as_it_was_so_a_corrected_call_attaches():
    run = make_run()
    handlers_before = {e: len(h) for e, h in run.trainer._event_handlers.items()}
    with pytest.raises(ValueError, match="early_stopping monitors 'train_loss'"):
        attach_speedups(
            run.trainer, None, {"max_epochs": 2, "min_epochs": 2, "early_stopping": {"monitor": "train_loss"}}
        )
    assert {e: len(h) for e, h in run.trainer._event_handlers.items() if h} == {
        e: n for e, n in handlers_before.items() if n
    }
    assert "run" not in run.trainer.__dict__
    sp = attach_speedups(run.trainer, None, {"max_epochs": 2, "min_epochs": 1})  # corrected: attaches
    run.trainer.run(loader(3))
    assert (sp.stop_reason, run.total) == (StopReason.MAX_EPOCHS, 6)


# ---------------------------------------------------------------------------------------------- Ignite's examples
# An app as Ignite's mnist (with its tqdm logger) and cifar10 examples write it: create_supervised_trainer/evaluator,
# a RunningAverage of the loss, a ProgressBar, an evaluator run on the training data and on the validation data
# after every epoch, a Checkpoint; data made here in the same shapes (16 training batches, 4 validation batches).


def _example_app(train_batches: int = 16, dropout: bool = True):
    from ignite.engine import create_supervised_evaluator, create_supervised_trainer
    from ignite.metrics import Accuracy, Loss, RunningAverage
    from torch.utils.data import DataLoader, TensorDataset

    from ignite_speed._compat import ProgressBar

    torch.manual_seed(0)
    x, y = torch.randn(train_batches * 8 + 32, 6), torch.randint(0, 3, (train_batches * 8 + 32,))
    train_loader = DataLoader(TensorDataset(x[32:], y[32:]), batch_size=8, shuffle=True)
    val_loader = DataLoader(TensorDataset(x[:32], y[:32]), batch_size=8)
    layers = [torch.nn.Linear(6, 16), torch.nn.ReLU()] + ([torch.nn.Dropout(0.5)] if dropout else [])
    model = torch.nn.Sequential(*layers, torch.nn.Linear(16, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = create_supervised_trainer(model, optimizer, torch.nn.functional.cross_entropy)
    metrics = {"accuracy": Accuracy(), "nll": Loss(torch.nn.functional.cross_entropy)}
    evaluator = create_supervised_evaluator(model, metrics=metrics)
    RunningAverage(output_transform=lambda loss: loss).attach(trainer, "loss")
    ProgressBar(persist=False, disable=True).attach(trainer, metric_names="all")
    return model, optimizer, trainer, evaluator, metrics, train_loader, val_loader


def test_fast_dev_run_limits_an_apps_second_evaluator_and_says_so(capsys):
    from ignite.engine import Engine, create_supervised_evaluator

    model, optimizer, trainer, evaluator, metrics, train_loader, val_loader = _example_app()
    train_evaluator = create_supervised_evaluator(model, metrics=metrics)  # as docs/existing_apps.rst says
    train_eval_batches = []
    train_evaluator.add_event_handler(Events.COMPLETED, lambda e: train_eval_batches.append(e.state.iteration))

    @trainer.on(Events.EPOCH_COMPLETED)
    def log_training_results(engine):
        train_evaluator.run(train_loader)

    sp = attach_speedups(trainer, evaluator, {"fast_dev_run": True}, val_data=val_loader)
    run_before = Engine.run
    trainer.run(train_loader)
    # 1 training batch, 1 validation batch, and 1 batch of the app's training-data evaluation (it took all 16)
    assert (trainer.state.iteration, evaluator.state.iteration, train_eval_batches) == (1, 1, [1])
    assert sp.stop_reason is StopReason.MAX_STEPS and Engine.run is run_before  # (Engine.run given back)
    summary = capsys.readouterr().err  # printed: an app that never configured logging sees it
    assert summary.startswith(
        "ignite-speed: fast_dev_run=1 done (1 training batch, every engine run limited to 1 batch)\n"
    )
    assert (
        "other engines' runs limited to 1 batch: runs started by test_fast_dev_run_limits_an_apps_second_"
        "evaluator_and_says_so.<locals>.log_training_results (test_existing_apps.py:" in summary
    )
    assert "fast_dev_run projection of the full run" in summary
    train_evaluator.run(train_loader)  # after the debug run: not limited
    assert train_eval_batches[-1] == 16


@pytest.mark.parametrize("how", ["model=", "create_trainer"])
def test_after_a_validation_inside_an_epoch_the_model_is_back_in_the_mode_it_had(how):
    from ignite.engine import Engine

    model, optimizer, _, evaluator, _, train_loader, val_loader = _example_app(train_batches=4)
    modes = []

    def train_step(engine, batch):  # a hand-written step: it sets train mode once per epoch (below)
        modes.append(model.training)
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(batch[0]), batch[1])
        loss.backward()
        optimizer.step()
        return loss.item()

    cfg = {"max_epochs": 2, "val_check_interval": 0.5, "num_sanity_val_steps": 0}
    if how == "model=":
        trainer = Engine(train_step)
        sp = attach_speedups(trainer, evaluator, cfg, val_data=val_loader, model=model)
    else:  # (its step sets train mode itself: the mode is recorded before the step)
        from ignite_speed import create_trainer

        trainer = create_trainer(model, optimizer, torch.nn.functional.cross_entropy, cfg)
        trainer.add_event_handler(Events.ITERATION_STARTED, lambda _: modes.append(model.training))
        sp = attach_speedups(trainer, evaluator, cfg, val_data=val_loader)
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda _: model.train())
    trainer.run(train_loader)
    # validation after batches 2 and 4 of each epoch (the evaluator's step calls model.eval()); before, the mode
    # stayed eval for batches 3 and 4: [True, True, False, False, ...]
    assert (modes, sp.progress.val_runs) == ([True] * 8, 4)
    assert model.training  # after the epoch-end validation too


def test_a_model_in_eval_mode_before_validation_is_given_back_in_eval_mode():
    from ignite.engine import Engine

    model, _, _, evaluator, _, train_loader, val_loader = _example_app(train_batches=2)
    model.eval()
    modes = []
    trainer = Engine(lambda e, b: modes.append(model.training))
    sp = attach_speedups(
        trainer, evaluator, {"max_epochs": 1, "val_check_interval": 1}, val_data=val_loader, model=model
    )
    trainer.run(train_loader)
    assert (modes, model.training, sp.progress.val_runs) == ([False, False], False, 2)


def test_the_double_validation_warning_names_the_handler_to_remove(recwarn):
    model, optimizer, trainer, evaluator, metrics, train_loader, val_loader = _example_app(train_batches=4)

    @trainer.on(Events.EPOCH_COMPLETED)
    def log_training_results(engine):  # Ignite's examples: first, the same evaluator on the training data
        evaluator.run(train_loader)

    @trainer.on(Events.EPOCH_COMPLETED)
    def log_validation_results(engine):  # then on the validation data: the one that validates twice
        evaluator.run(val_loader)

    attach_speedups(trainer, evaluator, {"max_epochs": 2, "num_sanity_val_steps": 0}, val_data=val_loader)
    trainer.run(train_loader)
    warned = [str(w.message) for w in recwarn.list if "also run during training" in str(w.message)]
    assert len(warned) == 2  # once each
    prefix = "test_the_double_validation_warning_names_the_handler_to_remove.<locals>."
    assert f"on its val_data, by {prefix}log_validation_results (test_existing_apps.py:" in warned[1]
    assert "remove it (the schedule validates: val_check_interval=None (1.0), check_val_every_n_epoch=1)" in warned[1]
    assert f"on data other than val_data, by {prefix}log_training_results (test_existing_apps.py:" in warned[0]
    assert "give that run an Engine of its own" in warned[0]
    assert "(evaluator.state.metrics hold the last run's: read after trainer.run, they can be that data's" in warned[0]


def test_the_overfit_batches_warning_points_at_the_users_line():
    model, optimizer, trainer, evaluator, metrics, train_loader, val_loader = _example_app(train_batches=4)
    attach_speedups(trainer, evaluator, {"overfit_batches": 2, "max_epochs": 1}, val_data=val_loader)
    with pytest.warns(UserWarning, match="overfit_batches: turning off shuffling of the train loader") as record:
        trainer.run(train_loader)
    warned = [w for w in record.list if "overfit_batches" in str(w.message)]
    assert [(w.filename, w.lineno) for w in warned] == [(__file__, warned[0].lineno)]
    with open(__file__) as source:
        assert source.readlines()[warned[0].lineno - 1].strip() == "trainer.run(train_loader)"


def test_a_migrated_trainer_call_with_several_out_of_scope_flags_is_refused_in_one_error():
    lightning_trainer_kwargs = {
        "max_epochs": 3,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": True,
        "enable_model_summary": False,
        "deterministic": True,
        "log_every_n_steps": 10,
    }
    with pytest.raises(ValueError) as refused:
        attach_speedups(make_run().trainer, None, lightning_trainer_kwargs)
    message = str(refused.value)
    flags = [
        "logger",
        "enable_checkpointing",
        "enable_progress_bar",
        "enable_model_summary",
        "deterministic",
        "log_every_n_steps",
    ]
    assert message.startswith(f"6 flags are refused ({', '.join(map(repr, flags))}): remove or fix them all")
    for flag in flags:
        assert f"\n  - {flag!r}: a Lightning Trainer flag outside the scope; in Ignite: " in message
    assert "attach ignite.handlers.ProgressBar() to the trainer" in message


def test_fast_dev_run_gives_engine_run_back_after_a_raise_and_leaves_other_threads_engines_whole():
    import threading

    from ignite.engine import Engine

    run_before = Engine.run
    other_thread_batches = []

    def other_thread():  # an engine of another thread (a parallel trial, say) while the debug run runs
        engine = Engine(lambda e, b: None)
        other_thread_batches.append(engine.run(range(7)).iteration)

    def crash(_):
        raise KeyboardInterrupt

    run = make_run()
    attach_speedups(run.trainer, None, {"fast_dev_run": 2})
    run.trainer.add_event_handler(
        Events.EPOCH_COMPLETED, lambda _: [t.start() or t.join() for t in [threading.Thread(target=other_thread)]]
    )
    run.trainer.add_event_handler(Events.EPOCH_COMPLETED, crash)
    with pytest.raises(KeyboardInterrupt):
        run.trainer.run(loader(10))
    assert (Engine.run, other_thread_batches, run.total) == (run_before, [7], 2)
