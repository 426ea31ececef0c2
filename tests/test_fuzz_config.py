"""Property test: random configs through ``attach_speedups`` and a short real run.

Every flag gets odd types and values (NaN/inf, negatives, strings, bools, lists, dicts, None) and
unknown keys appear. Each config either runs or is refused with ``ValueError``/``TypeError`` whose
message names the flag; any other exception, or a run that does not end, fails the test.
"""

from __future__ import annotations

import math
import signal
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ignite.engine import Events

from ignite_speed import SpeedConfig, attach_speedups
from tests.helpers import loader, make_run, stream_loader

FLAGS = SpeedConfig.flag_names()
LEGACY = ["gpus", "tpu_cores", "num_processes", "distributed_backend", "plugins"]

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 12), st.sampled_from([2**40, -(2**40)]),
    st.floats(-2.0, 12.0), st.sampled_from([math.nan, math.inf, -math.inf, 0.0, 1.0, 0.5, 1e-9, 3.0]),
    st.text(max_size=6), st.sampled_from(["auto", "cpu", "gpu", "ddp", "16-mixed", "bf16", "32", "norm", "value",
                                          "00:00:00:01", "1", "0,1", "native", "apex", "O1", "val_loss"]),
)
_plausible = st.sampled_from([None, 0, 1, 2, 3, -1, 0.5, 0.25, 1.0, True, False, "auto"])
_values = st.one_of(
    _plausible, _plausible, _scalars,
    st.lists(st.one_of(st.integers(-2, 3), st.text(max_size=3)), max_size=3),
    st.dictionaries(st.sampled_from(["seconds", "minutes", "hours", "days", "bogus"]),
                    st.one_of(st.floats(-1, 5), st.sampled_from([math.nan, math.inf]), st.integers(-1, 3),
                              st.text(max_size=2)), max_size=2),
    st.fixed_dictionaries({"monitor": st.sampled_from(["val_loss", "train_loss", "", 3])},
                          optional={"patience": _scalars, "mode": _scalars, "min_delta": _scalars,
                                    "check_finite": _scalars, "strict": _scalars, "stopping_threshold": _scalars,
                                    "divergence_threshold": _scalars, "bogus": _scalars}),
)
_configs = st.dictionaries(st.sampled_from(FLAGS + LEGACY + ["max_epoch", "bogus_flag"]), _values, max_size=4)


class _Hang(Exception):
    pass


def _alarm(*_):
    raise _Hang


COUNTS = {"ran": 0, "refused": 0}


@settings(max_examples=600, deadline=3000, suppress_health_check=list(HealthCheck), derandomize=True)
@given(cfg=_configs, iterable=st.booleans())
def test_random_configs_run_or_are_refused_naming_the_flag(cfg, iterable):
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
                named = [k for k in cfg if k in str(exc)]
                assert named, f"{type(exc).__name__} names no flag of {cfg!r}: {exc}"
                COUNTS["refused"] += 1
            else:
                assert sp.stop_reason.value != "not_stopped"
                COUNTS["ran"] += 1
    except _Hang:  # pragma: no cover - reported as a failure
        pytest.fail(f"config {cfg!r} did not finish within 10 s")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_fuzz_counts():
    """Runs after the property test: both outcomes occurred (the figures quoted in docs/reliability.rst)."""
    if not COUNTS["ran"] + COUNTS["refused"]:
        pytest.skip("run together with the property test")
    assert COUNTS["ran"] > 20 and COUNTS["refused"] > 20, COUNTS
