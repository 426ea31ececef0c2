"""``preemption_signals``: what it accepts, the exact message of what it refuses, and its default."""

from __future__ import annotations

import re
import signal

import pytest

from ignite_speed.config import SpeedConfig
from ignite_speed.config.flags import DEFAULT_PREEMPTION_SIGNALS, validate_preemption_signals

ACCEPTED = (
    "accepted: signal names ('SIGTERM' or 'TERM') or numbers, one or a list of them, or () or None (no signal handling)"
)


@pytest.mark.parametrize(
    "value, parsed",
    [
        (None, ()),
        ((), ()),
        ([], ()),
        ("SIGTERM", ("SIGTERM",)),
        ("TERM", ("SIGTERM",)),
        ("usr1", ("SIGUSR1",)),
        (" SIGUSR2 ", ("SIGUSR2",)),
        (int(signal.SIGTERM), ("SIGTERM",)),
        (signal.SIGUSR1, ("SIGUSR1",)),
        (["SIGTERM", int(signal.SIGUSR1), "TERM"], ("SIGTERM", "SIGUSR1")),  # each once, in the order given
        (("HUP", "INT"), ("SIGHUP", "SIGINT")),
    ],
)
def test_accepted_forms(value, parsed):
    assert validate_preemption_signals(value) == parsed
    assert SpeedConfig(preemption_signals=value).preemption_signals == parsed


def test_default_is_sigterm_and_sigusr1():
    assert DEFAULT_PREEMPTION_SIGNALS == ("SIGTERM", "SIGUSR1")
    assert SpeedConfig().preemption_signals == ("SIGTERM", "SIGUSR1")
    assert "preemption_signals" in SpeedConfig.flag_names()


@pytest.mark.parametrize(
    "value, error, message",
    [
        (
            "SIGTREM",
            ValueError,
            "preemption_signals='SIGTREM': 'SIGTREM' is not a signal name; did you mean 'SIGTERM'?; ",
        ),
        ("TREM", ValueError, "preemption_signals='TREM': 'TREM' is not a signal name; did you mean 'TERM'?; "),
        (["TERM", "bogus"], ValueError, "preemption_signals=['TERM', 'bogus']: 'bogus' is not a signal name; "),
        ("", ValueError, "preemption_signals='': '' is not a signal name; "),
        (0, ValueError, "preemption_signals=0: 0 is not a signal number on this platform; "),
        (2**40, ValueError, f"preemption_signals={2**40}: {2**40} is not a signal number on this platform; "),
        (
            "KILL",
            ValueError,
            "preemption_signals='KILL': SIGKILL cannot be caught (the process ends at once, with no chance to save); ",
        ),
        ([int(signal.SIGSTOP)], ValueError, f"preemption_signals=[{int(signal.SIGSTOP)}]: SIGSTOP cannot be caught"),
        (True, TypeError, "preemption_signals=True: True has type bool; "),
        (1.5, TypeError, "preemption_signals=1.5 has type float; "),
        ({"TERM": 1}, TypeError, "preemption_signals={'TERM': 1} has type dict; "),
        (["TERM", 1.0], TypeError, "preemption_signals=['TERM', 1.0]: 1.0 has type float; "),
    ],
)
def test_refused_with_the_flag_the_value_and_what_is_accepted(value, error, message):
    with pytest.raises(error) as caught:
        validate_preemption_signals(value)
    assert str(caught.value).startswith(message)
    assert str(caught.value).endswith(ACCEPTED)
    with pytest.raises(error, match=re.escape(message)):
        SpeedConfig(preemption_signals=value)
