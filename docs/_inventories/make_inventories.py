"""Writes the intersphinx inventories that docs/conf.py reads: python.inv, torch.inv and ignite.inv.

CI builds the docs without network, so the inventories live in the repository. Each holds exactly the objects
that the docs and the package's type hints refer to, with their addresses on docs.python.org/3,
pytorch.org/docs/stable and pytorch.org/ignite (the base addresses are in docs/conf.py's intersphinx_mapping).
A name autodoc writes under its defining module (``torch.nn.modules.module.Module``) points to the page of the
public name (``torch.nn.Module``). When ``sphinx-build -n`` reports a torch, Ignite or Python name as not found,
add it below and run ``python docs/_inventories/make_inventories.py``.
"""

from __future__ import annotations

import pathlib
import zlib

HERE = pathlib.Path(__file__).parent

# name -> (role, address relative to the project's base address)
PYTHON = {
    "argparse.Namespace": ("class", "library/argparse.html#argparse.Namespace"),
    "collections.abc.Callable": ("class", "library/collections.abc.html#collections.abc.Callable"),
    "collections.abc.Iterable": ("class", "library/collections.abc.html#collections.abc.Iterable"),
    "collections.abc.Iterator": ("class", "library/collections.abc.html#collections.abc.Iterator"),
    "collections.abc.Mapping": ("class", "library/collections.abc.html#collections.abc.Mapping"),
    "collections.abc.Sequence": ("class", "library/collections.abc.html#collections.abc.Sequence"),
    "dataclasses.InitVar": ("class", "library/dataclasses.html#dataclasses.InitVar"),
    "dataclasses.dataclass": ("function", "library/dataclasses.html#dataclasses.dataclass"),
    "datetime.timedelta": ("class", "library/datetime.html#datetime.timedelta"),
    "enum.Enum": ("class", "library/enum.html#enum.Enum"),
    "logging.Logger": ("class", "library/logging.html#logging.Logger"),
    "os.PathLike": ("class", "library/os.html#os.PathLike"),
    "pathlib.Path": ("class", "library/pathlib.html#pathlib.Path"),
    "signal.Signals": ("class", "library/signal.html#signal.Signals"),
    "typing.Any": ("data", "library/typing.html#typing.Any"),
    "warnings.warn": ("function", "library/warnings.html#warnings.warn"),
    "FutureWarning": ("exception", "library/exceptions.html#FutureWarning"),
    "KeyboardInterrupt": ("exception", "library/exceptions.html#KeyboardInterrupt"),
    "RuntimeError": ("exception", "library/exceptions.html#RuntimeError"),
    "TypeError": ("exception", "library/exceptions.html#TypeError"),
    "UserWarning": ("exception", "library/exceptions.html#UserWarning"),
    "ValueError": ("exception", "library/exceptions.html#ValueError"),
}

