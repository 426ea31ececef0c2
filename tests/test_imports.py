"""The package's import structure: no import cycle, counting every import statement (top level, inside
functions and under ``if TYPE_CHECKING:``), and ``import ignite_speed`` / ``import ignite_speed.handlers``
load no optional engine."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import ignite_speed

PACKAGE = pathlib.Path(ignite_speed.__file__).parent
OPTIONAL = (
    "deepspeed",
    "fairscale",
    "torch_xla",
    "apex",
    "omegaconf",
    "sklearn",
    "matplotlib",
    "pytorch_lightning",
    "optuna",
    "optuna_integration",
    "ray",
)


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path) -> set[str]:
    """Package modules ``path`` imports anywhere (functions and ``if TYPE_CHECKING:`` blocks too)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
            found.add(target)
            for alias in node.names:  # "from . import _dist" imports a module
                if (PACKAGE.parent / (target.replace(".", "/") + f"/{alias.name}.py")).exists():
                    found.add(f"{target}.{alias.name}")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            for alias in [] if module else node.names:
                if alias.name.startswith("ignite_speed"):
                    found.add(alias.name)
            if module and module.startswith("ignite_speed"):
                found.add(module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    # importing a.b.c runs the __init__ of a.b first
    for target in list(found):
        parts = target.split(".")
        found.update(".".join(parts[:i]) for i in range(2, len(parts)))
    # a module's own packages are being imported already when it runs: no edge back to them
    own = {".".join(name.split(".")[:i]) for i in range(1, len(name.split(".")) + 1)}
    return found - own - {"ignite_speed"}  # the package's __init__ imports nothing (names load lazily)


def test_no_import_cycle():
    graph = {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in state:
                walk(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_importing_the_package_and_the_handlers_loads_no_optional_engine():
    code = (
        "import sys, ignite_speed, ignite_speed.handlers, ignite_speed.speedups, ignite_speed.search; "
        f"print([m for m in {OPTIONAL!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
