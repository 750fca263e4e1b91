"""Small helpers shared across the package; this module imports nothing of headrace."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["import_string"]


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
