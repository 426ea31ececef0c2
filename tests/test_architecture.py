"""The shape the package keeps (docs/architecture.rst): sizes, layers, one handler protocol."""

from __future__ import annotations

import ast
import pathlib

import ignite_speed
from ignite_speed.handlers import (
    EarlyStopping,
    LoopHandler,
    LoopLimits,
    NonFiniteLossGuard,
    TimeBudget,
    TrainBatchLimit,
    ValidationSchedule,
)
from ignite_speed.loop.hooks import HOOKS, LoopHooks

PACKAGE = pathlib.Path(ignite_speed.__file__).parent
MAX_CLASS_LINES = 400
MAX_FUNCTION_LINES = 80
MAX_TOP_LEVEL_MODULES = 12
MAX_LOOP_MODULES = 15


def _definitions() -> list[tuple[str, ast.AST]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append((f"{path.relative_to(PACKAGE.parent)}:{node.name}", node))
    return found


def _lines(node: ast.AST) -> int:
    return node.end_lineno - node.lineno + 1  # type: ignore[attr-defined,operator]


def test_no_class_over_400_lines_and_no_function_over_80():
    too_long = [
        f"{name} ({_lines(node)} lines)"
        for name, node in _definitions()
        if _lines(node) > (MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else MAX_FUNCTION_LINES)
    ]
    assert too_long == []


def test_at_most_12_modules_at_the_top_level():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_at_most_15_modules_in_the_loop():
    modules = sorted(p.name for p in (PACKAGE / "loop").rglob("*.py"))
    assert len(modules) <= MAX_LOOP_MODULES, modules


def test_every_handler_is_a_loop_handler_with_a_name_of_its_own():
    handlers = (LoopLimits, TrainBatchLimit, ValidationSchedule, TimeBudget, EarlyStopping, NonFiniteLossGuard)
    assert all(issubclass(h, LoopHandler) and issubclass(h, LoopHooks) for h in handlers)
    names = [h.name for h in handlers]
    assert len(set(names)) == len(names) and "" not in names and "loop" not in names
    assert set(HOOKS) <= set(dir(LoopHooks))


def test_the_loop_imports_no_handler_and_the_config_nothing_above_it():
    def imports(package: str) -> set[str]:
        found = set()
        for path in (PACKAGE / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module:
                    found.add(node.module.lstrip("."))
        return found

    def above(package: str, layers: set[str]) -> set[str]:
        return {m for m in imports(package) if m.removeprefix("ignite_speed.").split(".")[0] in layers}

    assert above("loop", {"handlers", "speedups", "step", "report"}) == set()
    assert above("config", {"handlers", "loop", "step", "speedups", "report"}) == set()


def test_no_private_module_attribute_of_the_loop_is_read_elsewhere():
    # the loop's collaborators (handlers, the resume machinery, the facade) use its public attributes only
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "training_loop.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "loop"
                and node.attr.startswith("_")
            ):
                offenders.append(f"{path.name}: loop.{node.attr}")
    assert offenders == []


def test_no_private_function_or_class_is_imported_from_another_package():
    # a private name (``_helper``) may be used inside its own sub-package only; modules such as ``_dist`` are
    # imported as modules
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        package = path.parent
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.level):
                continue
            source = package
            for _ in range(node.level - 1):
                source = source.parent
            target = source.joinpath(*(node.module or "").split(".")) if node.module else source
            for alias in node.names:
                private = alias.name.startswith("_") and not alias.name.startswith("__")
                is_module = (target / f"{alias.name}.py").exists() or (target / alias.name).is_dir()
                same_package = (target if target.is_dir() else target.parent) == package
                if private and not is_module and not same_package:
                    offenders.append(f"{path.relative_to(PACKAGE)}: {alias.name}")
    assert offenders == []


def test_only_the_loop_assigns_its_attributes():
    # helpers, handlers and the facade change the loop through its methods (begin_run, configure, ...)
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "training_loop.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            targets = (
                node.targets
                if isinstance(node, ast.Assign)
                else [node.target]
                if isinstance(node, (ast.AugAssign, ast.AnnAssign))
                else []
            )
            for target in targets:
                owner = target.value if isinstance(target, ast.Attribute) else None
                if owner is not None and ast.unparse(owner) in ("loop", "self.loop", "self._loop"):
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {ast.unparse(target)}")
    assert offenders == []


def _handler_classes() -> list[type]:
    import inspect

    import ignite_speed.handlers as handlers

    return [
        obj
        for _, obj in inspect.getmembers(handlers, inspect.isclass)
        if issubclass(obj, LoopHandler) and obj is not LoopHandler
    ]


def test_every_handlers_attach_takes_the_trainer_only():
    import inspect

    offenders = [
        f"{cls.__name__}.attach{inspect.signature(cls.attach)}"
        for cls in _handler_classes()
        if list(inspect.signature(cls.attach).parameters) != ["self", "trainer"]
    ]
    assert offenders == []


def test_no_from_or_for_classmethod_constructors_on_handler_classes():
    # a handler is built one way, its constructor (from its slice of the config: ignite_speed.config.slices)
    offenders = [
        f"{cls.__name__}.{name}"
        for cls in _handler_classes()
        for name, value in vars(cls).items()
        if isinstance(value, (classmethod, staticmethod)) and name.startswith(("from_", "for_"))
    ]
    assert offenders == []
