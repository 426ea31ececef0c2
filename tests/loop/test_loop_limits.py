"""Exact-number tests of loop limits, batch limits, validation scheduling, overfit_batches and
fast_dev_run against Lightning 2.6's numbers (reference §12; case numbers in the test names)."""

from __future__ import annotations

import datetime
import warnings

import pytest
import torch
from ignite.engine import Events

from ignite_speed import StopReason, attach_speedups
from tests.helpers import loader, make_run, stream_loader, warns_accumulation


def go(n_train=10, n_val=5, n_test=5, metric_seq=None, train=None, val=None, run_kwargs=None, test=False, **cfg):
    run = make_run(metric_seq)
    val_data = val if val is not None else loader(n_val, 1000.0)
    sp = attach_speedups(run.trainer, run.evaluator, cfg, val_data=val_data)
    train_data = train if train is not None else loader(n_train)
    run.trainer.run(train_data, **(run_kwargs or {}))
    if test:
        sp.test(run.tester, loader(n_test, 2000.0))
    return run, sp


# ---------------------------------------------------------------- limits (cases 1-9)
def test_case1_fractional_train_limit():
    run, sp = go(limit_train_batches=0.25, max_epochs=3)
    assert run.batches_per_epoch == [2, 2, 2]
    assert sp.global_step == 6
    assert run.val_at == [2, 4, 6]
    assert run.sanity == 2
    assert run.trainer.state.epoch_length == 2
    assert sp.stop_reason is StopReason.MAX_EPOCHS


def test_case2_fraction_below_one_batch_is_refused_before_training():
    run = make_run()
    sp = attach_speedups(run.trainer, run.evaluator, dict(limit_train_batches=0.05), val_data=loader(5))
    with pytest.raises(ValueError, match=r"limit_train_batches=0\.05.*10 batches"):
        run.trainer.run(loader(10))
    assert run.total == 0 and run.eval_calls == 0
    assert sp.progress.total_batches == 0


@pytest.mark.parametrize("limit", [0, 0.0])
def test_case3_zero_train_limit(limit):
    run, sp = go(limit_train_batches=limit, max_epochs=3)
    assert run.total == 0 and run.val_at == [] and run.sanity == 2 and run.epoch_completed == 0
    assert sp.stop_reason is StopReason.NO_TRAINING


@pytest.mark.parametrize("limit,expected", [(20, 10), (1, 1), (1.0, 10), (3.0, 3), (0.99, 9), (0.1, 1)])
def test_case4_limit_values(limit, expected):
    run, _ = go(limit_train_batches=limit, max_epochs=1)
    assert run.total == expected


@pytest.mark.parametrize("limit,exc", [(2.5, ValueError), (-1, ValueError), (True, TypeError), ("3", TypeError)])
def test_case4_bad_limits_refused_in_config(limit, exc):
    run = make_run()
    with pytest.raises(exc, match="limit_train_batches"):
        attach_speedups(run.trainer, run.evaluator, dict(limit_train_batches=limit), val_data=loader(5))


def test_case5_val_limits():
    run, _ = go(limit_val_batches=0.5, max_epochs=1)
    assert run.val_batches == [2] and run.sanity == 2
    run = make_run()
    with pytest.raises(ValueError, match=r"limit_val_batches=0\.1"):
        attach_speedups(run.trainer, run.evaluator, dict(limit_val_batches=0.1), val_data=loader(5))
    run, _ = go(limit_val_batches=0, max_epochs=2)
    assert run.val_at == [] and run.sanity == 0 and run.total == 20


def test_case7_test_limits():
    run, _ = go(limit_test_batches=0.4, max_epochs=1, test=True)
    assert run.test_batches == 2
    run, _ = go(limit_test_batches=0, max_epochs=1, test=True)
    assert run.test_batches == 0


def test_case8_iterable_train_loader():
    run, _ = go(train=stream_loader(10), limit_train_batches=4, max_epochs=2)
    assert run.batches_per_epoch == [4, 4]
    assert run.val_at == [4, 8]
    run = make_run()
    attach_speedups(run.trainer, run.evaluator, dict(limit_train_batches=0.5), val_data=loader(5))
    with pytest.raises(ValueError, match="no length"):
        run.trainer.run(stream_loader(10))


