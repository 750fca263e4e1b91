"""History and presence on the IPC layer: the public suite, and real processes dying."""

from __future__ import annotations

import asyncio
import contextlib
import marshal
import signal
from collections.abc import AsyncIterator

import pytest

from headrace.exceptions import ChannelLayerError
from headrace.layers import POSITION_KEY, Position
from headrace.layers.base import BaseChannelLayer, LayerMessage
from headrace.layers.ipc import IPCChannelLayer
from headrace.layers.ipc.wire import Op, Status, encode_frame, encode_message, stamp_payload
from headrace.testing.history import HistoryPresenceConformance, presence
from tests.ipc.support import (
    WAIT,
    PrivateHubLayers,
    hosted,
    module_process,
    read_frame,
    read_line,
)

GROUP = "room.lobby"
TTL = 1.0


class TestIPCHistoryPresence(PrivateHubLayers, HistoryPresenceConformance):
    """The public history and presence suite on the IPC layer."""


def watcher_layer(path: str) -> IPCChannelLayer:
    return IPCChannelLayer(
        path=path,
        history={GROUP: {"size": 1000, "ttl": 300}},
        presence={GROUP: {"ttl": TTL, "events": True}},
    )


@contextlib.asynccontextmanager
async def presence_member(
    path: str, name: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """Start ``tests.ipc.presence_member`` and wait until it has joined GROUP."""
    arguments = ("tests.ipc.presence_member", path, GROUP, str(TTL), name)
    async with module_process(*arguments) as (process, line):
        ready, channel = line.split()
        assert ready == "ready"
        yield process, channel


async def next_event(layer: BaseChannelLayer, channel: str, kind: str) -> LayerMessage:
    """The next ``kind`` event ``channel`` receives (group messages in between are skipped)."""
    while True:
        message = await asyncio.wait_for(layer.receive(channel), WAIT + 2 * TTL)
        if message["type"] == kind:
            return message


async def test_killed_member_process_leaves_within_ttl(hub_path: str) -> None:
    layer = watcher_layer(hub_path)
    await layer.send("warmup", {"type": "x"})  # this process hosts the hub
    await layer.receive("warmup")
    watcher = await layer.new_channel()
    await layer.group_add(GROUP, watcher, {"name": "watcher"})
    await next_event(layer, watcher, "presence.join")
    async with presence_member(hub_path, "doomed") as (process, doomed):
        joined = await next_event(layer, watcher, "presence.join")
        assert joined == presence("join", GROUP, doomed, {"name": "doomed"})
        assert (await layer.group_presence(GROUP))[doomed] == {"name": "doomed"}
        sent: list[Position] = []

        async def stream() -> None:
            while True:
                position = await layer.group_send(GROUP, {"type": "chat.message"})
                assert position is not None
                sent.append(position)
                await asyncio.sleep(0.002)

        streaming = asyncio.create_task(stream())
        try:
            while not (await read_line(process)).startswith("chat.message "):
                pass  # its own join first; then it is mid-stream
            process.send_signal(signal.SIGKILL)
            await asyncio.wait_for(process.wait(), WAIT)
            leave = await next_event(layer, watcher, "presence.leave")
        finally:
            streaming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await streaming
    assert leave == presence("leave", GROUP, doomed, {"name": "doomed"})
    assert await layer.group_presence(GROUP) == {watcher: {"name": "watcher"}}
    assert await layer.group_presence_count(GROUP) == 1
    offsets = [position.offset for position in sent]
    assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))  # the stream went on
    await layer.close()


async def test_survivor_of_a_killed_hub_gets_a_new_epoch_and_keeps_its_presence(
    hub_path: str,
) -> None:
    async with presence_member(hub_path, "hub") as (hub_process, hub_member):
        layer = watcher_layer(hub_path)  # the member process hosts the hub
        mine = await layer.new_channel()
        await layer.group_add(GROUP, mine, {"name": "survivor"})
        await next_event(layer, mine, "presence.join")
        before = await layer.group_send(GROUP, {"type": "chat.message"})
        assert before is not None
        assert set(await layer.group_presence(GROUP)) == {hub_member, mine}
        hub_process.send_signal(signal.SIGKILL)
        await asyncio.wait_for(hub_process.wait(), WAIT)
    history = await layer.group_history(GROUP, since=before)  # this process is the hub now
    assert history.recovered is False
    assert history.epoch != before.epoch
    assert await layer.group_presence(GROUP) == {mine: {"name": "survivor"}}
    after = await layer.group_send(GROUP, {"type": "chat.message", "n": 2})
    assert after == Position(history.epoch, 1)
    # Replayed quietly: no join reaches the survivor before the new message.
    received = [await asyncio.wait_for(layer.receive(mine), WAIT)]
    while received[-1].get("n") != 2:
        received.append(await asyncio.wait_for(layer.receive(mine), WAIT))
    assert received[-1] == {"type": "chat.message", "n": 2, POSITION_KEY: [history.epoch, 1]}
    assert [m["type"] for m in received[:-1]] in ([], ["chat.message"])  # ``before``, if kept
    await layer.close()


async def test_hub_stamps_and_keeps_without_decoding(hub_path: str) -> None:
    layer, state = await hosted(hub_path, history={"h.*": {"size": 5, "ttl": 60}})
    position = await layer.group_send("h.one", {"type": "m", "data": [1, {"x": "y"}]})
    assert position is not None
    (kept,) = state.history.logs["h.one"].entries
    assert kept[2] == encode_message({"type": "m", "data": [1, {"x": "y"}]})
    await layer.close()


@pytest.mark.parametrize(
    "message",
    [{}, {"type": "m"}, {"type": "m", "a": [1, 2, {"b": b"\x00"}], "s": "x" * 5000, "n": None}],
)
def test_stamped_payload_decodes_to_the_message_with_its_position(message: LayerMessage) -> None:
    stamped = stamp_payload(encode_message(message), "epoch1", 42)
    assert marshal.loads(stamped) == {**message, POSITION_KEY: ["epoch1", 42]}


def test_stamping_a_payload_of_another_encoder() -> None:
    payload = marshal.dumps({"type": "m", "k": "v"}, 2)  # no reference flags
    assert marshal.loads(stamp_payload(payload, "e", 1)) == {
        "type": "m",
        "k": "v",
        POSITION_KEY: ["e", 1],
    }


async def test_a_hub_without_history_is_refused(hub_path: str) -> None:
    """A protocol-3 hub (before history and presence) answers HELLO with 3."""

    async def old_hub(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        item = await read_frame(reader)
        assert item[0] == Op.HELLO
        writer.write(encode_frame((item[1], Status.OK, 3)))
        await writer.drain()
        await reader.read()  # until the client hangs up
        writer.close()

    server = await asyncio.start_unix_server(old_hub, hub_path)
    try:
        layer = IPCChannelLayer(
            path=hub_path, history={"h.*": {"size": 5, "ttl": 60}}, connect_timeout=2
        )
        with pytest.raises(ChannelLayerError, match="protocol 3"):
            await layer.group_send("h.x", {"type": "m"})
        await layer.close()
    finally:
        server.close()
