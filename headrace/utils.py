"""Small helpers shared across the package; this module imports nothing of headrace."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

__all__ = ["import_string", "name_that_thing"]


def import_string(dotted_path: str) -> Any:
    """The object a ``package.module.attribute`` path names; ``ImportError`` saying why if none."""
    module_path, _, attribute = dotted_path.rpartition(".")
    if not module_path:
        raise ImportError(f"{dotted_path!r} is not a dotted path")
    module = importlib.import_module(module_path)
    try:
        return getattr(module, attribute)
    except AttributeError as exc:
        raise ImportError(f"module {module_path!r} has no attribute {attribute!r}") from exc


def name_that_thing(thing: Any) -> str:
    """A readable dotted name for a function, method, class or instance (Channels 1.x's
    helper for log lines): ``module.qualname``; an instance is named by its class."""
    if inspect.ismethod(thing):
        owner = thing.__self__
        owner_name = name_that_thing(owner if inspect.isclass(owner) else type(owner))
        return f"{owner_name}.{thing.__name__}"
    if inspect.isroutine(thing) or inspect.isclass(thing):
        module = getattr(thing, "__module__", None)
        name = getattr(thing, "__qualname__", None) or getattr(thing, "__name__", repr(thing))
        return f"{module}.{name}" if module else str(name)
    if hasattr(thing, "__class__"):
        return name_that_thing(type(thing))
    return repr(thing)
