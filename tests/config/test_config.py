"""SpeedConfig: construction from every source, validation messages, Lightning 1.x mapping."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import re

import pytest

from ignite_speed import BatchLimit, SpeedConfig


def test_defaults_follow_lightning_2():
    cfg = SpeedConfig()
    lim = cfg.effective()
    assert (lim.max_epochs, lim.max_steps, lim.min_epochs, lim.min_steps) == (1000, -1, 0, 0)
    assert lim.max_epochs_defaulted
    assert cfg.limit_train_batches == BatchLimit("fraction", 1.0)
    assert cfg.val_check_interval == BatchLimit("fraction", 1.0)
    assert (cfg.check_val_every_n_epoch, cfg.num_sanity_val_steps, cfg.fast_dev_run) == (1, 2, 0)
    assert cfg.precision == "32-true" and cfg.accelerator == "auto" and cfg.strategy == "auto"


def test_max_epochs_unlimited_when_steps_or_time_bound_the_run():
    assert SpeedConfig(max_steps=5).effective().max_epochs == -1
    assert SpeedConfig(max_time=60).effective().max_epochs == -1
    assert SpeedConfig(min_steps=3).effective().min_epochs == 1


@pytest.mark.parametrize("source_kind", ["dict", "config", "namespace", "dataclass", "omegaconf"])
def test_built_from_every_source(source_kind):
    flags = {"max_epochs": 3, "limit_train_batches": 0.5, "max_time": "00:00:01:00"}
    if source_kind == "dict":
        source = flags
    elif source_kind == "config":
        source = SpeedConfig(**flags)
    elif source_kind == "namespace":
        source = argparse.Namespace(**flags)
    elif source_kind == "dataclass":

        @dataclasses.dataclass
        class Flags:
            max_epochs: int = 3
            limit_train_batches: float = 0.5
            max_time: str = "00:00:01:00"

        source = Flags()
    else:
        omegaconf = pytest.importorskip("omegaconf")
        source = omegaconf.OmegaConf.create(flags)
    cfg = SpeedConfig.from_any(source, max_steps=7)
    assert cfg.max_epochs == 3 and cfg.max_steps == 7
    assert cfg.limit_train_batches == BatchLimit("fraction", 0.5)
    assert cfg.max_time == datetime.timedelta(minutes=1)
    assert cfg.explicit >= {"max_epochs", "limit_train_batches", "max_time", "max_steps"}


def test_unknown_key_gets_a_suggestion():
    with pytest.raises(ValueError, match="did you mean 'max_epochs'"):
        SpeedConfig(max_epcohs=3)


LIGHTNING_ONLY_FLAGS = [
    "logger",
    "callbacks",
    "log_every_n_steps",
    "enable_checkpointing",
    "enable_progress_bar",
    "enable_model_summary",
    "deterministic",
    "benchmark",
    "inference_mode",
    "use_distributed_sampler",
    "profiler",
    "detect_anomaly",
    "barebones",
    "sync_batchnorm",
    "reload_dataloaders_every_n_epochs",
    "default_root_dir",
    "enable_autolog_hparams",
    "model_registry",
]


@pytest.mark.parametrize("flag", LIGHTNING_ONLY_FLAGS)
def test_lightning_flag_outside_scope_is_named_as_such(flag):
    with pytest.raises(ValueError) as info:
        SpeedConfig(**{flag: True})
    text = str(info.value)
    assert text.startswith(f"{flag!r} is a Lightning Trainer flag outside ignite-speed's scope")
    assert "did you mean" not in text and "in Ignite: " in text


@pytest.mark.parametrize(
    "flag,hint",
    [
        ("logger", "TensorboardLogger"),
        ("enable_progress_bar", "ProgressBar"),
        ("enable_checkpointing", "Checkpoint"),
        ("log_every_n_steps", "Events.ITERATION_COMPLETED(every=n)"),
        ("callbacks", "add_event_handler"),
        ("detect_anomaly", "torch.autograd.set_detect_anomaly(True)"),
    ],
)
def test_lightning_flag_outside_scope_says_what_to_use_in_ignite(flag, hint):
    with pytest.raises(ValueError, match=re.escape(hint)):
        SpeedConfig(**{flag: 1})


def test_every_lightning_trainer_flag_is_handled_or_named_out_of_scope():
    """Lightning 2.6's Trainer.__init__ flags: each one is an ignite-speed flag, the mapped 1.x ``plugins``,
    or refused as a Lightning flag outside the scope (never an unrelated "did you mean")."""
    pl = pytest.importorskip("pytorch_lightning")
    import inspect

    params = [p for p in inspect.signature(pl.Trainer.__init__).parameters if p != "self"]
    known = set(SpeedConfig.flag_names())
    outside = [p for p in params if p not in known and p != "plugins"]
    assert sorted(outside) == sorted(LIGHTNING_ONLY_FLAGS)
    for flag in outside:
        with pytest.raises(ValueError, match=f"^'{flag}' is a Lightning Trainer flag outside"):
            SpeedConfig(**{flag: None})


def test_plugins_other_than_strategy_names_are_named_out_of_scope():
    with pytest.raises(ValueError, match=r"plugins=\['apex'\]: plugins is a Lightning Trainer flag mostly outside"):
        SpeedConfig(plugins=["apex"])
    with pytest.raises(TypeError, match=r"plugins=.* has type object; plugins is a Lightning Trainer flag"):
        SpeedConfig(plugins=object())


def test_unknown_flag_that_is_not_lightnings_still_gets_a_suggestion():
    with pytest.raises(
        ValueError,
        match=r"unknown ignite-speed flag 'val_check_intervall'; did you mean "
        r"'val_check_interval'\?",
    ):
        SpeedConfig(val_check_intervall=0.5)


@pytest.mark.parametrize("value", [0, BatchLimit("count", 0)])
def test_val_check_interval_zero_batches_is_refused(value):
    """Lightning 2.6 accepts the int 0 and fails with ZeroDivisionError at the first training batch."""
    with pytest.raises(ValueError) as info:
        SpeedConfig(val_check_interval=value)
    text = str(info.value)
    assert text.startswith("val_check_interval=")
    assert "accepted: an int >= 1" in text and "a float in [0.0, 1.0]" in text


@pytest.mark.parametrize(
    "flags",
    [{"val_check_interval": 0, "fast_dev_run": True}, {"val_check_interval": 0, "check_val_every_n_epoch": None}],
)
def test_val_check_interval_zero_is_refused_in_every_combination(flags):
    with pytest.raises(ValueError, match=r"^val_check_interval=0 would validate every 0 batches"):
        SpeedConfig(**flags)


def test_val_check_interval_zero_fraction_is_every_batch_as_in_lightning():
    assert SpeedConfig(val_check_interval=0.0).val_check_interval == BatchLimit("fraction", 0.0)


@pytest.mark.parametrize(
    "value,exc", [(-1, ValueError), (0, ValueError), ([0, 1], TypeError), ("2", TypeError), (2.0, TypeError)]
)
def test_num_processes_is_a_number_of_cpu_processes(value, exc):
    with pytest.raises(exc, match=rf"^num_processes={re.escape(repr(value))} "):
        SpeedConfig(num_processes=value)


def test_unbuildable_source():
    with pytest.raises(TypeError, match="cannot build a SpeedConfig from list"):
        SpeedConfig.from_any([1, 2])


@pytest.mark.parametrize(
    "flags,exc,needle",
    [
        ({"check_val_every_n_epoch": 0}, ValueError, "check_val_every_n_epoch=0"),
        ({"fast_dev_run": -1}, ValueError, "fast_dev_run=-1"),
        ({"max_time": "1:2:3:4"}, ValueError, "max_time='1:2:3:4'"),
        ({"max_time": -5}, ValueError, "negative"),
        ({"max_time": {"hourz": 1}}, ValueError, "hourz"),
        ({"max_time": [1]}, TypeError, "max_time"),
        ({"val_check_interval": 1.5}, ValueError, "val_check_interval=1.5"),
        ({"val_check_interval": float("nan")}, ValueError, "val_check_interval=nan"),
        ({"max_epochs": 2.0}, TypeError, "max_epochs=2.0"),
        ({"max_epochs": True}, TypeError, "max_epochs=True"),
        ({"max_steps": -2}, ValueError, "max_steps=-2"),
        ({"min_epochs": -1}, ValueError, "min_epochs=-1"),
        ({"accumulate_grad_batches": 0}, ValueError, "accumulate_grad_batches=0"),
        ({"gradient_clip_val": -1.0}, ValueError, "gradient_clip_val=-1.0"),
        ({"gradient_clip_algorithm": "l2"}, ValueError, "gradient_clip_algorithm='l2'"),
        ({"precision": "fp16"}, ValueError, "precision='fp16'"),
        ({"precision": 16.0}, TypeError, "precision=16.0"),
        ({"precision": "bf16-true "}, ValueError, "precision="),
        ({"amp_level": "O2"}, ValueError, "amp_level"),
        ({"accelerator": "quantum"}, ValueError, "accelerator='quantum'"),
        ({"devices": 0}, ValueError, "devices=0"),
        ({"devices": [0, 0]}, ValueError, "twice"),
        ({"accelerator": "cpu", "devices": -1}, TypeError, "devices=-1"),
        ({"num_nodes": 0}, ValueError, "num_nodes=0"),
        ({"strategy": "dp"}, ValueError, "strategy='dp'"),
        ({"strategy": "horovod"}, ValueError, "horovod"),
        ({"strategy": "ddp_shardd"}, ValueError, "did you mean 'ddp_sharded'"),
        ({"accelerator": "cpu", "strategy": "fsdp_cpu_offload"}, ValueError, "fsdp_cpu_offload"),
        ({"master_port": 70000}, ValueError, "master_port=70000"),
        ({"node_rank": 1}, ValueError, "node_rank=1"),
        ({"early_stopping": "val_loss"}, TypeError, "early_stopping="),
        ({"terminate_on_nan": 1}, TypeError, "terminate_on_nan=1"),
    ],
)
def test_bad_values_name_the_flag(flags, exc, needle):
    with pytest.raises(exc) as info:
        SpeedConfig(**flags)
    assert needle in str(info.value)


@pytest.mark.parametrize(
    "value,expected",
    [
        ("00:12:00:00", datetime.timedelta(hours=12)),
        ("1:00:00:00", datetime.timedelta(days=1)),
        ({"minutes": 5}, datetime.timedelta(minutes=5)),
        (90, datetime.timedelta(seconds=90)),
        (datetime.timedelta(seconds=3), datetime.timedelta(seconds=3)),
        (" 00:00:00:01 ", datetime.timedelta(seconds=1)),
    ],
)
def test_durations(value, expected):
    assert SpeedConfig(max_time=value).max_time == expected


@pytest.mark.parametrize(
    "value,expected",
    [
        (None, BatchLimit("fraction", 1.0)),
        (0.25, BatchLimit("fraction", 0.25)),
        (1, BatchLimit("count", 1)),
        (1.0, BatchLimit("fraction", 1.0)),
        (3.0, BatchLimit("count", 3)),
        (0, BatchLimit("count", 0)),
    ],
)
def test_batch_limit_parsing(value, expected):
    assert SpeedConfig(limit_train_batches=value).limit_train_batches == expected


def test_time_based_val_check_interval():
    cfg = SpeedConfig(val_check_interval="00:00:10:00")
    assert cfg.val_check_interval == datetime.timedelta(minutes=10)


@pytest.mark.parametrize("value,expected", [(16, "16-mixed"), ("16", "16-mixed"), ("bf16", "bf16-mixed")])
def test_legacy_precision_warns(value, expected):
    with pytest.warns(UserWarning, match="legacy"):
        assert SpeedConfig(precision=value).precision == expected


@pytest.mark.parametrize("value,expected", [(32, "32-true"), ("64", "64-true"), ("bf16-true", "bf16-true")])
def test_precision_aliases(value, expected):
    assert SpeedConfig(precision=value).precision == expected


@pytest.mark.parametrize(
    "flags,expected",
    [
        ({"gpus": 2}, {"accelerator": "gpu", "devices": 2}),
        ({"gpus": "0,1"}, {"accelerator": "gpu", "devices": [0, 1]}),
        ({"tpu_cores": [2]}, {"accelerator": "tpu", "devices": [1]}),
        ({"tpu_cores": 8}, {"accelerator": "tpu", "devices": 8}),
        ({"num_processes": 2, "accelerator": "ddp_cpu"}, {"accelerator": "cpu", "devices": 2, "strategy": "ddp"}),
        ({"accelerator": "ddp"}, {"strategy": "ddp"}),
        ({"distributed_backend": "ddp_spawn"}, {"strategy": "ddp_spawn"}),
        ({"plugins": "ddp_sharded"}, {"strategy": "ddp_sharded"}),
        ({"plugins": ["deepspeed"]}, {"strategy": "deepspeed"}),
    ],
)
def test_lightning_1x_spellings_are_mapped(flags, expected):
    with pytest.warns(FutureWarning, match="Lightning 1.x"):
        cfg = SpeedConfig(**flags)
    for key, value in expected.items():
        assert getattr(cfg, key) == value


def test_lightning_1x_conflict_and_unknown_plugin():
    with pytest.raises(ValueError, match="conflicts"):
        SpeedConfig(gpus=2, devices=4)
    with pytest.raises(ValueError, match="plugins"):
        SpeedConfig(plugins=["apex"])


def test_fast_dev_run_overrides():
    lim = SpeedConfig(
        fast_dev_run=True,
        max_epochs=5,
        limit_train_batches=0.5,
        val_check_interval=0.25,
        num_sanity_val_steps=3,
        min_epochs=4,
    ).effective()
    assert (lim.max_epochs, lim.max_steps, lim.min_epochs, lim.num_sanity_val_steps) == (1, 1, 0, 0)
    assert lim.limit_train_batches == lim.limit_val_batches == lim.limit_test_batches == BatchLimit("count", 1)
    assert lim.val_check_interval == BatchLimit("fraction", 1.0)


def test_overfit_overrides_train_and_val_limits_only():
    lim = SpeedConfig(overfit_batches=2, limit_train_batches=5, limit_val_batches=4, limit_test_batches=3).effective()
    assert lim.limit_train_batches == lim.limit_val_batches == BatchLimit("count", 2)
    assert lim.limit_test_batches == BatchLimit("count", 3)


def test_replace_revalidates():
    cfg = SpeedConfig(max_epochs=3)
    assert cfg.replace(max_epochs=5).max_epochs == 5
    with pytest.raises(ValueError, match="max_epochs=-3"):
        cfg.replace(max_epochs=-3)


def test_import_is_cheap():
    import subprocess
    import sys

    code = (
        "import sys, ignite_speed; heavy = [m for m in ('torch', 'ignite', 'deepspeed', 'fairscale', 'torch_xla', "
        "'omegaconf', 'sklearn') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
