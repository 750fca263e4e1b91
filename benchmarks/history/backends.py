"""The layers the history benchmark can run, by name: each entry builds a fresh layer with the
given ``CONFIG`` keywords and tears it down. Add a backend by adding an entry to BACKENDS
(``--backends`` picks them)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from headrace.layers import InMemoryChannelLayer
from headrace.layers.base import BaseChannelLayer
from headrace.layers.ipc import HubHost, IPCChannelLayer
from headrace.layers.redis import RedisChannelLayer

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


@asynccontextmanager
async def redis(**config: Any) -> AsyncIterator[BaseChannelLayer]:
    """A Redis layer on the Redis at ``HEADRACE_BENCH_REDIS`` (default 127.0.0.1:6379), on a
    prefix of its own, flushed afterwards. The Redis server's CPU time is not counted here
    (``bench_redis.py`` measures it)."""
    url = os.environ.get("HEADRACE_BENCH_REDIS", "redis://127.0.0.1:6379")
    layer = RedisChannelLayer(hosts=[url], prefix=f"bench-h-{uuid.uuid4().hex[:8]}", **config)
    try:
        yield layer
    finally:
        await layer.flush()
        await layer.close()


BACKENDS: dict[str, Backend] = {"inmemory": inmemory, "ipc": ipc, "redis": redis}