_MODULE = "generated/torch.nn.Module.html#torch.nn.Module"
_OPTIMIZER = "optim.html#torch.optim.Optimizer"
_DATALOADER = "data.html#torch.utils.data.DataLoader"
_DATASET = "data.html#torch.utils.data.Dataset"
_GRADSCALER = "amp.html#torch.amp.GradScaler"
_DDP = "generated/torch.nn.parallel.DistributedDataParallel.html#torch.nn.parallel.DistributedDataParallel"
TORCH = {
    "torch.Tensor": ("class", "tensors.html#torch.Tensor"),
    "torch.device": ("class", "tensor_attributes.html#torch.device"),
    "torch.dtype": ("class", "tensor_attributes.html#torch.dtype"),
    "torch.nn.Module": ("class", _MODULE),
    "torch.nn.modules.module.Module": ("class", _MODULE),
    "torch.nn.parameter.Parameter": (
        "class",
        "generated/torch.nn.parameter.Parameter.html#torch.nn.parameter.Parameter",
    ),
    "torch.nn.Parameter": ("class", "generated/torch.nn.parameter.Parameter.html#torch.nn.parameter.Parameter"),
    "torch.nn.parallel.DistributedDataParallel": ("class", _DDP),
    "torch.nn.parallel.distributed.DistributedDataParallel": ("class", _DDP),
    "torch.optim.Optimizer": ("class", _OPTIMIZER),
    "torch.optim.optimizer.Optimizer": ("class", _OPTIMIZER),
    "torch.utils.data.DataLoader": ("class", _DATALOADER),
    "torch.utils.data.dataloader.DataLoader": ("class", _DATALOADER),
    "torch.utils.data.Dataset": ("class", _DATASET),
    "torch.utils.data.dataset.Dataset": ("class", _DATASET),
    "torch.utils.data.TensorDataset": ("class", "data.html#torch.utils.data.TensorDataset"),
    "torch.utils.data.dataset.TensorDataset": ("class", "data.html#torch.utils.data.TensorDataset"),
    "torch.utils.data.Sampler": ("class", "data.html#torch.utils.data.Sampler"),
    "torch.utils.data.distributed.DistributedSampler": (
        "class",
        "data.html#torch.utils.data.distributed.DistributedSampler",
    ),
    "torch.amp.GradScaler": ("class", _GRADSCALER),
    "torch.amp.grad_scaler.GradScaler": ("class", _GRADSCALER),
    "torch.autocast": ("class", "amp.html#torch.autocast"),
}

_ENGINE = "generated/ignite.engine.engine.Engine.html#ignite.engine.engine.Engine"
_STATE = "generated/ignite.engine.events.State.html#ignite.engine.events.State"
_EVENTS = "generated/ignite.engine.events.Events.html#ignite.engine.events.Events"
_CHECKPOINT = "generated/ignite.handlers.checkpoint.Checkpoint.html#ignite.handlers.checkpoint.Checkpoint"
_ES = "generated/ignite.handlers.early_stopping.EarlyStopping.html#ignite.handlers.early_stopping.EarlyStopping"
IGNITE = {
    "ignite.engine.engine.Engine": ("class", _ENGINE),
    "ignite.engine.Engine": ("class", _ENGINE),
    "ignite.engine.events.State": ("class", _STATE),
    "ignite.engine.State": ("class", _STATE),
    "ignite.engine.events.Events": ("class", _EVENTS),
    "ignite.engine.Events": ("class", _EVENTS),
    "ignite.handlers.checkpoint.Checkpoint": ("class", _CHECKPOINT),
    "ignite.handlers.Checkpoint": ("class", _CHECKPOINT),
    "ignite.handlers.early_stopping.EarlyStopping": ("class", _ES),
    "ignite.handlers.EarlyStopping": ("class", _ES),
    "ignite.engine.create_supervised_trainer": (
        "function",
        "generated/ignite.engine.create_supervised_trainer.html#ignite.engine.create_supervised_trainer",
    ),
    "ignite.engine.create_supervised_evaluator": (
        "function",
        "generated/ignite.engine.create_supervised_evaluator.html#ignite.engine.create_supervised_evaluator",
    ),
    "ignite.metrics.Metric": ("class", "generated/ignite.metrics.metric.Metric.html#ignite.metrics.metric.Metric"),
}


def write(path: pathlib.Path, project: str, version: str, objects: dict[str, tuple[str, str]]) -> None:
    """Sphinx's inventory format, version 2 (what ``sphinx.util.inventory.InventoryFile`` reads)."""
    header = (
        f"# Sphinx inventory version 2\n# Project: {project}\n# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    body = "".join(f"{name} py:{role} 1 {uri} -\n" for name, (role, uri) in sorted(objects.items()))
    path.write_bytes(header.encode() + zlib.compress(body.encode(), 9))


if __name__ == "__main__":
    write(HERE / "python.inv", "Python", "3", PYTHON)
    write(HERE / "torch.inv", "PyTorch", "stable", TORCH)
    write(HERE / "ignite.inv", "PyTorch-Ignite", "0.5", IGNITE)
