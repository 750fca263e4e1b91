"""The IPC layer: the public conformance suite, real cross-process groups, and process death."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from headrace.exceptions import InvalidChannelLayerError
from headrace.layers.base import BaseChannelLayer
from headrace.layers.ipc import HubHost, IPCChannelLayer
from headrace.testing.asgi_layers import AsgiLayerConformance
from headrace.testing.layers import ChannelLayerConformance
from tests.ipc.support import WAIT, PrivateHubLayers, module_process, read_line, until

ROOT = Path(__file__).resolve().parents[2]


class TestIPCConformance(PrivateHubLayers, ChannelLayerConformance):
    """The public suite on the IPC layer."""


class TestIPCAsgiConformance(AsgiLayerConformance):
    """The Channels-1 (ASGI draft) view over the IPC layer."""

    shares_state_between_instances = True

    @pytest.fixture(autouse=True)
    def _private_hub(self, hub_path: str) -> None:
        self.hub_path = hub_path

    def make_backend(self, **config: Any) -> BaseChannelLayer:
        return IPCChannelLayer(path=self.hub_path, **config)


@contextlib.asynccontextmanager
async def member(path: str, group: str, *channel: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """Start ``tests.ipc.member`` and wait until it has joined ``group``."""
    async with module_process("tests.ipc.member", path, group, *channel) as (process, line):
        assert line.startswith("ready ")
        yield process


async def test_group_send_reaches_other_processes(hub_path: str) -> None:
    layer = IPCChannelLayer(path=hub_path)
    async with member(hub_path, "room") as first, member(hub_path, "room") as second:
        await layer.group_send("room", {"type": "chat", "text": "hello both"})
        assert await read_line(first) == "hello both"
        assert await read_line(second) == "hello both"
    await layer.close()


async def test_survivors_keep_groups_when_the_hub_process_is_killed(hub_path: str) -> None:
    async with member(hub_path, "room") as hub_process:
        # The first process to use the path elected itself hub; now this process joins.
        layer = IPCChannelLayer(path=hub_path)
        mine = await layer.new_channel()
        await layer.group_add("room", mine)
        await layer.group_send("room", {"type": "chat", "text": "before"})
        assert (await asyncio.wait_for(layer.receive(mine), WAIT))["text"] == "before"
        assert await read_line(hub_process) == "before"
        parked = asyncio.ensure_future(layer.receive(mine))
        hub_process.send_signal(signal.SIGKILL)
        await asyncio.wait_for(hub_process.wait(), WAIT)
    # The lock died with the hub: this process takes over, replays its membership, and the
    # receive that was parked at the dead hub is re-parked at the new one.
    await layer.group_send("room", {"type": "chat", "text": "after"})
    assert (await asyncio.wait_for(parked, WAIT))["text"] == "after"
    assert HubHost.for_path(hub_path).running
    await layer.close()


async def test_killed_receiver_swallows_no_message(hub_path: str) -> None:
    layer = IPCChannelLayer(path=hub_path)
    await layer.send("warmup", {"type": "x"})  # this process hosts the hub
    await layer.receive("warmup")
    state = HubHost.for_path(hub_path).state
    assert state is not None
    async with member(hub_path, "room", "jobs") as doomed:
        await asyncio.wait_for(until(lambda: "jobs" in state.waiters), WAIT)
        doomed.send_signal(signal.SIGKILL)
        await asyncio.wait_for(doomed.wait(), WAIT)
    # The dead process was parked on "jobs"; the hub must not hand it the next message.
    await layer.send("jobs", {"type": "job", "text": "do it"})
    received = await asyncio.wait_for(layer.receive("jobs"), WAIT)
    assert received == {"type": "job", "text": "do it"}
    await layer.close()


def test_forked_child_does_not_keep_the_hub_lock(hub_path: str) -> None:
    host = HubHost.for_path(hub_path)
    assert host.try_start()
    release_read, release_write = os.pipe()
    started_read, started_write = os.pipe()
    child = os.fork()
    if child == 0:  # after the at-fork hooks: report, then hold on until the parent is done
        os.close(release_write)
        os.write(started_write, b"!")
        os.read(release_read, 1)
        os._exit(0)
    try:
        assert select.select([started_read], [], [], WAIT)[0], "the child did not start"
        assert os.read(started_read, 1) == b"!"
        host.stop()
        assert host.try_start(), "the forked child still holds the hub lock"
    finally:
        os.close(release_write)
        os.waitpid(child, 0)
        for fd in (release_read, started_read, started_write):
            os.close(fd)


async def test_second_instance_in_another_loop_sees_the_same_state(hub_path: str) -> None:
    layer = IPCChannelLayer(path=hub_path)
    await layer.send("cross-loop", {"type": "m", "n": 1})

    def other_loop() -> dict[str, Any]:
        return asyncio.run(IPCChannelLayer(path=hub_path).receive("cross-loop"))

    received = await asyncio.wait_for(asyncio.to_thread(other_loop), WAIT)
    assert received == {"type": "m", "n": 1}
    await layer.close()


async def test_standalone_hub_serves_clients(hub_path: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "headrace.layers.ipc",
        "--path",
        hub_path,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert "listening" in await read_line(process)
        layer = IPCChannelLayer(path=hub_path)
        await layer.send("standalone", {"type": "m"})
        assert await asyncio.wait_for(layer.receive("standalone"), WAIT) == {"type": "m"}
        assert not HubHost.for_path(hub_path).running
        await layer.close()
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), WAIT) == 0
        assert not Path(hub_path).exists()  # noqa: ASYNC240 - a stat in a test
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_unserialisable_message_is_a_type_error(hub_path: str) -> None:
    layer = IPCChannelLayer(path=hub_path)
    with pytest.raises(TypeError):
        await layer.send("bad", {"type": "m", "thing": object()})
    await layer.close()


def test_too_long_socket_path_is_a_configuration_error() -> None:
    with pytest.raises(InvalidChannelLayerError, match="107 bytes"):
        IPCChannelLayer(path="/tmp/" + "x" * 120)


async def test_processes_started_together_elect_one_hub(hub_path: str) -> None:
    async with contextlib.AsyncExitStack() as stack:
        members = await asyncio.gather(
            *(stack.enter_async_context(member(hub_path, "crowd")) for _ in range(3))
        )
        layer = IPCChannelLayer(path=hub_path)
        await layer.group_send("crowd", {"type": "chat", "text": "all of you"})
        for process in members:
            assert await read_line(process) == "all of you"
        await layer.close()


def test_works_on_uvloop(hub_path: str) -> None:
    import uvloop

    async def roundtrip() -> dict[str, Any]:
        layer = IPCChannelLayer(path=hub_path)
        channel = await layer.new_channel()
        await layer.group_add("uv", channel)
        await layer.group_send("uv", {"type": "m", "loop": "uvloop"})
        try:
            return await asyncio.wait_for(layer.receive(channel), WAIT)
        finally:
            await layer.close()

    assert uvloop.run(roundtrip()) == {"type": "m", "loop": "uvloop"}


async def test_cancelled_receives_leave_no_state_behind(hub_path: str) -> None:
    layer = IPCChannelLayer(path=hub_path)
    await layer.send("warmup", {"type": "x"})  # this process hosts the hub
    await layer.receive("warmup")
    state = HubHost.for_path(hub_path).state
    assert state is not None
    receivers = [asyncio.ensure_future(layer.receive(f"gone-{n}")) for n in range(200)]
    await asyncio.wait_for(until(lambda: len(state.waiters) == 200), WAIT)
    for receiver in receivers:
        receiver.cancel()
    await asyncio.gather(*receivers, return_exceptions=True)
    # Replies arrive in order: once this round trip is back, every CANCELLED answer is in.
    await layer.send("after", {"type": "x"})
    await asyncio.wait_for(layer.receive("after"), WAIT)
    assert state.waiters == {}
    link = layer._link()
    assert link.cancelled == {}
    assert link.pending == {}
    await layer.close()


async def test_message_in_flight_to_a_cancelled_receive_is_put_back(hub_path: str) -> None:
    layer = IPCChannelLayer(path=hub_path)
    await layer.send("warmup", {"type": "x"})  # connected, and this process hosts the hub
    await layer.receive("warmup")
    state = HubHost.for_path(hub_path).state
    assert state is not None
    receiver = asyncio.ensure_future(layer.receive("race"))
    await asyncio.wait_for(until(lambda: "race" in state.waiters), WAIT)
    sending = asyncio.ensure_future(layer.send("race", {"type": "m", "n": 1}))
    await asyncio.sleep(0)  # the SEND is written: the hub will hand the message to `receiver`
    receiver.cancel()
    await asyncio.gather(receiver, return_exceptions=True)
    await asyncio.wait_for(sending, WAIT)
    await layer.send("race", {"type": "m", "n": 2})
    assert (await asyncio.wait_for(layer.receive("race"), WAIT))["n"] == 1
    assert (await asyncio.wait_for(layer.receive("race"), WAIT))["n"] == 2
    await layer.close()


async def test_torn_and_garbage_frames_do_not_hurt_the_hub(hub_path: str) -> None:
    layer = IPCChannelLayer(path=hub_path)
    await layer.group_add("steady", "steady-member")
    # A client dying in the middle of a frame: the hub just drops the partial bytes.
    _, torn = await asyncio.open_unix_connection(hub_path)
    torn.write(b"\x00\x00\x00\x64partial")
    await torn.drain()
    torn.close()
    # Nonsense (bad marshal data, an absurd length): the hub hangs up on that client only.
    for junk in (b"\x00\x00\x00\x04\xff\xfe\xfd\xfc", b"\xff" * 8):
        reader, writer = await asyncio.open_unix_connection(hub_path)
        writer.write(junk)
        assert await asyncio.wait_for(reader.read(), WAIT) == b""
        writer.close()
    await layer.group_send("steady", {"type": "m", "text": "intact"})
    received = await asyncio.wait_for(layer.receive("steady-member"), WAIT)
    assert received == {"type": "m", "text": "intact"}
    await layer.close()


def test_async_to_sync_calls_do_not_leak_connections(hub_path: str) -> None:
    from asgiref.sync import async_to_sync

    layer = IPCChannelLayer(path=hub_path)

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    for number in range(10):  # every call runs on a fresh event loop that is closed after
        async_to_sync(layer.send)("from-sync", {"type": "m", "n": number})
    settled = open_fds()
    for number in range(10, 100):
        async_to_sync(layer.send)("from-sync", {"type": "m", "n": number})
    # The hub runs on a thread of this process and closes its end of each connection a moment
    # after the client does, so either count may include one such socket; a leak would add 90.
    deadline = time.monotonic() + WAIT
    while open_fds() > settled and time.monotonic() < deadline:
        time.sleep(0.01)
    assert open_fds() <= settled
    assert async_to_sync(layer.receive)("from-sync") == {"type": "m", "n": 0}
    assert len(layer._links) <= 1


async def test_idle_survivor_re_registers_its_groups_at_once(hub_path: str) -> None:
    """A process with memberships but nothing parked (it only adds channels to groups) makes
    no request after the hub dies; it must still reconnect and replay them at once, or other
    processes' group messages would miss those members."""
    async with member(hub_path, "room") as hub_process:
        layer = IPCChannelLayer(path=hub_path)
        await layer.group_add("idle-room", "idle-member")
        hub_process.send_signal(signal.SIGKILL)
        await asyncio.wait_for(hub_process.wait(), WAIT)
    host = HubHost.for_path(hub_path)

    def replayed() -> bool:
        state = host.state
        return (
            host.running
            and state is not None
            and "idle-member" in state.groups.get("idle-room", {})
        )

    await asyncio.wait_for(until(replayed), WAIT)
    await layer.close()
