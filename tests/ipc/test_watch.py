"""Watched process-local channels (hub protocol 3): pushes instead of a receive per message.

These tests look at the hub's state (it runs on a thread of this process) and at raw frames,
to check both what travels and that the layer contract survives every way a watch can end.
"""

from __future__ import annotations

import asyncio
import marshal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import uvloop
from asgiref.sync import async_to_sync

from headrace.exceptions import ChannelFull, ChannelLayerError
from headrace.layers.ipc import IPCChannelLayer, hub
from headrace.layers.ipc import layer as ipc_layer
from headrace.layers.ipc.hub import HubState
from headrace.layers.ipc.wire import PROTOCOL_VERSION, Op, Status, encode_frame
from tests.ipc.support import HEADER, WAIT, hosted, read_frame, until


async def _raw_watcher(
    hub_path: str, state: HubState, channels: list[str]
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A hand-written protocol-3 client watching ``channels`` under ids 10, 11, …"""
    reader, writer = await asyncio.open_unix_connection(hub_path)
    writer.write(encode_frame((Op.HELLO, 1, 100, [], PROTOCOL_VERSION)))
    for number, channel in enumerate(channels):
        writer.write(encode_frame((Op.WATCH, 0, channel, 10 + number)))
    await writer.drain()
    assert await asyncio.wait_for(read_frame(reader), WAIT) == (1, Status.OK, PROTOCOL_VERSION)
    await asyncio.wait_for(until(lambda: all(c in state.watchers for c in channels)), WAIT)
    return reader, writer


async def test_group_message_to_watched_members_is_one_push(hub_path: str) -> None:
    layer, state = await hosted(hub_path)
    channels = [f"proc!member-{number}" for number in range(3)]
    for channel in channels:
        await layer.group_add("room", channel)
    reader, writer = await _raw_watcher(hub_path, state, channels)
    await layer.group_send("room", {"type": "m", "text": "once"})
    request_id, status, value = await asyncio.wait_for(read_frame(reader), WAIT)
    watch_ids, payload, _, counted = value
    assert (request_id, status, sorted(watch_ids), counted) == (0, Status.PUSH, [10, 11, 12], False)
    assert marshal.loads(payload) == {"type": "m", "text": "once"}
    writer.close()
    await layer.close()


async def test_counted_sends_keep_capacity_until_consumed(hub_path: str) -> None:
    layer, state = await hosted(hub_path, capacity=2)
    reader, writer = await _raw_watcher(hub_path, state, ["proc!slow"])
    await layer.send("proc!slow", {"type": "m", "n": 1})
    await layer.send("proc!slow", {"type": "m", "n": 2})
    with pytest.raises(ChannelFull):
        await layer.send("proc!slow", {"type": "m", "n": 3})
    pushed = [await asyncio.wait_for(read_frame(reader), WAIT) for _ in range(2)]
    assert [marshal.loads(frame[2][1])["n"] for frame in pushed] == [1, 2]
    assert all(frame[2][3] is True for frame in pushed)  # counted
    writer.write(encode_frame((Op.CONSUMED, 0, ["proc!slow"])))
    await writer.drain()
    connection = state.watchers["proc!slow"][0]
    await asyncio.wait_for(until(lambda: connection.held("proc!slow") == 1), WAIT)
    await layer.send("proc!slow", {"type": "m", "n": 4})
    writer.close()
    await layer.close()


async def test_idle_members_wake_together_and_rearm_without_requests(hub_path: str) -> None:
    layer, state = await hosted(hub_path, capacity=5)
    channels = [await layer.new_channel() for _ in range(200)]
    for channel in channels:
        await layer.group_add("many", channel)
    for number in range(3):
        receivers = [asyncio.ensure_future(layer.receive(channel)) for channel in channels]
        await asyncio.wait_for(until(lambda: len(state.watchers) == len(channels)), WAIT)
        await layer.group_send("many", {"type": "m", "n": number})
        received = await asyncio.wait_for(asyncio.gather(*receivers), WAIT)
        assert received == [{"type": "m", "n": number}] * len(channels)
    assert not state.waiters  # nothing was ever parked at the hub for these channels
    await layer.close()


async def test_group_copies_beyond_capacity_are_dropped_by_the_member(hub_path: str) -> None:
    layer, _ = await hosted(hub_path, capacity=2)
    channel = await layer.new_channel()
    await layer.group_add("burst", channel)
    await layer.send(channel, {"type": "m", "n": 0})
    assert await layer.receive(channel) == {"type": "m", "n": 0}  # now watched, nothing held
    for number in range(1, 6):
        await layer.group_send("burst", {"type": "m", "n": number})
    await layer.send("sync", {"type": "x"})  # a round trip: every push has arrived
    await layer.receive("sync")
    assert [(await layer.receive(channel))["n"] for _ in range(2)] == [1, 2]
    receiving = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(0.05)
    assert not receiving.done()
    receiving.cancel()
    await asyncio.gather(receiving, return_exceptions=True)
    await layer.close()


def _send_from_outside(hub_path: str, channel: str, number: int) -> None:
    """SEND over a blocking socket, without this test's event loop running."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as outside:
        outside.connect(hub_path)
        payload = marshal.dumps({"type": "m", "n": number})
        outside.sendall(
            encode_frame((Op.HELLO, 1, 100, [], PROTOCOL_VERSION))
            + encode_frame((Op.SEND, 2, channel, payload, 60))
        )
        answers = b""
        while len(answers) < 2 * 4 or len(answers) < _frames_length(answers, 2):
            answers += outside.recv(4096)


def _frames_length(data: bytes, frames: int) -> int:
    """How many bytes ``frames`` whole frames at the start of ``data`` take (as far as known)."""
    offset = 0
    for _ in range(frames):
        if len(data) < offset + 4:
            return offset + 4
        offset += 4 + HEADER.unpack_from(data, offset)[0]
    return offset


@pytest.mark.parametrize("moment", ["push-unread", "push-buffered", "push-handed-over"])
async def test_message_for_a_cancelled_receiver_goes_back_to_the_hub(
    hub_path: str, moment: str
) -> None:
    layer, state = await hosted(hub_path)
    other = IPCChannelLayer(path=hub_path)
    receiver = asyncio.ensure_future(layer.receive("proc!race"))
    await asyncio.wait_for(until(lambda: "proc!race" in state.watchers), WAIT)
    _send_from_outside(hub_path, "proc!race", 1)
    time.sleep(0.2)  # noqa: ASYNC251 - the push is in our socket, unread: the loop is blocked
    if moment == "push-buffered":
        await asyncio.sleep(0)  # cancelled first, then the push is read: it stays buffered
    elif moment == "push-handed-over":
        # The second loop turn reads the push and hands it to the receiver's future; the
        # receiver has not run yet when it is cancelled, so its message must be put back.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    receiver.cancel()
    await asyncio.gather(receiver, return_exceptions=True)
    await other.send("proc!race", {"type": "m", "n": 2})
    # The cancelled receiver was the last: the channel is unwatched, its message queued again.
    received = [(await asyncio.wait_for(other.receive("proc!race"), WAIT))["n"] for _ in "ab"]
    assert received == [1, 2]
    await other.close()
    await layer.close()


async def test_cancelled_receivers_leave_no_watch_behind(hub_path: str) -> None:
    layer, state = await hosted(hub_path)
    receivers = [asyncio.ensure_future(layer.receive(f"proc!gone-{n}")) for n in range(100)]
    await asyncio.wait_for(until(lambda: len(state.watchers) == 100), WAIT)
    for receiver in receivers:
        receiver.cancel()
    await asyncio.gather(*receivers, return_exceptions=True)
    await asyncio.wait_for(until(lambda: not state.watchers), WAIT)
    link = layer._link()
    await layer.send("after", {"type": "x"})  # answers come in order: every UNWATCH is answered
    await layer.receive("after")
    assert (link.watches, link.watched, link.retired, link.unwatching) == ({}, {}, {}, {})
    await layer.close()


def test_async_to_sync_receives_on_fresh_loops_lose_nothing(hub_path: str) -> None:
    """Every call runs on a new loop closed right after; what the hub pushed to a closing loop
    (the second message of each pair) must come back for the next call."""
    layer = IPCChannelLayer(path=hub_path)
    channel = async_to_sync(layer.new_channel)()
    received = []
    for number in range(0, 40, 2):
        async_to_sync(layer.send)(channel, {"type": "m", "n": number})
        async_to_sync(layer.send)(channel, {"type": "m", "n": number + 1})
        received.append(async_to_sync(layer.receive)(channel)["n"])
        received.append(async_to_sync(layer.receive)(channel)["n"])
    assert received == list(range(40))


@pytest.mark.parametrize("runner", ["asyncio", "uvloop"])
def test_loop_shutdown_hands_buffered_messages_back(hub_path: str, runner: str) -> None:
    layer = IPCChannelLayer(path=hub_path)
    run: Callable[[Any], Any] = asyncio.run if runner == "asyncio" else uvloop.run

    async def take_one(channel: str) -> dict[str, Any]:
        return await layer.receive(channel)

    async def prepare() -> str:
        channel = await layer.new_channel()
        for number in range(3):
            await layer.send(channel, {"type": "m", "n": number})
        return channel

    channel = run(prepare())
    assert [run(take_one(channel))["n"] for _ in range(3)] == [0, 1, 2]


async def test_receiving_on_a_second_connection_displaces_the_first(hub_path: str) -> None:
    layer, state = await hosted(hub_path)
    first = IPCChannelLayer(path=hub_path)
    second = IPCChannelLayer(path=hub_path)
    waiting = asyncio.ensure_future(first.receive("proc!shared"))
    await asyncio.wait_for(until(lambda: "proc!shared" in state.watchers), WAIT)
    taking = asyncio.ensure_future(second.receive("proc!shared"))
    with pytest.raises(ChannelLayerError, match="another event loop"):
        await asyncio.wait_for(waiting, WAIT)
    await layer.send("proc!shared", {"type": "m", "n": 1})
    assert await asyncio.wait_for(taking, WAIT) == {"type": "m", "n": 1}
    for each in (first, second, layer):
        await each.close()


async def test_expired_buffered_messages_release_capacity(hub_path: str) -> None:
    layer, state = await hosted(hub_path, capacity=1, expiry=1)
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "m", "n": 0})
    assert await layer.receive(channel) == {"type": "m", "n": 0}
    await layer.send(channel, {"type": "m", "n": 1})  # buffered in this process, counted
    with pytest.raises(ChannelFull):
        await layer.send(channel, {"type": "m", "n": 2})
    connection = state.watchers[channel][0]
    await asyncio.wait_for(until(lambda: connection.held(channel) == 0), WAIT)  # swept
    await layer.send(channel, {"type": "m", "n": 3})
    assert await asyncio.wait_for(layer.receive(channel), WAIT) == {"type": "m", "n": 3}
    await layer.close()


