"""Resolves the cross-references that Sphinx's Python domain leaves unresolved, so that ``-n`` (nitpicky) finds
only real mistakes.

* A name of the package under another path than the one it is documented under (``ignite_speed.loop.StopController``
  and ``ignite_speed.loop.stop.StopController`` for ``ignite_speed.StopController``, or ``state_dict`` inside
  a class) links to the documented object: the target is imported and matched by identity.
* A short name that autodoc writes for an annotation imported under ``if TYPE_CHECKING:`` (``Engine``) is read
  as the full name, which intersphinx then resolves.
* A type of the package that no ``__all__`` exports (a private helper or an internal class named in a signature)
  is shown as code without a link: it is not part of the documented API. A public name that is not documented,
  or a name that does not import, still warns.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from docutils import nodes
from sphinx.util.nodes import make_refnode

# short names of annotations that live under `if TYPE_CHECKING:` in the package -> the full name
SHORT_NAMES = {
    "Engine": "ignite.engine.engine.Engine",
    "State": "ignite.engine.events.State",
    "Events": "ignite.engine.events.Events",
    "Checkpoint": "ignite.handlers.checkpoint.Checkpoint",
    "nn.Module": "torch.nn.Module",
}

_MISSING = object()


def _import(path: str) -> Any:
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = inspect.getattr_static(obj, attr, _MISSING) if inspect.isclass(obj) else getattr(obj, attr, _MISSING)
            if obj is _MISSING:
                return _MISSING
        return obj
    return _MISSING


def _identifiable(obj: Any) -> bool:
    return (
        inspect.isclass(obj)
        or inspect.isroutine(obj)
        or inspect.ismodule(obj)
        or isinstance(obj, (property, staticmethod, classmethod))
    )


def _documented(env: Any) -> dict[int, tuple[str, str, str]]:
    """id(object) -> (docname, node id, documented name) of every object the docs document."""
    cache = getattr(env, "_ignite_speed_documented", None)
    if cache is None:
        cache = {}
        for name, entry in env.get_domain("py").objects.items():
            obj = _import(name)
            if obj is not _MISSING and _identifiable(obj) and not entry.aliased:
                cache.setdefault(id(obj), (entry.docname, entry.node_id, name))
        env._ignite_speed_documented = cache
    return cache


# the packages whose __all__ is the public API (ignite_speed.search exports its adapters from their own modules)
_PUBLIC_PACKAGES = (
    "ignite_speed",
    "ignite_speed.config",
    "ignite_speed.data",
    "ignite_speed.distributed",
    "ignite_speed.handlers",
    "ignite_speed.loop",
    "ignite_speed.report",
    "ignite_speed.step",
)


def _public_ids() -> set[int]:
    ids: set[int] = set()
    for package in _PUBLIC_PACKAGES:
        module = importlib.import_module(package)
        ids.update(id(getattr(module, name)) for name in module.__all__ if _identifiable(getattr(module, name)))
    return ids


def _public_names() -> set[str]:
    names: set[str] = set()
    for package in _PUBLIC_PACKAGES:
        names.update(importlib.import_module(package).__all__)
    return names


def _by_suffix(env: Any, target: str) -> tuple[str, str, str] | None:
    """The one documented object whose name ends with ``.target`` (``Precision.step``, ``PREEMPTED_EXIT_CODE``)."""
    found = {
        (e.docname, e.node_id, name)
        for name, e in env.get_domain("py").objects.items()
        if name.endswith("." + target) and not e.aliased
    }
    objects = {id(_import(name)) for _, _, name in found}
    return min(found) if found and len(objects) == 1 else None


def _candidates(node: Any) -> list[str]:
    target = node["reftarget"].lstrip(".~")
    module, cls = node.get("py:module"), node.get("py:class")
    found = [target]
    if module and cls:
        found.append(f"{module}.{cls}.{target}")
        defined_in = getattr(_import(f"{module}.{cls}"), "__module__", None)  # the module the class is written in
        if isinstance(defined_in, str):
            found.append(f"{defined_in}.{target}")
    if module:
        found.append(f"{module}.{target}")
    return found


def resolve(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    if node.get("refdomain") != "py":
        return None
    if node["reftarget"] in SHORT_NAMES:  # rewritten in place: intersphinx, which runs next, resolves it
        node["reftarget"] = SHORT_NAMES[node["reftarget"]]
        return None
    documented = _documented(env)
    for name in _candidates(node):
        obj = _import(name)
        if obj is _MISSING:
            continue
        if _identifiable(obj) and id(obj) in documented:
            docname, node_id, title = documented[id(obj)]
            return make_refnode(app.builder, node["refdoc"], docname, node_id, contnode, title)
        if name.startswith("ignite_speed") and _internal(name, obj):
            return contnode if isinstance(contnode, nodes.Node) else None  # internal: code, no link
    if node.get("reftype") == "attr":  # an instance attribute (set in __init__): the class's entry
        for name in _candidates(node):
            owner = _import(name.rsplit(".", 1)[0]) if "." in name else _MISSING
            if inspect.isclass(owner) and id(owner) in documented:
                docname, node_id, title = documented[id(owner)]
                return make_refnode(app.builder, node["refdoc"], docname, node_id, contnode, title)
        target = node["reftarget"].lstrip(".~")
        entry = _by_suffix(env, target.rsplit(".", 1)[0]) if "." in target else None
        if entry is not None and inspect.isclass(_import(entry[2])):
            return make_refnode(app.builder, node["refdoc"], entry[0], entry[1], contnode, entry[2])
    entry = _by_suffix(env, node["reftarget"].lstrip(".~"))
    if entry is not None:
        return make_refnode(app.builder, node["refdoc"], entry[0], entry[1], contnode, entry[2])
    return None


def _internal(name: str, obj: Any) -> bool:
    """A module, a private name, or an object of the package that no ``__all__`` exports."""
    if inspect.ismodule(obj) or name.rsplit(".", 1)[-1].startswith("_"):
        return True
    if not _identifiable(obj):  # a constant: public if some __all__ names it
        return name.rsplit(".", 1)[-1] not in _public_names()
    owner = getattr(obj, "__module__", None) or getattr(getattr(obj, "fget", None), "__module__", "") or ""
    return owner.startswith("ignite_speed") and id(obj) not in _public_ids()


def keep_phrases_out_of_types(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """Napoleon reads ``text: more text`` on the first line of a property's or constant's docstring as
    ``type: description``; where the part before the colon is a phrase (it has a space), put the line back."""
    if what not in ("property", "data", "attribute"):
        return
    for i, line in enumerate(lines):
        if line.startswith(":type: ") and " " in line[len(":type: ") :].strip():
            description = lines[:i]
            while description and not description[-1].strip():
                description.pop()
            first = line[len(":type: ") :] + ": " + (description[0] if description else "")
            lines[:] = [first, *description[1:], *lines[i + 1 :]]
            return


def connect(app: Any) -> None:
    app.connect("missing-reference", resolve, priority=400)  # before intersphinx (500)
    app.connect("autodoc-process-docstring", keep_phrases_out_of_types, priority=600)  # after napoleon (500)
