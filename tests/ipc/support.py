"""Helpers of the IPC layer tests: waiting on the hub thread's state, reading raw frames."""

from __future__ import annotations

import asyncio
import contextlib
import marshal
import struct
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from headrace.layers.base import BaseChannelLayer
from headrace.layers.ipc import HubHost, IPCChannelLayer
from headrace.layers.ipc.hub import HubState

WAIT = 10.0
HEADER = struct.Struct("!I")
ROOT = Path(__file__).resolve().parents[2]


@contextlib.asynccontextmanager
async def module_process(*arguments: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """Run ``python -m <arguments>`` from the repository root; yield it with its first line of
    output (its "ready" line), and kill it at the end if it still runs."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", *arguments, cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    try:
        yield process, await read_line(process)
    finally:
        if process.returncode is None:
            process.kill()
        await asyncio.wait_for(process.wait(), WAIT)


async def read_line(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), WAIT)
    return line.decode().strip()


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


class PrivateHubLayers:
    """``make_layer()`` of the public suites: IPC layers on the test's private hub."""

    shares_state_between_instances = True

    @pytest.fixture(autouse=True)
    def _private_hub(self, hub_path: str) -> None:
        self.hub_path = hub_path

    async def make_layer(self, **config: Any) -> BaseChannelLayer:
        return IPCChannelLayer(path=self.hub_path, **config)
