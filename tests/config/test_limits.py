"""Count limits: one type with a unit, one spelling of "no limit"."""

from __future__ import annotations

import math
import pickle

import pytest
import torch

from ignite_speed import SpeedConfig
from ignite_speed.config import UNLIMITED, Limit
from ignite_speed.loop.plan import RunLimits


def test_a_limit_is_its_flag_value_with_a_unit():
    steps = Limit(7, "steps")
    assert steps == 7 and f"max_steps={steps}" == "max_steps=7" and repr(steps) == "Limit(7, 'steps')"
    assert (steps.unit, steps.unlimited, steps.bound) == ("steps", False, 7)
    assert (steps.reached(6), steps.reached(7)) == (False, True)
    none = Limit(UNLIMITED, "epochs")
    assert none == -1 and none.unlimited and none.bound == math.inf and not none.reached(10**9)
    assert pickle.loads(pickle.dumps(steps)) == 7 and pickle.loads(pickle.dumps(steps)).unit == "steps"
    assert torch.tensor(steps).item() == 7
    with pytest.raises(ValueError, match=r"a limit of epochs is >= 0 or -1 \(no limit\), not -2"):
        Limit(-2, "epochs")


def test_effective_and_run_limits_are_limits():
    lim = SpeedConfig(max_steps=5).effective()
    assert (lim.max_epochs, lim.max_steps) == (UNLIMITED, 5)
    assert (lim.max_epochs.unit, lim.max_steps.unit) == ("epochs", "steps")
    run = RunLimits.of(3, UNLIMITED)
    assert run.max_epochs.reached(3) and not run.max_steps.reached(10**9) and run.max_steps.bound == math.inf
    assert RunLimits() == RunLimits.of(UNLIMITED, UNLIMITED)
