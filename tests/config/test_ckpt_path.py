"""Lightning's ``trainer.fit(..., ckpt_path=...)`` in a config: ``"last"`` is ``autoresume=True``, ``None`` nothing;
every other value is refused with the fix (``Checkpoint.load_objects``)."""

from __future__ import annotations

import pytest
from ignite.engine import Engine

from ignite_speed import AutoResume, SpeedConfig, attach_speedups

FIX = (
    r"ignite-speed reads only ckpt_path='last' \(mapped to autoresume=True: continue from the newest checkpoint "
    r"of the trainer's Checkpoint\) or None; to resume from one file, load it before trainer.run with "
    r"Checkpoint.load_objects\(to_load=\{'trainer': trainer, 'speedups': speedups, \.\.\.\}, "
    r"checkpoint=torch.load\(path, weights_only=True\)\)$"
)


def test_last_is_autoresume_and_none_is_nothing():
    cfg = SpeedConfig(ckpt_path="last")
    assert cfg.autoresume is True and cfg.explicit == frozenset({"autoresume"})
    assert SpeedConfig(ckpt_path="last", autoresume=True).autoresume is True
    assert SpeedConfig(ckpt_path=None).autoresume is False and SpeedConfig(ckpt_path=None).explicit == frozenset()
    assert SpeedConfig.from_any({"max_epochs": 2, "ckpt_path": "last"}).autoresume is True
    assert isinstance(attach_speedups(Engine(lambda e, b: 0.0), ckpt_path="last").autoresume, AutoResume)


@pytest.mark.parametrize(
    ("value", "error", "start"),
    [
        ("best", ValueError, r"ckpt_path='best': Lightning's 'best' checkpoint has no counterpart here; "),
        ("hpc", ValueError, r"ckpt_path='hpc': Lightning's 'hpc' checkpoint has no counterpart here; "),
        (
            "registry:model:v1",
            ValueError,
            r"ckpt_path='registry:model:v1': Lightning's 'registry' checkpoint has no "
            r"counterpart here; ",
        ),
        ("ckpt/epoch=3.ckpt", ValueError, r"ckpt_path='ckpt/epoch=3.ckpt' is not mapped \(a file to resume from\); "),
        ("Last", ValueError, r"ckpt_path='Last' is not mapped \(a file to resume from\); "),
        (True, TypeError, r"ckpt_path=True has type bool; "),
        (3, TypeError, r"ckpt_path=3 has type int; "),
    ],
)
def test_other_values_are_refused_with_the_fix(value, error, start):
    with pytest.raises(error, match="^" + start + FIX):
        SpeedConfig(ckpt_path=value)


def test_last_conflicting_with_autoresume_false_is_refused():
    with pytest.raises(
        ValueError,
        match=r"^ckpt_path='last' \(autoresume=True\) conflicts with autoresume=False; "
        r"give one of them$",
    ):
        SpeedConfig(ckpt_path="last", autoresume=False)