def test_case8_iterable_val_loader():
    run, _ = go(val=stream_loader(5, 1000.0), limit_val_batches=3, max_epochs=1)
    assert run.val_batches == [3]
    run = make_run()
    with pytest.raises(ValueError, match="no length"):
        attach_speedups(run.trainer, run.evaluator, dict(limit_val_batches=0.5), val_data=stream_loader(5))


def test_case9_limit_with_shuffle_draws_a_new_subset_each_epoch():
    torch.manual_seed(0)
    run, _ = go(train=loader(10, shuffle=True), limit_train_batches=0.2, max_epochs=3)
    assert run.batches_per_epoch == [2, 2, 2]
    assert len(set(run.first_samples.values())) > 1


def test_fresh_iterator_each_epoch_without_shuffle():
    # Ignite's epoch_length alone would continue the iterator (batches 0,1 | 2,3 | 4,5).
    run, _ = go(limit_train_batches=2, max_epochs=3)
    assert run.first_samples == {1: 0.0, 2: 0.0, 3: 0.0}


def test_batches_fetched_equal_batches_used():
    fetched = [0]

    class Counting(torch.utils.data.Dataset):
        def __len__(self):
            return 20

        def __getitem__(self, i):
            fetched[0] += 1
            return torch.tensor([float(i)]), torch.tensor([float(i)])

    data = torch.utils.data.DataLoader(Counting(), batch_size=2)
    run, _ = go(train=data, limit_train_batches=3, max_epochs=4, limit_val_batches=0)
    assert run.total == 12
    assert fetched[0] == 12 * 2  # samples of the 12 batches used, nothing more (no workers: no prefetch)


# ---------------------------------------------------------------- validation scheduling (cases 10-24)
def test_case10_quarter_interval_gives_five_runs():
    run, _ = go(val_check_interval=0.25, max_epochs=2)
    assert run.val_at == [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]
    assert sum(run.val_batches) == 50


def test_case11_quarter_of_eight():
    run, _ = go(n_train=8, val_check_interval=0.25, max_epochs=1)
    assert run.val_at == [2, 4, 6, 8]


def test_case12_point_three():
    run, _ = go(val_check_interval=0.3, max_epochs=1)
    assert run.val_at == [3, 6, 9]


@pytest.mark.parametrize("interval", [0.0, 0.05])
def test_case13_tiny_fraction_is_every_batch(interval):
    run, _ = go(val_check_interval=interval, max_epochs=1)
    assert run.val_at == list(range(1, 11))


def test_case14_int_interval_resets_each_epoch():
    run, _ = go(val_check_interval=3, max_epochs=2)
    assert run.val_at == [3, 6, 9, 13, 16, 19]


def test_case15_int_interval_longer_than_epoch():
    run = make_run()
    attach_speedups(run.trainer, run.evaluator, dict(val_check_interval=11, max_epochs=2), val_data=loader(5))
    with pytest.raises(ValueError, match="val_check_interval=11"):
        run.trainer.run(loader(10))
    assert run.total == 0
    run, _ = go(val_check_interval=11, limit_val_batches=0, max_epochs=2)
    assert run.total == 20


def test_case16_interval_across_epochs():
    run, _ = go(val_check_interval=15, check_val_every_n_epoch=None, max_epochs=3)
    assert run.val_at == [15, 30]


def test_case17_interval_across_limited_epochs():
    run, _ = go(val_check_interval=3, check_val_every_n_epoch=None, limit_train_batches=4, max_epochs=3)
    assert run.val_at == [3, 6, 9, 12]


def test_case18_fraction_needs_epochs():
    run = make_run()
    with pytest.raises(ValueError, match="check_val_every_n_epoch=None"):
        attach_speedups(run.trainer, run.evaluator, dict(check_val_every_n_epoch=None, val_check_interval=0.5))


