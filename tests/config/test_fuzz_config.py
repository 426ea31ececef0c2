"""Property tests: configs through ``attach_speedups`` and a short real run.

Two parts:

* a deterministic sweep: every flag (and the Lightning 1.x spellings, some Lightning Trainer flags that
  ignite-speed does not handle, misspelled keys) alone with each of a fixed list of edge values (0 and
  0.0, +-1, NaN/inf, huge ints, bools, strings, lists, dicts...), on a training loader with a length
  and, for the flags that depend on it, on one without;
* random configs (hypothesis): up to 4 flags at once with odd types and values.

Each config either runs, ending with a stop reason, or is refused with ``ValueError``/``TypeError`` whose
message names one of its flags as a whole word (``max_epochs`` does not name ``max_epoch``); any other
exception, or a run that does not end, fails the test.
"""

from __future__ import annotations

import datetime
import math
import re
import signal
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ignite.engine import Events

from ignite_speed import SpeedConfig, attach_speedups
from tests.helpers import loader, make_run, stream_loader

FLAGS = SpeedConfig.flag_names()
LEGACY = ["gpus", "tpu_cores", "num_processes", "distributed_backend", "plugins", "ckpt_path"]
# Lightning 2.x Trainer flags outside ignite-speed's scope, and misspellings: refused, naming the key
OTHER_KEYS = [
    "logger",
    "log_every_n_steps",
    "enable_checkpointing",
    "callbacks",
    "max_epoch",
    "val_check_intervall",
    "bogus_flag",
]
# flags whose outcome depends on whether the training loader has a length: swept on both kinds
LENGTH_SENSITIVE = {
    "max_epochs",
    "max_steps",
    "min_steps",
    "limit_train_batches",
    "limit_val_batches",
    "overfit_batches",
    "fast_dev_run",
    "val_check_interval",
    "check_val_every_n_epoch",
    "num_sanity_val_steps",
    "accumulate_grad_batches",
}

EDGE_VALUES = [
    None,
    True,
    False,
    0,
    1,
    2,
    3,
    -1,
    -2,
    0.0,
    1e-9,
    0.25,
    0.5,
    1.0,
    1.5,
    2.0,
    -1.0,
    -0.5,
    math.nan,
    math.inf,
    -math.inf,
    2**40,
    -(2**40),
    "",
    "0",
    "1",
    "auto",
    "00:00:00:01",
    "val_loss",
    [],
    [0],
    [0, 1],
    {},
    {"seconds": 0},
    {"monitor": "val_loss"},
    {"bogus": 1},
    datetime.timedelta(0),
]


def names_flag(text: str, flag: str) -> bool:
    """``flag`` appears in ``text`` as a whole identifier (not inside a longer name)."""
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(flag)}(?![A-Za-z0-9_])", text) is not None


def test_names_flag_is_exact():
    assert names_flag("max_epochs=-3 is out of range", "max_epochs")
    assert names_flag("early_stopping['patience']=-1 is negative", "early_stopping")
    assert not names_flag("max_epochs=-3 is out of range", "max_epoch")
    assert not names_flag("min_steps=-1 is out of range", "steps")
    assert not names_flag("limit_val_batches=0.1 of a loader", "val_batches")


class _Hang(Exception):
    pass


def _alarm(*_):
    raise _Hang


def run_config(cfg: dict, iterable: bool) -> str:
    """Attach ``cfg`` and train on 4 batches (a stream without length if ``iterable``), validating on 3.

    Returns ``"ran"`` or ``"refused"``; raises AssertionError for anything else."""
    run = make_run(metric_seq=[1.0, 0.5, 0.7, 0.9])
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(10)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                sp = attach_speedups(run.trainer, run.evaluator, cfg, val_data=loader(3, 100.0))
                # bound every run: a user stop after 40 batches (honoured after min_epochs/min_steps)
                run.trainer.add_event_handler(Events.ITERATION_COMPLETED(once=40), lambda _: sp.request_stop())
                run.trainer.add_event_handler(Events.ITERATION_COMPLETED(once=400), lambda e: e.terminate())
                run.trainer.run(stream_loader(4) if iterable else loader(4))
                sp.test(run.tester, loader(2))
            except (ValueError, TypeError) as exc:
                named = [k for k in cfg if names_flag(str(exc), k)]
                assert named, f"{type(exc).__name__} names no flag of {cfg!r}: {exc}"
                return "refused"
            except RuntimeError as exc:
                # documented (as in Lightning): a strict monitor that no validation run produces fails at
                # the first check, naming it
                es = cfg.get("early_stopping")
                monitor = es.get("monitor") if isinstance(es, dict) else None
                if not (
                    isinstance(monitor, str)
                    and f"EarlyStopping could not find the monitor {monitor!r} (strict=True)" in str(exc)
                ):
                    raise AssertionError(f"config {cfg!r} (iterable={iterable}) raised RuntimeError: {exc}") from exc
                return "refused"
            except Exception as exc:  # noqa: BLE001 - reported with the config
                raise AssertionError(
                    f"config {cfg!r} (iterable={iterable}) raised {type(exc).__name__}: {exc}"
                ) from exc
            assert sp.stop_reason.value != "not_stopped", cfg
            return "ran"
    except _Hang:  # pragma: no cover - reported as a failure
        pytest.fail(f"config {cfg!r} (iterable={iterable}) did not finish within 10 s")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


