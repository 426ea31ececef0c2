"""The public names as a user's type checker sees them: every name of ``ignite_speed.__all__`` and of each
sub-package's ``__all__`` is explicitly exported, and a user file that imports all of them and runs the
quickstart passes ``mypy --strict`` against the package the tests import."""

from __future__ import annotations

import importlib
import os
import pathlib
import subprocess
import sys
import sysconfig
import textwrap

import pytest

import ignite_speed

PACKAGE_ROOT = pathlib.Path(ignite_speed.__file__).parent.parent
SUBPACKAGES = ("config", "data", "distributed", "handlers", "loop", "report", "step")

# Uses the public API the way the README's quickstart does, so that --strict sees its types in use
# (an untyped return or parameter would be an error here), not only that the names import.
QUICKSTART = """
import torch
from ignite.engine import Engine, create_supervised_evaluator, create_supervised_trainer
from ignite.metrics import Accuracy


def build(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[Engine, Engine]:
    trainer = create_supervised_trainer(model, optimizer, torch.nn.CrossEntropyLoss())
    evaluator = create_supervised_evaluator(model, metrics={"val_acc": Accuracy()})
    return trainer, evaluator


def with_speedups(trainer: Engine, evaluator: Engine, val_data: object) -> tuple[StopReason, str | None, int]:
    speedups: Speedups = attach_speedups(trainer, evaluator, {"max_epochs": 4, "val_check_interval": 0.5},
                                         val_data=val_data)
    progress: Progress = speedups.progress
    return speedups.stop_reason, speedups.stop_message, progress.global_step


def with_handlers(trainer: Engine, evaluator: Engine, val_data: object) -> StopReason:
    LoopLimits(max_epochs=4, min_epochs=2).attach(trainer)
    ValidationSchedule(evaluator, val_data, val_check_interval=0.5).attach(trainer)
    EarlyStopping(evaluator, monitor="val_acc", mode="max", patience=3).attach(trainer)
    controller = StopController.of(trainer)
    assert controller is not None  # of() returns None for a trainer without ignite-speed handlers
    return controller.stop_reason


config: SpeedConfig = SpeedConfig.from_any({"max_steps": 10})
"""


def _public_names() -> dict[str, list[str]]:
    modules = {"ignite_speed": list(ignite_speed.__all__)}
    for sub in SUBPACKAGES:
        name = f"ignite_speed.{sub}"
        modules[name] = list(importlib.import_module(name).__all__)
    return modules


def test_top_level_all_is_literal_and_names_every_export():
    assert sorted(ignite_speed.__all__) == sorted([*ignite_speed._EXPORTS, "__version__"])
    assert len(set(ignite_speed.__all__)) == len(ignite_speed.__all__)


@pytest.mark.parametrize("module", ["ignite_speed", *(f"ignite_speed.{sub}" for sub in SUBPACKAGES)])
def test_every_public_name_resolves(module):
    mod = importlib.import_module(module)
    missing = [name for name in mod.__all__ if not hasattr(mod, name)]
    assert not missing, f"{module}.__all__ names what it does not define: {missing}"


@pytest.mark.slow
def test_a_user_file_importing_every_public_name_passes_mypy_strict(tmp_path):
    pytest.importorskip("mypy")
    # a name exported by several modules (StopController: the top level, handlers, loop) is one object
    imports = [f"from {module} import {name}" for module, names in _public_names().items() for name in names]
    user = "\n".join(imports) + "\n" + textwrap.dedent(QUICKSTART) + "\nversion: str = __version__\n"
    (tmp_path / "user_code.py").write_text(user)
    # The package these tests import: an installed wheel from site-packages, a source tree (an editable
    # install's import hook is invisible to mypy) through MYPYPATH. Its own modules are checked by
    # `mypy ignite_speed` under the project's settings: here, as for an installed package, only the user's
    # file reports errors.
    (tmp_path / "mypy.ini").write_text("[mypy]\nstrict = True\n\n[mypy-ignite_speed.*]\nignore_errors = True\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MYPYPATH")}
    installed = {pathlib.Path(sysconfig.get_path(key)).resolve() for key in ("purelib", "platlib")}
    if PACKAGE_ROOT.resolve() not in installed:
        env["MYPYPATH"] = str(PACKAGE_ROOT)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            "mypy.ini",
            "--no-incremental",
            "--cache-dir",
            os.devnull,
            "--python-executable",
            sys.executable,
            "user_code.py",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