def test_case19_every_n_epochs():
    run, _ = go(check_val_every_n_epoch=3, max_epochs=7)
    assert run.val_at == [30, 60] and run.sanity == 2
    run, _ = go(check_val_every_n_epoch=5, max_epochs=1)
    assert run.val_at == [] and run.sanity == 2


@pytest.mark.parametrize("value,exc", [(0, ValueError), (2.0, TypeError), (-1, ValueError)])
def test_case20_bad_every_n_epochs(value, exc):
    run = make_run()
    with pytest.raises(exc, match="check_val_every_n_epoch"):
        attach_speedups(run.trainer, run.evaluator, dict(check_val_every_n_epoch=value))


def test_case21_every_two_epochs_half_interval():
    run, _ = go(check_val_every_n_epoch=2, val_check_interval=0.5, max_epochs=4)
    assert run.val_at == [15, 20, 35, 40]


def test_case22_iterable_train_validation():
    run, _ = go(train=stream_loader(10), max_epochs=2)
    assert run.val_at == [10, 20]
    run, _ = go(train=stream_loader(10), val_check_interval=3, max_epochs=1)
    assert run.val_at == [3, 6, 9]
    run = make_run()
    attach_speedups(run.trainer, run.evaluator, dict(val_check_interval=0.5), val_data=loader(5))
    with pytest.raises(ValueError, match="no length"), pytest.warns(UserWarning, match="max_epochs was not set"):
        run.trainer.run(stream_loader(10))


@pytest.mark.parametrize("sanity_steps,expected", [(-1, 5), (10, 5), (0, 0), (2, 2)])
def test_case23_sanity_steps(sanity_steps, expected):
    run, _ = go(num_sanity_val_steps=sanity_steps, max_epochs=1)
    assert run.sanity == expected


def test_case23_sanity_with_val_limit_and_bad_value():
    run, _ = go(num_sanity_val_steps=2, limit_val_batches=1, max_epochs=1)
    assert run.sanity == 1
    run = make_run()
    with pytest.raises(ValueError, match="num_sanity_val_steps=-5"):
        attach_speedups(run.trainer, run.evaluator, dict(num_sanity_val_steps=-5))


def test_sanity_check_fires_no_evaluator_handler_and_keeps_rng():
    run = make_run()
    attach_speedups(run.trainer, run.evaluator, dict(max_epochs=0, num_sanity_val_steps=-1), val_data=loader(5))
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    run.trainer.run(loader(10))
    assert torch.rand(1).item() == expected.item()
    assert run.sanity == 5 and run.val_at == [] and run.val_batches == []


def test_case24_time_interval():
    run, _ = go(val_check_interval="00:01:00:00", max_epochs=2)
    assert run.val_at == []
    run, _ = go(n_train=3, val_check_interval=datetime.timedelta(0), check_val_every_n_epoch=2, max_epochs=4)
    assert run.val_at == [4, 5, 6, 10, 11, 12]


# ---------------------------------------------------------------- epoch/step/time limits (cases 25-37)
def test_case25_default_max_epochs_is_1000_with_warning():
    with pytest.warns(UserWarning, match="1000 epochs"):
        run, sp = go(limit_train_batches=1, num_sanity_val_steps=0, limit_val_batches=0)
    assert run.total == 1000 and sp.stop_reason is StopReason.MAX_EPOCHS


def test_case26_max_steps_only():
    run, sp = go(max_steps=25)
    assert run.batches_per_epoch == [10, 10, 5]
    assert run.val_at == [10, 20]
    assert sp.progress.epochs_done == 3 and run.trainer.state.epoch == 3
    assert sp.stop_reason is StopReason.MAX_STEPS


@pytest.mark.parametrize("flag", ["max_epochs", "max_steps"])
def test_case27_zero(flag):
    run, sp = go(**{flag: 0})
    assert run.total == 0 and run.sanity == 2 and sp.stop_reason is StopReason.NO_TRAINING


@pytest.mark.parametrize("flag", ["max_epochs", "max_steps"])
def test_case28_below_minus_one(flag):
    run = make_run()
    with pytest.raises(ValueError, match=f"{flag}=-2"):
        attach_speedups(run.trainer, run.evaluator, {flag: -2})