async def test_hub_without_watches_gets_a_receive_per_message(
    hub_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hub from before protocol 3 (its HELLO answer says so): receives park as before."""
    monkeypatch.setattr(hub, "PROTOCOL_VERSION", 2)
    layer, state = await hosted(hub_path)
    channel = await layer.new_channel()
    receiving = asyncio.ensure_future(layer.receive(channel))
    await asyncio.wait_for(until(lambda: channel in state.waiters), WAIT)
    assert not state.watchers
    await layer.send(channel, {"type": "m", "n": 1})
    assert await asyncio.wait_for(receiving, WAIT) == {"type": "m", "n": 1}
    await layer.close()


def test_receives_from_two_threads_on_separate_channels(hub_path: str) -> None:
    """Two event loops of one layer instance each watch their own channels."""
    layer = IPCChannelLayer(path=hub_path)
    channels = [async_to_sync(layer.new_channel)() for _ in range(2)]
    results: dict[str, list[int]] = {}

    def consume(channel: str) -> None:
        async def take() -> list[int]:
            return [(await layer.receive(channel))["n"] for _ in range(20)]

        results[channel] = asyncio.run(take())

    threads = [threading.Thread(target=consume, args=(channel,)) for channel in channels]
    for thread in threads:
        thread.start()
    for number in range(20):
        for channel in channels:
            async_to_sync(layer.send)(channel, {"type": "m", "n": number})
    for thread in threads:
        thread.join(WAIT)
    assert results == {channel: list(range(20)) for channel in channels}


async def test_channel_received_from_once_is_unwatched_when_idle(
    hub_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reply channel (received from once, then never again) must not stay watched."""
    monkeypatch.setattr(ipc_layer, "SWEEP_INTERVAL", 0.02)
    layer, state = await hosted(hub_path)
    busy, once = await layer.new_channel(), await layer.new_channel()
    await layer.send(once, {"type": "reply"})
    assert await layer.receive(once) == {"type": "reply"}
    waiting = asyncio.ensure_future(layer.receive(busy))  # a waiting receiver keeps its watch
    link = layer._link()
    await asyncio.wait_for(until(lambda: once not in state.watchers), WAIT)
    assert once not in link.watched
    assert busy in state.watchers
    assert busy in link.watched
    await layer.send(once, {"type": "late"})  # queued at the hub, taken by a new watch
    assert await asyncio.wait_for(layer.receive(once), WAIT) == {"type": "late"}
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    await layer.close()


async def test_message_handed_to_a_cancelled_receiver_goes_to_the_next_one(
    hub_path: str,
) -> None:
    layer, state = await hosted(hub_path)
    first = asyncio.ensure_future(layer.receive("proc!pair"))
    second = asyncio.ensure_future(layer.receive("proc!pair"))
    await asyncio.wait_for(until(lambda: "proc!pair" in state.watchers), WAIT)
    await asyncio.sleep(0)  # both receivers are waiting
    _send_from_outside(hub_path, "proc!pair", 1)
    time.sleep(0.2)  # noqa: ASYNC251 - the push is in our socket, unread: the loop is blocked
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # the push is handed to `first`, which has not run yet
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    assert await asyncio.wait_for(second, WAIT) == {"type": "m", "n": 1}
    await layer.close()


async def test_close_fails_a_waiting_receive_instead_of_hanging(hub_path: str) -> None:
    layer, state = await hosted(hub_path)
    waiting = asyncio.ensure_future(layer.receive("proc!closing"))
    await asyncio.wait_for(until(lambda: "proc!closing" in state.watchers), WAIT)
    await layer.close()
    with pytest.raises(ChannelLayerError, match="closed"):
        await asyncio.wait_for(waiting, WAIT)
    assert "proc!closing" not in state.watchers
