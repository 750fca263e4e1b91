"""The layers the history benchmark can run, by name: each entry builds a fresh layer with the
given ``CONFIG`` keywords and tears it down. Add a backend by adding an entry to BACKENDS
(``--backends`` picks them)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from headrace.layers import InMemoryChannelLayer
from headrace.layers.base import BaseChannelLayer
from headrace.layers.ipc import HubHost, IPCChannelLayer

Backend = Callable[..., AbstractAsyncContextManager[BaseChannelLayer]]


@asynccontextmanager
async def inmemory(**config: Any) -> AsyncIterator[BaseChannelLayer]:
    yield InMemoryChannelLayer(**config)


@asynccontextmanager
async def ipc(**config: Any) -> AsyncIterator[BaseChannelLayer]:
    """An IPC layer whose hub this process hosts (its thread's CPU time counts here)."""
    folder = tempfile.mkdtemp(prefix="hr-bench-")
    path = os.path.join(folder, "hub.sock")
    layer = IPCChannelLayer(path=path, **config)
    try:
        yield layer
    finally:
        await layer.close()
        HubHost.for_path(path).stop()
        shutil.rmtree(folder, ignore_errors=True)


BACKENDS: dict[str, Backend] = {"inmemory": inmemory, "ipc": ipc}