def test_case29_maxima_win_over_minima():
    run, _ = go(min_epochs=3, max_epochs=2)
    assert run.total == 20
    run, sp = go(min_steps=30, max_steps=15)
    assert run.total == 15 and sp.global_step == 15


def test_case30_accumulation_counts_steps():
    with warns_accumulation(3):
        run, sp = go(accumulate_grad_batches=3, max_epochs=2)
    assert sp.global_step == 8 and run.total == 20
    with warns_accumulation(3):
        run, sp = go(accumulate_grad_batches=3, max_steps=5)
    assert run.total == 13 and sp.global_step == 5


def test_case31_validation_counts_batches_not_steps():
    steps = []
    run = make_run()
    with warns_accumulation(4):
        sp = attach_speedups(
            run.trainer,
            run.evaluator,
            dict(accumulate_grad_batches=4, val_check_interval=0.5, max_epochs=1),
            val_data=loader(5),
        )
    run.evaluator.add_event_handler(Events.COMPLETED, lambda e: steps.append(sp.global_step))
    run.trainer.run(loader(10))
    assert run.val_at == [5, 10] and steps == [1, 3]


def test_case32_max_steps_mid_epoch_skips_validation():
    run, sp = go(max_steps=5)
    assert run.total == 5 and run.val_at == [] and run.epoch_completed == 1
    run, _ = go(max_steps=5, val_check_interval=5)
    assert run.val_at == [5]


def test_case33_max_time_with_min_epochs():
    run = make_run()
    sp = attach_speedups(run.trainer, run.evaluator, dict(max_time={"seconds": 0.2}, min_epochs=3), val_data=loader(5))
    run.trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: __import__("time").sleep(0.02))
    run.trainer.run(loader(10))
    assert run.total == 30 and run.val_at == [10, 20, 30]
    assert sp.stop_reason is StopReason.MAX_TIME


def test_case33_max_time_mid_epoch_runs_one_extra_validation():
    run = make_run()
    sp = attach_speedups(run.trainer, run.evaluator, dict(max_time=0.25), val_data=loader(5))
    run.trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: __import__("time").sleep(0.02))
    run.trainer.run(loader(10))
    assert sp.stop_reason is StopReason.MAX_TIME
    assert 5 <= run.total < 30
    assert run.val_at[-1] == run.total  # the extra validation at the stopping batch


def test_case34_zero_time_budget_and_bad_string():
    run, sp = go(max_time="00:00:00:00")
    assert run.total == 0 and run.sanity == 2 and sp.stop_reason is StopReason.MAX_TIME
    run = make_run()
    with pytest.raises(ValueError, match="max_time='1:2:3:4'"):
        attach_speedups(run.trainer, run.evaluator, dict(max_time="1:2:3:4"))


def _stop_at(sp, run, epoch, batch_idx):
    def h(engine):
        if engine.state.epoch == epoch and sp.progress.batch_in_epoch == batch_idx + 1:
            sp.request_stop("test")

    run.trainer.add_event_handler(Events.ITERATION_COMPLETED, h)


def test_case35_user_stop_request():
    for cfg, total, vals in [
        (dict(max_epochs=5), 4, [4]),
        (dict(max_epochs=5, check_val_every_n_epoch=2), 4, []),
        (dict(max_epochs=5, min_epochs=2), 20, [10, 20]),
    ]:
        run = make_run()
        sp = attach_speedups(run.trainer, run.evaluator, cfg, val_data=loader(5))
        _stop_at(sp, run, 1, 3)
        run.trainer.run(loader(10))
        assert (run.total, run.val_at) == (total, vals), cfg
        assert sp.stop_reason is StopReason.USER_REQUEST


def test_case36_user_stop_with_min_steps_and_accumulation():
    run = make_run()
    with warns_accumulation(2):
        sp = attach_speedups(
            run.trainer, run.evaluator, dict(max_epochs=5, min_steps=7, accumulate_grad_batches=2), val_data=loader(5)
        )
    _stop_at(sp, run, 1, 1)
    run.trainer.run(loader(10))
    assert run.total == 14 and sp.global_step == 7 and run.val_at == [10, 14]


