"""Generic consumers.

The modern (Channels 4) ones live in :mod:`headrace.generic.websocket` and
:mod:`headrace.generic.http`; the Channels-1 ones are :class:`BaseConsumer` (here) and
:mod:`headrace.generic.websockets` (plural, as in Channels 1.x). ``BaseConsumer`` is imported
on first access, so importing a modern submodule does not load the 1.x session machinery."""

from __future__ import annotations

from typing import Any

__all__ = ["BaseConsumer"]


def __getattr__(name: str) -> Any:
    if name == "BaseConsumer":
        from headrace.generic.base import BaseConsumer

        return BaseConsumer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
