"""The per-flag validators of ``ignite_speed.config``: what each accepts, the exact message of what it
refuses, and that ``SpeedConfig`` and the standalone handlers refuse a bad value with the same message."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import re
import warnings

import pytest
from ignite.engine import Engine

from ignite_speed.config import BatchLimit, SpeedConfig
from ignite_speed.config.checks import check_bool, check_int, did_you_mean
from ignite_speed.config.devices import (
    check_strategy_fits_accelerator,
    parse_devices,
    validate_accelerator,
    validate_deepspeed_config,
    validate_device_flags,
    validate_master_address,
    validate_node_rank,
    validate_strategy,
)
from ignite_speed.config.effective import resolve_max_epochs, resolve_min_epochs, resolve_min_steps
from ignite_speed.config.flags import (
    check_fraction_interval_has_epochs,
    check_max_time_mode_needs_max_time,
    check_reserve_below_max_time,
    validate_check_val_every_n_epoch,
    validate_early_stopping_flag,
    validate_fast_dev_run,
    validate_loop_limits,
    validate_max_epochs,
    validate_max_steps,
    validate_max_time_flags,
    validate_max_time_mode,
    validate_min_epochs,
    validate_min_steps,
    validate_num_sanity_val_steps,
    validate_overfit_batches,
    validate_val_check_interval,
    validate_validation_schedule,
)
from ignite_speed.config.legacy import map_legacy, unknown_flag_message
from ignite_speed.config.precision import (
    parse_precision,
    validate_accumulate_grad_batches,
    validate_amp_flags,
    validate_gradient_clip_algorithm,
    validate_gradient_clip_val,
)
from ignite_speed.config.slices import kwargs_of
from ignite_speed.config.sources import flags_from_source
from ignite_speed.handlers import LoopLimits, TimeBudget, ValidationSchedule

MINUTE = datetime.timedelta(minutes=1)
TIME_MODES = (
    "'step' (check after every batch), 'epoch' (at epoch ends) or 'fit' (stop at the last epoch boundary "
    "after which another epoch would not fit)"
)


def refuses(error: type[Exception], message: str):
    """``pytest.raises`` for exactly ``message``."""
    return pytest.raises(error, match=f"^{re.escape(message)}$")


# ---------------------------------------------------------------------------------------------- shared checks
def test_check_int_and_check_bool():
    assert check_int(3, "n", minimum=1) == 3 and check_int(None, "n", allow_none=True) is None
    with refuses(TypeError, "n=None is not allowed; accepted: an int >= 1"):
        check_int(None, "n", minimum=1)
    with refuses(TypeError, "n=True has type bool; accepted: an int"):
        check_int(True, "n")
    with refuses(ValueError, "n=0 is out of range; accepted: one or more"):
        check_int(0, "n", minimum=1, accepted="one or more")
    assert check_bool(False, "b") is False
    with refuses(TypeError, "b=1 has type int; accepted: True or False"):
        check_bool(1, "b")
    assert did_you_mean("stpe", ["step", "epoch"]) == "; did you mean 'step'?" and did_you_mean("x", ["step"]) == ""


# ---------------------------------------------------------------------------------------------- loop limits
@pytest.mark.parametrize(
    "validate, accepted",
    [
        (validate_max_epochs, [None, -1, 0, 7]),
        (validate_max_steps, [-1, 0, 7]),
        (validate_min_epochs, [None, 0, 7]),
        (validate_min_steps, [None, 0, 7]),
    ],
)
def test_loop_limit_validators_accept(validate, accepted):
    assert [validate(value) for value in accepted] == accepted


@pytest.mark.parametrize(
    "validate, value, error, message",
    [
        (
            validate_max_epochs,
            -2,
            ValueError,
            "max_epochs=-2 is out of range; accepted: None, -1 (no limit) or an int >= 0",
        ),
        (
            validate_max_epochs,
            2.0,
            TypeError,
            "max_epochs=2.0 has type float; accepted: None, -1 (no limit) or an int >= 0",
        ),
        (validate_max_steps, None, TypeError, "max_steps=None is not allowed; accepted: -1 (no limit) or an int >= 0"),
        (validate_max_steps, -3, ValueError, "max_steps=-3 is out of range; accepted: -1 (no limit) or an int >= 0"),
        (validate_min_epochs, -1, ValueError, "min_epochs=-1 is out of range; accepted: an int >= 0"),
        (validate_min_steps, "3", TypeError, "min_steps='3' has type str; accepted: an int >= 0"),
    ],
)
def test_loop_limit_validators_refuse(validate, value, error, message):
    with refuses(error, message):
        validate(value)


def test_loop_limits_family_checks_in_speed_config_order():
    assert validate_loop_limits(3, None, -1, 5) == validate_loop_limits(max_epochs=3, min_steps=5)
    limits = validate_loop_limits(max_epochs=3, min_steps=5)
    assert (limits.max_epochs, limits.min_epochs, limits.max_steps, limits.min_steps) == (3, None, -1, 5)
    with pytest.raises(ValueError, match="^max_steps=-3"):  # max_steps before min_epochs
        validate_loop_limits(min_epochs=-1, max_steps=-3)
    with pytest.raises(ValueError, match="^max_epochs=-2"):
        validate_loop_limits(max_epochs=-2, max_steps=-3)


def test_loop_defaults():
    assert resolve_max_epochs(4, -1, False) == (4, False)
    assert resolve_max_epochs(None, -1, False) == (1000, True)
    assert resolve_max_epochs(None, 10, False) == (-1, False) and resolve_max_epochs(None, -1, True) == (-1, False)
    assert (resolve_min_epochs(None, None), resolve_min_epochs(None, 3), resolve_min_epochs(2, 3)) == (0, 1, 2)
    assert (resolve_min_steps(None), resolve_min_steps(4)) == (0, 4)


# ---------------------------------------------------------------------------------------------- max_time
def test_max_time_flags_accept():
    flags = validate_max_time_flags("00:00:10:00", "fit", {"minutes": 1})
    assert (flags.max_time, flags.mode, flags.reserve) == (10 * MINUTE, "fit", MINUTE)
    assert validate_max_time_flags() == validate_max_time_flags(None, "step", None)
    assert validate_max_time_flags(reserve=0).reserve == datetime.timedelta(0)  # nothing held back: allowed
    assert validate_max_time_mode("epoch") == "epoch"


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda: validate_max_time_mode("stp"),
            ValueError,
            f"max_time_mode='stp' is not known; did you mean 'step'?; accepted: {TIME_MODES}",
        ),
        (
            lambda: validate_max_time_mode(None),
            TypeError,
            f"max_time_mode=None has type NoneType; accepted: {TIME_MODES}",
        ),
        (
            lambda: check_max_time_mode_needs_max_time("epoch", None),
            ValueError,
            "max_time_mode='epoch' needs max_time: set max_time (a duration), or leave max_time_mode unset",
        ),
        (
            lambda: check_reserve_below_max_time(MINUTE, None, 60),
            ValueError,
            "max_time_reserve=60 needs max_time: it is held back from max_time; set max_time, or leave max_time_reserve "
            "unset",
        ),
        (
            lambda: check_reserve_below_max_time(MINUTE, MINUTE, 60),
            ValueError,
            "max_time_reserve=0:01:00 is not less than max_time=0:01:00; accepted: a duration shorter than max_time "
            "(training plans against max_time - max_time_reserve)",
        ),
        (
            lambda: validate_max_time_flags("1 hour"),
            ValueError,
            'max_time=\'1 hour\' is not in the form "DD:HH:MM:SS" (e.g. "00:12:00:00" for 12 hours, with two digits each '
            'for hours, minutes and seconds); also accepted: a dict such as {"hours": 12}, a datetime.timedelta, or a '
            "number of seconds",
        ),
        (
            lambda: validate_max_time_flags(60, reserve=-1),
            ValueError,
            "max_time_reserve=-1 is a negative duration; accepted: a duration >= 0",
        ),
    ],
)
def test_max_time_validators_refuse(call, error, message):
    with refuses(error, message):
        call()


def test_max_time_rules_hold_only_when_they_apply():
    check_max_time_mode_needs_max_time("step", None)
    check_reserve_below_max_time(None, None, None)
    check_reserve_below_max_time(datetime.timedelta(0), None, 0)
    check_reserve_below_max_time(MINUTE, 2 * MINUTE, 60)


# ---------------------------------------------------------------------------------------------- data limits
def test_data_limit_validators():
    assert validate_overfit_batches(None) == BatchLimit("fraction", 0.0)
    assert validate_overfit_batches(3) == BatchLimit("count", 3)
    assert [validate_fast_dev_run(v) for v in (False, True, 0, 4, 2.0)] == [0, 1, 0, 4, 2]
    accepted = "False/0 (off), True (1 batch) or an int >= 1 (number of batches)"
    with refuses(ValueError, f"fast_dev_run=-1 is negative; accepted: {accepted}"):
        validate_fast_dev_run(-1)
    with refuses(TypeError, f"fast_dev_run=0.5 has type float; accepted: {accepted}"):
        validate_fast_dev_run(0.5)
    with refuses(ValueError, "overfit_batches=-1 is negative; accepted: a float in [0.0, 1.0] or an int >= 0"):
        validate_overfit_batches(-1)


# ---------------------------------------------------------------------------------------------- validation schedule
def test_validation_schedule_validators_accept():
    assert [validate_check_val_every_n_epoch(v) for v in (None, 1, 3)] == [None, 1, 3]
    assert validate_val_check_interval(None, 1) == BatchLimit.all()
    assert validate_val_check_interval(0.0, 1) == BatchLimit("fraction", 0.0)  # every batch, as in Lightning
    assert validate_val_check_interval(3, None) == BatchLimit("count", 3)
    assert validate_val_check_interval({"seconds": 30}, None) == datetime.timedelta(seconds=30)
    assert [validate_num_sanity_val_steps(v) for v in (-1, 0, 5)] == [-1, 0, 5]
    check_fraction_interval_has_epochs(0.5, 2)
    check_fraction_interval_has_epochs(4, None)
    flags = validate_validation_schedule(0.25, 2, 0, 3)
    assert (
        flags.val_check_interval,
        flags.check_val_every_n_epoch,
        flags.num_sanity_val_steps,
        flags.limit_val_batches,
    ) == (BatchLimit("fraction", 0.25), 2, 0, BatchLimit("count", 3))


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda: validate_check_val_every_n_epoch(0),
            ValueError,
            "check_val_every_n_epoch=0 is out of range; accepted: an int >= 1, or None to count val_check_interval across "
            "epochs",
        ),
        (
            lambda: validate_check_val_every_n_epoch(True),
            TypeError,
            "check_val_every_n_epoch=True has type bool; accepted: an int >= 1, or None to count val_check_interval across "
            "epochs",
        ),
        (
            lambda: check_fraction_interval_has_epochs(BatchLimit("fraction", 0.5), None),
            ValueError,
            "val_check_interval=BatchLimit(fraction=0.5) is a fraction of an epoch, which needs epochs: with "
            "check_val_every_n_epoch=None give val_check_interval as an int number of batches (or a duration), or set "
            "check_val_every_n_epoch to an int >= 1",
        ),
        (
            lambda: validate_val_check_interval(0.5, None),
            ValueError,
            "val_check_interval=0.5 is a fraction of an epoch, which needs epochs: with check_val_every_n_epoch=None give "
            "val_check_interval as an int number of batches (or a duration), or set check_val_every_n_epoch to an int >= 1",
        ),
        (
            lambda: validate_val_check_interval(0, 1),
            ValueError,
            "val_check_interval=0 would validate every 0 batches; accepted: an int >= 1 (validate every n training "
            "batches), a float in [0.0, 1.0] (a fraction of the epoch; 0.0 validates after every batch, as in Lightning), "
            "None (once per epoch), or a duration",
        ),
        (
            lambda: validate_val_check_interval(1.5, 1),
            ValueError,
            "val_check_interval=1.5 is neither a fraction in [0.0, 1.0] nor a whole number of batches; accepted: a float "
            "in [0.0, 1.0] or an int >= 0",
        ),
        (
            lambda: validate_num_sanity_val_steps(-2),
            ValueError,
            "num_sanity_val_steps=-2 is out of range; accepted: -1 (all batches), 0 (off) or an int >= 1",
        ),
        (
            lambda: validate_num_sanity_val_steps(None),
            TypeError,
            "num_sanity_val_steps=None is not allowed; accepted: -1 (all batches), 0 (off) or an int >= 1",
        ),
        # the family reports limit_val_batches first, then check_val_every_n_epoch, as SpeedConfig does
        (
            lambda: validate_validation_schedule(1.5, 0, -2, -3),
            ValueError,
            "limit_val_batches=-3 is negative; accepted: a float in [0.0, 1.0] or an int >= 0",
        ),
        (
            lambda: validate_validation_schedule(1.5, 0, -2),
            ValueError,
            "check_val_every_n_epoch=0 is out of range; accepted: an int >= 1, or None to count val_check_interval across "
            "epochs",
        ),
    ],
)
def test_validation_schedule_validators_refuse(call, error, message):
    with refuses(error, message):
        call()


# ---------------------------------------------------------------------------------------------- stop sources
def test_early_stopping_flag():
    assert validate_early_stopping_flag(None) is None
    assert validate_early_stopping_flag({"monitor": "val_loss", "mode": "MAX"}) == {
        "monitor": "val_loss",
        "mode": "max",
    }
    with refuses(
        TypeError,
        "early_stopping='val_loss' has type str; accepted: None or a dict of EarlyStopping "
        "keyword arguments (monitor, patience, mode, ...)",
    ):
        validate_early_stopping_flag("val_loss")


# ---------------------------------------------------------------------------------------------- precision
def test_precision_validators():
    assert (parse_precision(None), parse_precision(32), parse_precision("bf16-true")) == (
        "32-true",
        "32-true",
        "bf16-true",
    )
    with pytest.warns(UserWarning, match=r"^precision=16 is a legacy spelling; using precision='16-mixed'$"):
        assert parse_precision(16) == "16-mixed"
    validate_amp_flags("native", None, "32-true")
    validate_amp_flags("apex", "O2", "16-mixed")
    assert (validate_accumulate_grad_batches(4), validate_gradient_clip_val(1), validate_gradient_clip_val(None)) == (
        4,
        1.0,
        None,
    )
    assert (validate_gradient_clip_algorithm(None), validate_gradient_clip_algorithm("value")) == ("norm", "value")


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda: parse_precision(16.0),
            TypeError,
            "precision=16.0 is a float; write it as the int 16 or as the string \"16-...\" form; accepted: ['64-true', "
            "'32-true', '16-mixed', 'bf16-mixed', '16-true', 'bf16-true'] or the legacy 16, 32, 64, \"bf16\"",
        ),
        (
            lambda: parse_precision("8"),
            ValueError,
            "precision='8' is not a known precision; accepted: ['64-true', '32-true', '16-mixed', 'bf16-mixed', '16-true', "
            '\'bf16-true\'] or the legacy 16, 32, 64, "16", "32", "64", "bf16"',
        ),
        (
            lambda: validate_amp_flags("amp", None, "32-true"),
            ValueError,
            "amp_backend='amp' is not known; accepted: 'native' or 'apex'",
        ),
        (
            lambda: validate_amp_flags("native", "O1", "32-true"),
            ValueError,
            "amp_level='O1' only applies with amp_backend='apex'",
        ),
        (
            lambda: validate_amp_flags("apex", "O4", "16-mixed"),
            ValueError,
            "amp_level='O4' is not known; accepted: 'O0', 'O1', 'O2', 'O3'",
        ),
        (
            lambda: validate_amp_flags("apex", None, "bf16-mixed"),
            ValueError,
            "amp_backend='apex' needs precision=16 (\"16-mixed\"), got precision='bf16-mixed'",
        ),
        (
            lambda: validate_accumulate_grad_batches(0),
            ValueError,
            "accumulate_grad_batches=0 is out of range; accepted: an int >= 1",
        ),
        (
            lambda: validate_gradient_clip_val(math.inf),
            ValueError,
            "gradient_clip_val=inf is out of range; accepted: None or a finite number >= 0",
        ),
        (
            lambda: validate_gradient_clip_val("1"),
            TypeError,
            "gradient_clip_val='1' has type str; accepted: None or a finite number >= 0",
        ),
        (
            lambda: validate_gradient_clip_algorithm("max"),
            ValueError,
            "gradient_clip_algorithm='max' is not known; accepted: 'norm' or 'value'",
        ),
    ],
)
def test_precision_validators_refuse(call, error, message):
    with refuses(error, message):
        call()


# ---------------------------------------------------------------------------------------------- devices
def test_device_validators():
    assert [validate_accelerator(v) for v in ("CPU", "cuda", "xla", "auto")] == ["cpu", "gpu", "tpu", "auto"]
    assert [parse_devices(v) for v in (None, "auto", 2, -1, [1, 0], "0,1", " 3 ")] == [
        "auto",
        "auto",
        2,
        -1,
        [1, 0],
        [0, 1],
        3,
    ]
    assert validate_strategy("DDP") == "ddp"
    check_strategy_fits_accelerator("fsdp_cpu_offload", "gpu", 2)
    check_strategy_fits_accelerator("xla", "auto", "auto")
    assert (validate_node_rank(None, 1), validate_node_rank(1, 2)) == (None, 1)
    validate_master_address("localhost", 29500)
    validate_deepspeed_config({"zero_optimization": {"stage": 2}})
    flags = validate_device_flags("cuda", "0,1", strategy="DDP")
    assert (flags.accelerator, flags.devices, flags.strategy) == ("gpu", [0, 1], "ddp")


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda: validate_accelerator("ddp"),
            ValueError,
            "accelerator='ddp' is a distributed strategy, not an accelerator; use strategy='ddp'",
        ),
        (
            lambda: validate_accelerator("dp"),
            ValueError,
            "accelerator='dp' is a distributed strategy, not an accelerator; use strategy='dp' (removed in Lightning 2.x; "
            "use 'ddp')",
        ),
        (
            lambda: validate_accelerator("npu"),
            ValueError,
            "accelerator='npu' is not known; accepted: ['auto', 'cpu', 'gpu', 'cuda', 'mps', 'tpu', 'xla']",
        ),
        (
            lambda: parse_devices(0),
            ValueError,
            'devices=0 selects no device; accepted: "auto", an int >= 1, -1 (all GPUs), a list of device indices, or a '
            'string such as "2" or "0,1"',
        ),
        (lambda: parse_devices([0, 0]), ValueError, "devices=[0, 0] names a device twice"),
        (
            lambda: validate_strategy("ddpp"),
            ValueError,
            "strategy='ddpp' is not known; did you mean 'ddp'?; accepted: ['auto', 'single_device', 'ddp', 'ddp_spawn', "
            "'ddp_fork', 'ddp_notebook', 'ddp_find_unused_parameters_true', 'ddp_find_unused_parameters_false', 'zero', "
            "'fsdp', 'fsdp_cpu_offload', 'ddp_sharded', 'deepspeed', 'deepspeed_stage_1', 'deepspeed_stage_2', "
            "'deepspeed_stage_2_offload', 'deepspeed_stage_3', 'deepspeed_stage_3_offload', 'xla', 'single_xla', "
            "'single_tpu']",
        ),
        (
            lambda: validate_strategy("horovod"),
            ValueError,
            "strategy='horovod' was removed in Lightning 2.x and is not supported; use 'ddp'",
        ),
        (
            lambda: check_strategy_fits_accelerator("ddp", "cpu", [0, 1]),
            TypeError,
            "devices=[0, 1] with accelerator='cpu': on CPU give the number of processes as an int >= 1 (or 'auto')",
        ),
        (
            lambda: check_strategy_fits_accelerator("fsdp_cpu_offload", "cpu", 2),
            ValueError,
            "strategy='fsdp_cpu_offload' needs accelerator='gpu'; on CPU use strategy='fsdp' (torch FSDP2), 'zero' or 'ddp'",
        ),
        (
            lambda: check_strategy_fits_accelerator("single_tpu", "gpu", 1),
            ValueError,
            "strategy='single_tpu' needs accelerator='tpu' (or 'xla'), got accelerator='gpu'",
        ),
        (lambda: validate_node_rank(2, 2), ValueError, "node_rank=2 must be < num_nodes=2"),
        (lambda: validate_master_address(127, None), TypeError, "master_addr=127 must be a host name string"),
        (
            lambda: validate_master_address(None, 65536),
            ValueError,
            "master_port=65536 is out of range; accepted: 1..65535",
        ),
        (
            lambda: validate_deepspeed_config(3),
            TypeError,
            "deepspeed_config=3 must be a dict or the path of a JSON file",
        ),
        # the family: devices (after accelerator) before num_nodes before strategy
        (
            lambda: validate_device_flags("cpu", [0], 0, "horovod"),
            ValueError,
            "num_nodes=0 is out of range; accepted: an int >= 1",
        ),
    ],
)
def test_device_validators_refuse(call, error, message):
    with refuses(error, message):
        call()


# ---------------------------------------------------------------------------------------------- Lightning 1.x, sources
def test_legacy_mapping_and_unknown_flags():
    with pytest.warns(
        FutureWarning,
        match=r"^gpus=2 is a Lightning 1\.x flag; mapped to accelerator='gpu', "
        r"devices=2$",
    ):
        assert map_legacy({"gpus": 2, "max_epochs": 1}) == {"max_epochs": 1, "accelerator": "gpu", "devices": 2}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert map_legacy({"gpus": 0, "devices": 3}) == {"devices": 3}  # no GPU asked for: nothing to map
    with refuses(ValueError, "gpus=2 conflicts with devices=4; give only the Lightning 2.x flag devices"):
        map_legacy({"gpus": 2, "devices": 4})
    assert unknown_flag_message("max_epoch", ["max_epochs", "min_epochs"]) == (
        "unknown ignite-speed flag 'max_epoch'; did you mean 'max_epochs'? (known flags: max_epochs, min_epochs)"
    )
    assert unknown_flag_message("logger", []).startswith(
        "'logger' is a Lightning Trainer flag outside ignite-speed's scope"
    )


def test_flag_sources():
    @dataclasses.dataclass
    class Flags:
        max_epochs: int = 2

    assert flags_from_source(None) == {}
    assert flags_from_source(argparse.Namespace(max_epochs=2)) == flags_from_source(Flags()) == {"max_epochs": 2}
    given = {"max_epochs": 2}
    assert flags_from_source(given) == given and flags_from_source(given) is not given
    with refuses(
        TypeError,
        "cannot build a SpeedConfig from list; accepted: None, a dict, a SpeedConfig, an "
        "argparse.Namespace, a dataclass instance or an OmegaConf DictConfig",
    ):
        flags_from_source([("max_epochs", 2)])


# ---------------------------------------------------------------------------------------------- handlers = SpeedConfig
def _error(build):
    with pytest.raises((TypeError, ValueError)) as info:
        build()
    return type(info.value), str(info.value)


def _validation_schedule(**flags):
    return ValidationSchedule(Engine(lambda e, b: None), [1, 2], **flags)


def _time_budget(max_time, max_time_mode="step", max_time_reserve=None):
    return TimeBudget(max_time, mode=max_time_mode, reserve=max_time_reserve)


@pytest.mark.parametrize(
    "handler, flags",
    [
        (LoopLimits, {"max_epochs": -2}),
        (LoopLimits, {"max_epochs": True}),
        (LoopLimits, {"max_steps": 2.5}),
        (LoopLimits, {"max_steps": None}),
        (LoopLimits, {"min_epochs": -1}),
        (LoopLimits, {"min_steps": "3"}),
        (LoopLimits, {"min_epochs": -1, "max_steps": -3}),
        (LoopLimits, {"min_steps": -1, "min_epochs": [1]}),
        (_time_budget, {"max_time": "abc"}),
        (_time_budget, {"max_time": -1}),
        (_time_budget, {"max_time": [1]}),
        (_time_budget, {"max_time": {"hour": 1}}),
        (_time_budget, {"max_time": 60, "max_time_mode": "stp"}),
        (_time_budget, {"max_time": 60, "max_time_mode": 1}),
        (_time_budget, {"max_time": 60, "max_time_reserve": 60}),
        (_time_budget, {"max_time": 60, "max_time_reserve": -1}),
        (_time_budget, {"max_time": "x", "max_time_mode": "stp"}),
        (_validation_schedule, {"val_check_interval": 1.5}),
        (_validation_schedule, {"val_check_interval": math.nan}),
        (_validation_schedule, {"val_check_interval": 0}),
        (_validation_schedule, {"val_check_interval": "abc"}),
        (_validation_schedule, {"val_check_interval": {"bogus": 1}}),
        (_validation_schedule, {"val_check_interval": 0.5, "check_val_every_n_epoch": None}),
        (_validation_schedule, {"check_val_every_n_epoch": 0}),
        (_validation_schedule, {"check_val_every_n_epoch": "1"}),
        (_validation_schedule, {"num_sanity_val_steps": -2}),
        (_validation_schedule, {"num_sanity_val_steps": 1.0}),
        (_validation_schedule, {"limit_val_batches": -3}),
        (_validation_schedule, {"limit_val_batches": "all"}),
        (_validation_schedule, {"limit_val_batches": -3, "check_val_every_n_epoch": 0, "val_check_interval": 1.5}),
        (_validation_schedule, {"val_check_interval": 1.5, "num_sanity_val_steps": -2}),
    ],
)
def test_a_standalone_handler_refuses_as_speed_config_does(handler, flags):
    assert _error(lambda: handler(**flags)) == _error(lambda: SpeedConfig(**flags))


@pytest.mark.parametrize(
    "flags",
    [
        {},
        {"max_epochs": 3},
        {"max_epochs": -1, "max_steps": 10},
        {"min_steps": 4},
        {"min_epochs": 2, "min_steps": 4},
        {"max_epochs": 0, "min_epochs": 5},
    ],
)
def test_standalone_loop_limits_equal_those_of_a_config(flags):
    standalone, configured = LoopLimits(**flags), LoopLimits(**kwargs_of(SpeedConfig(**flags).loop_limits_flags()))
    assert vars(standalone) == vars(configured)


@pytest.mark.parametrize(
    "flags",
    [
        {"max_time": 60},
        {"max_time": "00:01:00:00", "max_time_mode": "fit"},
        {"max_time": {"minutes": 5}, "max_time_mode": "epoch", "max_time_reserve": 30},
    ],
)
def test_standalone_time_budget_holds_the_config_values(flags):
    budget, cfg = _time_budget(**flags), SpeedConfig(**flags)
    assert (budget.max_time, budget.mode, budget.reserve) == (
        cfg.max_time,
        cfg.max_time_mode,
        cfg.max_time_reserve or datetime.timedelta(0),
    )


@pytest.mark.parametrize(
    "flags",
    [
        {},
        {"val_check_interval": 0.5, "limit_val_batches": 3},
        {"val_check_interval": 4, "check_val_every_n_epoch": None, "num_sanity_val_steps": -1},
        {"val_check_interval": "00:00:01:00", "limit_val_batches": 0.5},
    ],
)
def test_standalone_validation_schedule_holds_the_config_values(flags):
    schedule, cfg = _validation_schedule(**flags), SpeedConfig(**flags)
    assert (
        schedule.val_check_interval,
        schedule.check_val_every_n_epoch,
        schedule.num_sanity_val_steps,
        schedule.limit_val_batches,
    ) == (cfg.val_check_interval, cfg.check_val_every_n_epoch, cfg.num_sanity_val_steps, cfg.limit_val_batches)
