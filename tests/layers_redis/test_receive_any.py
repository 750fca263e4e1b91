"""RedisChannelLayer.receive_any: one blocking pop over several normal channels (the 1.x worker's
receive), taking one message per call and leaving the rest in Redis."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from headrace.layers.redis import RedisChannelLayer
from tests.layers_redis.conftest import close_and_drop, unique_prefix
from tests.layers_redis.servers import RedisProcess

TIMEOUT = 10


@pytest.fixture
async def pair(system_redis: tuple[str, int]) -> Any:
    prefix = unique_prefix()
    layers = [RedisChannelLayer(hosts=[system_redis], prefix=prefix) for _ in range(2)]
    yield layers
    await close_and_drop(system_redis, prefix, *layers)


async def send_numbered(layer: RedisChannelLayer, *channels: str) -> None:
    """Send ``{"type": "job", "n": 1, 2, ...}`` to ``channels`` in turn."""
    for number, channel in enumerate(channels, 1):
        await layer.send(channel, {"type": "job", "n": number})


async def test_each_call_takes_one_message_of_any_channel(
    pair: list[RedisChannelLayer],
) -> None:
    receiver, sender = pair
    await send_numbered(sender, "any.a", "any.b", "any.a")
    taken = []
    for _ in range(3):
        answer = await asyncio.wait_for(receiver.receive_any(["any.a", "any.b", "any.c"]), TIMEOUT)
        assert answer is not None
        taken.append(answer)
    assert sorted((channel, message["n"]) for channel, message in taken) == [
        ("any.a", 1),
        ("any.a", 3),
        ("any.b", 2),
    ]
    assert [m["n"] for c, m in taken if c == "any.a"] == [1, 3]  # per-channel order holds


async def test_what_one_call_does_not_take_stays_for_another_process(
    pair: list[RedisChannelLayer],
) -> None:
    first, second = pair
    await send_numbered(first, "stay.x", "stay.x")
    answer = await asyncio.wait_for(first.receive_any(["stay.x", "stay.y"]), TIMEOUT)
    assert answer == ("stay.x", {"type": "job", "n": 1})
    assert await asyncio.wait_for(second.receive("stay.x"), TIMEOUT) == {"type": "job", "n": 2}


async def test_a_cancelled_call_leaves_the_next_message_in_redis(
    pair: list[RedisChannelLayer],
) -> None:
    waiting, other = pair
    await waiting.send("gone.warm", {"type": "warm"})
    assert await waiting.receive_any(["gone.warm"]) == ("gone.warm", {"type": "warm"})
    given_up = asyncio.ensure_future(waiting.receive_any(["gone.jobs", "gone.more"]))
    await asyncio.sleep(0.2)  # lets its blocking pop reach Redis (the case under test)
    given_up.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await given_up
    assert given_up.cancelled()
    await other.send("gone.jobs", {"type": "job"})
    assert await asyncio.wait_for(other.receive("gone.jobs"), TIMEOUT) == {"type": "job"}


async def test_an_expired_message_is_skipped(system_redis: tuple[str, int]) -> None:
    prefix = unique_prefix()
    short = RedisChannelLayer(hosts=[system_redis], prefix=prefix, expiry=0.05)
    receiver = RedisChannelLayer(hosts=[system_redis], prefix=prefix)
    try:
        await short.send("old.q", {"type": "stale"})
        await asyncio.sleep(0.2)
        await receiver.send("old.q", {"type": "fresh"})
        answer = await asyncio.wait_for(receiver.receive_any(["old.q"]), TIMEOUT)
        assert answer == ("old.q", {"type": "fresh"})
    finally:
        await close_and_drop(system_redis, prefix, short, receiver)


async def test_local_channels_and_names_are_left_to_receive(
    pair: list[RedisChannelLayer],
) -> None:
    layer, _ = pair
    local = await layer.new_channel()
    assert await layer.receive_any(["plain.q", local]) is None
    with pytest.raises(TypeError):
        await layer.receive_any(["bad name"])


async def test_channels_on_two_shards_are_left_to_receive(
    shard_servers: list[RedisProcess],
) -> None:
    layer = RedisChannelLayer(
        hosts=[server.url for server in shard_servers[:2]], prefix=unique_prefix()
    )
    try:
        names = [f"spread-{index}" for index in range(20)]
        shards = {layer.shard_of(name) for name in names}
        assert len(shards) == 2
        same = [name for name in names if layer.shard_of(name) == layer.shard_of(names[0])]
        assert await layer.receive_any(names) is None
        await layer.send(same[-1], {"type": "here"})
        answer = await asyncio.wait_for(layer.receive_any(same), TIMEOUT)
        assert answer == (same[-1], {"type": "here"})
    finally:
        await layer.flush()
        await layer.close()
