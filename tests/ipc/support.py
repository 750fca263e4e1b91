"""Helpers of the IPC layer tests: waiting on the hub thread's state, reading raw frames."""

from __future__ import annotations

import asyncio
import marshal
import struct
from collections.abc import Callable
from typing import Any

from headrace.layers.ipc import HubHost, IPCChannelLayer
from headrace.layers.ipc.hub import HubState

WAIT = 10.0
HEADER = struct.Struct("!I")


async def until(condition: Callable[[], bool]) -> None:
    """Yield until ``condition`` holds (callers bound the wait); it observes the hub thread's
    state, which offers no event to await."""
    while not condition():  # noqa: ASYNC110
        await asyncio.sleep(0.001)


async def hosted(hub_path: str, **config: Any) -> tuple[IPCChannelLayer, HubState]:
    """A layer connected to a hub this process hosts (so the test can look at its state)."""
    layer = IPCChannelLayer(path=hub_path, **config)
    await layer.send("warmup", {"type": "x"})
    await layer.receive("warmup")
    state = HubHost.for_path(hub_path).state
    assert state is not None
    return layer, state


async def read_frame(reader: asyncio.StreamReader) -> tuple[Any, ...]:
    (size,) = HEADER.unpack(await reader.readexactly(4))
    item: tuple[Any, ...] = marshal.loads(await reader.readexactly(size))
    return item