COUNTS = {"ran": 0, "refused": 0}


@pytest.mark.parametrize("flag", FLAGS + LEGACY + OTHER_KEYS)
def test_every_flag_alone_with_edge_values(flag):
    failures = []
    for value in EDGE_VALUES:
        for iterable in (False, True) if flag in LENGTH_SENSITIVE else (False,):
            try:
                run_config({flag: value}, iterable)
            except AssertionError as exc:
                failures.append(str(exc).splitlines()[0])
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures)


def test_val_check_interval_zero_is_refused_and_zero_fraction_runs():
    """The late crash the sweep now covers: ``val_check_interval=0`` passed validation and failed in the loop
    with a ZeroDivisionError (``run_config`` reports that as a failure); it is refused naming the flag.
    ``0.0`` validates after every batch, as in Lightning."""
    assert run_config({"val_check_interval": 0}, False) == "refused"
    assert run_config({"val_check_interval": 0}, True) == "refused"
    assert run_config({"val_check_interval": 0.0}, False) == "ran"


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 12),
    st.sampled_from([2**40, -(2**40)]),
    st.floats(-2.0, 12.0),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, 1.0, 0.5, 1e-9, 3.0]),
    st.text(max_size=6),
    st.sampled_from(
        [
            "auto",
            "cpu",
            "gpu",
            "ddp",
            "16-mixed",
            "bf16",
            "32",
            "norm",
            "value",
            "00:00:00:01",
            "1",
            "0,1",
            "native",
            "apex",
            "O1",
            "val_loss",
        ]
    ),
)
_plausible = st.sampled_from([None, 0, 0.0, 1, 2, 3, -1, 0.5, 0.25, 1.0, 2.0, True, False, "auto"])
_values = st.one_of(
    _plausible,
    _plausible,
    _scalars,
    st.lists(st.one_of(st.integers(-2, 3), st.text(max_size=3)), max_size=3),
    st.dictionaries(
        st.sampled_from(["seconds", "minutes", "hours", "days", "bogus"]),
        st.one_of(st.floats(-1, 5), st.sampled_from([math.nan, math.inf]), st.integers(-1, 3), st.text(max_size=2)),
        max_size=2,
    ),
    st.fixed_dictionaries(
        {"monitor": st.sampled_from(["val_loss", "train_loss", "", 3])},
        optional={
            "patience": _scalars,
            "mode": _scalars,
            "min_delta": _scalars,
            "check_finite": _scalars,
            "strict": _scalars,
            "stopping_threshold": _scalars,
            "divergence_threshold": _scalars,
            "bogus": _scalars,
        },
    ),
)
# the loop-control flags are drawn more often than the device flags, which attach_speedups only validates
_LOOP_FLAGS = [
    f
    for f in FLAGS
    if f in LENGTH_SENSITIVE
    or f in ("min_epochs", "max_time", "early_stopping", "limit_test_batches", "terminate_on_nan")
]
_configs = st.dictionaries(
    st.one_of(st.sampled_from(_LOOP_FLAGS), st.sampled_from(FLAGS + LEGACY + OTHER_KEYS)), _values, max_size=4
)


@settings(max_examples=600, deadline=3000, suppress_health_check=list(HealthCheck), derandomize=True)
@given(cfg=_configs, iterable=st.booleans())
def test_random_configs_run_or_are_refused_naming_the_flag(cfg, iterable):
    COUNTS[run_config(cfg, iterable)] += 1


def test_fuzz_counts():
    """Runs after the property test: both outcomes occurred (the figures quoted in docs/reliability.rst)."""
    if not COUNTS["ran"] + COUNTS["refused"]:
        pytest.skip("run together with the property test")
    assert COUNTS["ran"] > 20 and COUNTS["refused"] > 20, COUNTS