# ---------------------------------------------------------------- stopping an epoch early (cases 38-41)
def _end_epoch_at(sp, run, batch_idx):
    def h(engine):
        if sp.progress.batch_in_epoch == batch_idx:  # not yet counted: ITERATION_STARTED
            sp.end_epoch()

    run.trainer.add_event_handler(Events.ITERATION_STARTED, h)


def test_case38_end_epoch_at_batch_3():
    run = make_run()
    sp = attach_speedups(run.trainer, run.evaluator, dict(max_epochs=3), val_data=loader(5))
    _end_epoch_at(sp, run, 3)
    run.trainer.run(loader(10))
    assert run.batches_per_epoch == [3, 3, 3] and sp.global_step == 9 and run.val_at == []
    assert run.epoch_completed == 3 and sp.progress.total_batches == 12
    assert sp.stop_reason is StopReason.MAX_EPOCHS


def test_case39_end_epoch_every_first_batch():
    run = make_run()
    sp = attach_speedups(run.trainer, run.evaluator, dict(max_epochs=3), val_data=loader(5))
    _end_epoch_at(sp, run, 0)
    run.trainer.run(loader(10))
    assert run.total == 0 and sp.global_step == 0 and run.epoch_completed == 3 and run.val_at == []


def test_case40_end_epoch_at_last_batch():
    run = make_run()
    sp = attach_speedups(run.trainer, run.evaluator, dict(max_epochs=2), val_data=loader(5))
    _end_epoch_at(sp, run, 9)
    run.trainer.run(loader(10))
    assert run.batches_per_epoch == [9, 9] and run.val_at == []


def test_case41_end_epoch_keeps_earlier_validation():
    run = make_run()
    sp = attach_speedups(run.trainer, run.evaluator, dict(max_epochs=1, val_check_interval=2), val_data=loader(5))
    _end_epoch_at(sp, run, 3)
    run.trainer.run(loader(10))
    assert run.total == 3 and run.val_at == [2]


def test_end_epoch_outside_iteration_handlers_is_refused():
    run = make_run()
    sp = attach_speedups(run.trainer, run.evaluator, dict(max_epochs=1), val_data=loader(5))
    run.trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: sp.end_epoch())
    with pytest.raises(RuntimeError, match="end_epoch"):
        run.trainer.run(loader(10))


# ---------------------------------------------------------------- overfit / fast_dev_run (cases 65-72)
def test_case65_overfit_turns_shuffling_off():
    torch.manual_seed(0)
    run = make_run()
    with pytest.warns(UserWarning, match="overfit_batches"):
        sp = attach_speedups(
            run.trainer, run.evaluator, dict(overfit_batches=2, max_epochs=3), val_data=loader(5, 1000.0, shuffle=True)
        )
        run.trainer.run(loader(10, shuffle=True))
    sp.test(run.tester, loader(5))
    assert run.batches_per_epoch == [2, 2, 2] and run.val_batches == [2, 2, 2]
    assert set(run.first_samples.values()) == {0.0} and set(run.val_samples) == {1000.0}
    assert run.test_batches == 5


def test_case66_overfit_fraction_and_errors():
    run, _ = go(overfit_batches=0.25, max_epochs=1)
    assert run.total == 2 and run.val_batches == [1] and run.sanity == 1
    run = make_run()
    with pytest.raises(ValueError, match="overfit_batches"):
        attach_speedups(run.trainer, run.evaluator, dict(overfit_batches=-1))


def test_case67_overfit_overrides_limits():
    run, _ = go(overfit_batches=2, limit_train_batches=5, limit_val_batches=4, max_epochs=1)
    assert run.total == 2 and run.val_batches == [2]


def test_case68_overfit_with_fast_dev_run():
    run, _ = go(overfit_batches=3, fast_dev_run=2, test=True)
    assert run.total == 2 and run.val_at == [] and run.test_batches == 2


