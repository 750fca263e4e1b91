"""Group fan-out: one DELIVER_MANY frame per receiving connection, with the contract intact."""

from __future__ import annotations

import asyncio
import marshal
from typing import Any

from headrace.layers.ipc import IPCChannelLayer
from headrace.layers.ipc.hub import HubState
from headrace.layers.ipc.wire import PROTOCOL_BATCHED, PROTOCOL_VERSION, Op, Status, encode_frame
from tests.ipc.support import WAIT, hosted, read_frame, until


async def _raw_receiver(
    hub_path: str, state: HubState, hello: tuple[Any, ...]
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A hand-written client: HELLO, then a parked RECEIVE on raw-0..raw-2 (ids 10..12)."""
    reader, writer = await asyncio.open_unix_connection(hub_path)
    writer.write(encode_frame(hello))
    for number in range(3):
        writer.write(encode_frame((Op.RECEIVE, 10 + number, f"raw-{number}")))
    await writer.drain()
    assert await asyncio.wait_for(read_frame(reader), WAIT) == (1, Status.OK, PROTOCOL_VERSION)
    await asyncio.wait_for(until(lambda: len(state.waiters) == 3), WAIT)
    return reader, writer


async def test_parked_members_of_one_connection_get_one_frame(hub_path: str) -> None:
    layer, state = await hosted(hub_path)
    for number in range(3):
        await layer.group_add("room", f"raw-{number}")
    hello = (Op.HELLO, 1, 100, [], PROTOCOL_BATCHED)
    reader, writer = await _raw_receiver(hub_path, state, hello)
    await layer.group_send("room", {"type": "m", "text": "once"})
    request_id, status, value = await asyncio.wait_for(read_frame(reader), WAIT)
    request_ids, payload, _ = value
    assert (request_id, status, sorted(request_ids)) == (0, Status.DELIVER_MANY, [10, 11, 12])
    assert marshal.loads(payload) == {"type": "m", "text": "once"}
    writer.close()
    await layer.close()


async def test_client_without_batching_gets_one_reply_per_receive(hub_path: str) -> None:
    """A client from before DELIVER_MANY (no protocol version in HELLO) keeps working."""
    layer, state = await hosted(hub_path)
    for number in range(3):
        await layer.group_add("room", f"raw-{number}")
    reader, writer = await _raw_receiver(hub_path, state, (Op.HELLO, 1, 100, []))
    await layer.group_send("room", {"type": "m", "text": "each"})
    replies = [await asyncio.wait_for(read_frame(reader), WAIT) for _ in range(3)]
    assert sorted(reply[0] for reply in replies) == [10, 11, 12]
    for _, status, (payload, _) in replies:
        assert status == Status.OK
        assert marshal.loads(payload) == {"type": "m", "text": "each"}
    writer.close()
    await layer.close()


async def test_fan_out_mixes_parked_queued_and_full_members(hub_path: str) -> None:
    layer, _ = await hosted(hub_path)
    parked = [f"parked-{number}" for number in range(50)]
    for channel in [*parked, "idle", "full"]:
        await layer.group_add("mixed", channel)
    await layer.send("full", {"type": "old", "n": 1})
    await layer.send("full", {"type": "old", "n": 2})
    receivers = [asyncio.ensure_future(layer.receive(channel)) for channel in parked]
    # A round trip after the RECEIVEs were written: the hub has parked them all.
    await layer.send("sync", {"type": "x"})
    await layer.receive("sync")
    await layer.group_send("mixed", {"type": "m", "n": 3})  # "full" is skipped, no error
    received = await asyncio.wait_for(asyncio.gather(*receivers), WAIT)
    assert received == [{"type": "m", "n": 3}] * len(parked)
    assert received[0] is not received[1]  # every receiver decodes its own copy
    assert await layer.receive("idle") == {"type": "m", "n": 3}
    assert [(await layer.receive("full"))["n"] for _ in range(2)] == [1, 2]
    await layer.close()


async def test_receive_cancelled_while_its_group_message_travels_keeps_it(hub_path: str) -> None:
    layer, state = await hosted(hub_path)
    await layer.group_add("race", "stay")
    await layer.group_add("race", "leave")
    staying = asyncio.ensure_future(layer.receive("stay"))
    leaving = asyncio.ensure_future(layer.receive("leave"))
    await asyncio.wait_for(until(lambda: len(state.waiters) == 2), WAIT)
    sending = asyncio.ensure_future(layer.group_send("race", {"type": "m", "n": 1}))
    await asyncio.sleep(0)  # the GROUP_SEND is written: the hub answers both receives at once
    leaving.cancel()
    await asyncio.gather(leaving, return_exceptions=True)
    await asyncio.wait_for(sending, WAIT)
    assert await asyncio.wait_for(staying, WAIT) == {"type": "m", "n": 1}
    assert await asyncio.wait_for(layer.receive("leave"), WAIT) == {"type": "m", "n": 1}
    await layer.close()


async def test_group_message_order_per_channel_is_kept(hub_path: str) -> None:
    layer, _ = await hosted(hub_path)
    sender = IPCChannelLayer(path=hub_path, capacity=100)
    await layer.group_add("ordered", "first")
    await layer.group_add("ordered", "second")
    for number in range(20):
        await sender.group_send("ordered", {"type": "m", "n": number})
    for channel in ("first", "second"):
        got = [(await layer.receive(channel))["n"] for _ in range(20)]
        assert got == list(range(20))
    await sender.close()
    await layer.close()


async def test_queued_copies_picked_up_together_share_one_frame(hub_path: str) -> None:
    layer, _ = await hosted(hub_path)
    for number in range(3):
        await layer.group_add("later", f"raw-{number}")
    await layer.group_send("later", {"type": "m", "text": "queued"})
    reader, writer = await asyncio.open_unix_connection(hub_path)
    hello = encode_frame((Op.HELLO, 1, 100, [], PROTOCOL_BATCHED))
    receives = [encode_frame((Op.RECEIVE, 10 + n, f"raw-{n}")) for n in range(3)]
    writer.write(b"".join([hello, *receives]))  # one write: the hub reads it in one go
    await writer.drain()
    assert await asyncio.wait_for(read_frame(reader), WAIT) == (1, Status.OK, PROTOCOL_VERSION)
    request_id, status, (request_ids, payload, _) = await asyncio.wait_for(read_frame(reader), WAIT)
    assert (request_id, status, request_ids) == (0, Status.DELIVER_MANY, [10, 11, 12])
    assert marshal.loads(payload) == {"type": "m", "text": "queued"}
    writer.close()
    await layer.close()