def test_case69_fast_dev_run_overrides():
    run, sp = go(
        fast_dev_run=True,
        val_check_interval=0.25,
        max_epochs=5,
        limit_train_batches=0.5,
        num_sanity_val_steps=3,
        test=True,
    )
    assert run.total == 1 and run.val_batches == [1] and run.sanity == 0 and run.test_batches == 1
    assert sp.stop_reason is StopReason.MAX_STEPS


def test_case70_fast_dev_run_counts():
    run, sp = go(fast_dev_run=3, test=True)
    assert run.total == 3 and run.val_batches == [3] and run.test_batches == 3 and sp.global_step == 3
    run, _ = go(fast_dev_run=20, test=True)
    assert run.total == 10 and run.val_batches == [5] and run.test_batches == 5


@pytest.mark.parametrize("value,exc", [(-1, ValueError), (2.7, TypeError), ("2", TypeError)])
def test_case71_bad_fast_dev_run(value, exc):
    run = make_run()
    with pytest.raises(exc, match="fast_dev_run"):
        attach_speedups(run.trainer, run.evaluator, dict(fast_dev_run=value))


def test_case71_fast_dev_run_zero_is_off():
    run, _ = go(fast_dev_run=0, max_epochs=1)
    assert run.total == 10


def test_case72_fast_dev_run_interactions():
    with warns_accumulation(2):
        run, sp = go(fast_dev_run=2, accumulate_grad_batches=2)
    assert run.total == 2 and sp.global_step == 1
    run, _ = go(fast_dev_run=2, limit_val_batches=0)
    assert run.val_batches == [2]
    run, _ = go(fast_dev_run=True, max_time="00:00:00:00")
    assert run.total == 0


# ---------------------------------------------------------------- run() arguments and re-runs
def test_run_max_epochs_used_when_config_has_none():
    run, sp = go(run_kwargs=dict(max_epochs=2))
    assert run.total == 20 and sp.stop_reason is StopReason.MAX_EPOCHS


def test_run_max_epochs_conflicting_with_config_is_refused():
    run = make_run()
    attach_speedups(run.trainer, run.evaluator, dict(max_epochs=3), val_data=loader(5))
    with pytest.raises(ValueError, match="conflicts"):
        run.trainer.run(loader(10), max_epochs=5)


def test_run_epoch_length_is_the_data_length():
    run, _ = go(train=stream_loader(50), limit_train_batches=0.5, max_epochs=2, run_kwargs=dict(epoch_length=10))
    assert run.batches_per_epoch == [5, 5]


def test_finished_run_is_not_trained_on_silently_and_can_be_extended():
    run, sp = go(max_epochs=2)
    with pytest.raises(RuntimeError, match="already finished"):
        run.trainer.run(loader(10))
    sp.extend(max_epochs=3)
    run.trainer.run(loader(10))
    assert run.total == 30 and sp.progress.epochs_done == 3


def test_restart_after_reset():
    run, sp = go(max_epochs=1)
    run.trainer.state.max_epochs = None
    run.trainer.run(loader(10))
    assert run.total == 20 and sp.progress.total_batches == 10


def test_attach_twice_is_refused():
    run = make_run()
    attach_speedups(run.trainer, run.evaluator, {})
    with pytest.raises(RuntimeError, match="already"):
        attach_speedups(run.trainer, run.evaluator, {})


def test_state_dict_is_plain_data(tmp_path):
    run, sp = go(max_epochs=2)
    path = tmp_path / "sp.pt"
    torch.save(sp.state_dict(), path)
    loaded = torch.load(path, weights_only=True)
    assert loaded["loop"]["state"]["progress"]["total_batches"] == 20
    assert loaded["loop"]["controller"]["final"]["reason"] == "max_epochs"
    run2 = make_run()
    sp2 = attach_speedups(run2.trainer, run2.evaluator, dict(max_epochs=2))
    sp2.load_state_dict(loaded)
    assert sp2.stop_reason is StopReason.MAX_EPOCHS and sp2.progress.epochs_done == 2


def test_no_warning_noise_on_plain_run():
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        go(max_epochs=1)
