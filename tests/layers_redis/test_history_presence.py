"""Group history and presence on the Redis layer against real servers: one host, three shards
(members homed on other shards than their group), a Cluster; a restart without persistence
(new epoch, recovery refused); a member process killed with SIGKILL (gone within ttl, with a
leave event); the pub/sub layer refusing the options."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from typing import Any

import pytest

from headrace.exceptions import ConfigError
from headrace.layers.history import POSITION_KEY, Position
from headrace.layers.redis import RedisChannelLayer, RedisPubSubChannelLayer
from headrace.testing.history import presence
from tests.layers_redis.conftest import HOST_SETUPS, close_and_drop, hosts_of_setup, unique_prefix
from tests.layers_redis.servers import RedisProcess

HISTORY = {"room.*": {"size": 5, "ttl": 60}}
PRESENCE = {"room.*": {"ttl": 1.5, "events": True}}
DEADLINE = 20.0


async def receive(layer: RedisChannelLayer, channel: str) -> dict[str, Any]:
    return await asyncio.wait_for(layer.receive(channel), DEADLINE)


async def receive_type(layer: RedisChannelLayer, channel: str, kind: str) -> dict[str, Any]:
    """The next message of type ``kind`` on ``channel`` (others are skipped)."""
    while True:
        message = await receive(layer, channel)
        if message["type"] == kind:
            return message


@pytest.fixture(params=HOST_SETUPS)
def hosts(request: pytest.FixtureRequest) -> list[Any]:
    return hosts_of_setup(request)


@pytest.fixture
async def layers(hosts: list[Any]) -> AsyncIterator[list[RedisChannelLayer]]:
    prefix = unique_prefix()
    made = [
        RedisChannelLayer(hosts=hosts, prefix=prefix, history=HISTORY, presence=PRESENCE)
        for _ in range(2)
    ]
    yield made
    for layer in made:
        await layer.flush()
        await layer.close()


async def test_offsets_match_deliveries_and_history(layers: list[RedisChannelLayer]) -> None:
    sender, receiver = layers
    local = await receiver.new_channel()
    await receiver.group_add("room.a", local)
    await receiver.group_add("room.a", "room-queue")
    await receive_type(receiver, local, "presence.join")
    sent = [await sender.group_send("room.a", {"type": "m", "n": n}) for n in range(7)]
    assert [position.offset for position in sent if position] == list(range(1, 8))
    epoch = sent[0].epoch if sent[0] else ""
    for n in range(7):
        for channel in (local, "room-queue"):
            message = await receive_type(receiver, channel, "m")
            assert message == {"type": "m", "n": n, POSITION_KEY: [epoch, n + 1]}
    kept = await sender.group_history("room.a")
    assert (kept.epoch, kept.offset, kept.recovered) == (epoch, 7, True)
    assert kept.messages == [(n + 1, {"type": "m", "n": n}) for n in range(2, 7)]
    after_four = await sender.group_history("room.a", Position(epoch, 4), limit=2)
    assert after_four.recovered and after_four.messages == [
        (5, {"type": "m", "n": 4}),
        (6, {"type": "m", "n": 5}),
    ]
    too_old = await sender.group_history("room.a", Position(epoch, 1))
    assert not too_old.recovered and [offset for offset, _ in too_old.messages] == [3, 4, 5, 6, 7]
    other_epoch = await sender.group_history("room.a", Position("elsewhere", 7))
    assert not other_epoch.recovered


async def test_relayed_position_is_not_kept(layers: list[RedisChannelLayer]) -> None:
    sender, _ = layers
    await sender.group_send("room.b", {"type": "m", POSITION_KEY: ["old", 9]})
    kept = await sender.group_history("room.b")
    assert kept.messages == [(1, {"type": "m"})]


async def test_group_without_history(layers: list[RedisChannelLayer]) -> None:
    sender, receiver = layers
    channel = await receiver.new_channel()
    await receiver.group_add("plain", channel)
    assert await sender.group_send("plain", {"type": "m"}) is None
    assert await receive(receiver, channel) == {"type": "m"}
    with pytest.raises(ValueError, match="'plain'"):
        await sender.group_history("plain")
    with pytest.raises(ValueError, match="'plain'"):
        await sender.group_presence_count("plain")


async def test_presence_join_update_leave(layers: list[RedisChannelLayer]) -> None:
    first, second = layers
    mine = await first.new_channel()
    theirs = await second.new_channel()
    await first.group_add("room.c", mine, {"name": "ann"})
    assert (await receive(first, mine))["channel"] == mine
    await second.group_add("room.c", theirs, {"name": "bob"})
    for layer, channel in ((first, mine), (second, theirs)):
        joined = await receive_type(layer, channel, "presence.join")
        assert joined == presence("join", "room.c", theirs, {"name": "bob"})
    await second.group_add("room.c", theirs, {"name": "bob", "away": True})
    assert await first.group_presence("room.c") == {
        mine: {"name": "ann"},
        theirs: {"name": "bob", "away": True},
    }
    assert await first.group_presence_count("room.c") == 2
    await second.group_discard("room.c", theirs)
    left = await receive_type(first, mine, "presence.leave")
    assert left == presence("leave", "room.c", theirs, {"name": "bob", "away": True})
    assert await second.group_presence("room.c") == {mine: {"name": "ann"}}
    await first.group_send("room.c", {"type": "after"})
    assert (await receive_type(first, mine, "after"))[POSITION_KEY][1] == 1


async def test_heartbeat_keeps_members_beyond_ttl(layers: list[RedisChannelLayer]) -> None:
    first, second = layers
    channel = await first.new_channel()
    await first.group_add("room.d", channel, {})
    loop = asyncio.get_running_loop()
    until = loop.time() + 3 * PRESENCE["room.*"]["ttl"]
    while loop.time() < until:
        assert await second.group_presence_count("room.d") == 1
        await asyncio.sleep(0.2)


async def test_flush_starts_a_new_epoch(layers: list[RedisChannelLayer]) -> None:
    sender, _ = layers
    before = await sender.group_send("room.e", {"type": "m"})
    await sender.flush()
    after = await sender.group_send("room.e", {"type": "m"})
    assert before is not None and after is not None
    assert after.offset == 1 and after.epoch != before.epoch
    assert not (await sender.group_history("room.e", before)).recovered


async def test_restart_without_persistence_changes_epoch(
    restartable_server: RedisProcess,
) -> None:
    layer = RedisChannelLayer(hosts=[restartable_server.url], history=HISTORY)
    try:
        first = await layer.group_send("room.f", {"type": "m"})
        await layer.group_send("room.f", {"type": "m"})
        restartable_server.restart()
        after = await layer.group_send("room.f", {"type": "m"})
        assert first is not None and after is not None
        assert after.epoch != first.epoch and after.offset == 1
        missed = await layer.group_history("room.f", Position(first.epoch, 1))
        assert not missed.recovered and missed.epoch == after.epoch
        assert missed.messages == [(1, {"type": "m"})]
    finally:
        await layer.close()


MEMBER = textwrap.dedent(
    """
    import asyncio, sys
    from headrace.layers.redis import RedisChannelLayer

    async def main():
        layer = RedisChannelLayer(
            prefix=sys.argv[1], presence={"room.*": {"ttl": 1.5, "events": True}}
        )
        channel = await layer.new_channel()
        await layer.group_add("room.g", channel, {"pid": sys.argv[2]})
        print(channel, flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


async def test_killed_member_process_leaves_within_ttl(system_redis: tuple[str, int]) -> None:
    prefix = unique_prefix()
    layer = RedisChannelLayer(hosts=[system_redis], prefix=prefix, presence=PRESENCE)
    watcher = await layer.new_channel()
    await layer.group_add("room.g", watcher)
    member = await asyncio.create_subprocess_exec(
        sys.executable, "-c", MEMBER, prefix, "child", stdout=subprocess.PIPE, env=os.environ
    )
    try:
        assert member.stdout is not None
        line = await asyncio.wait_for(member.stdout.readline(), DEADLINE)
        child = line.decode().strip()
        joined = await receive_type(layer, watcher, "presence.join")
        while joined["channel"] != child:
            joined = await receive_type(layer, watcher, "presence.join")
        assert child in await layer.group_presence("room.g")
        member.send_signal(signal.SIGKILL)
        await asyncio.wait_for(member.wait(), DEADLINE)
        left = await receive_type(layer, watcher, "presence.leave")
        assert left == presence("leave", "room.g", child, {"pid": "child"})
        assert await layer.group_presence("room.g") == {watcher: {}}
    finally:
        if member.returncode is None:
            member.kill()
            await asyncio.wait_for(member.wait(), DEADLINE)
        await close_and_drop(system_redis, prefix, layer)


def test_pubsub_layer_refuses_history_and_presence() -> None:
    for option, value in (("history", HISTORY), ("presence", PRESENCE)):
        with pytest.raises(ConfigError, match=f"RedisPubSubChannelLayer.*'{option}'"):
            RedisPubSubChannelLayer(**{option: value})


async def test_messages_older_than_ttl_are_dropped(system_redis: tuple[str, int]) -> None:
    """Keep sending; the first message leaves history once its ttl passed while the stream
    (and its epoch) lives on. Polled with a deadline: no assumption about timing."""
    prefix = unique_prefix()
    layer = RedisChannelLayer(
        hosts=[system_redis], prefix=prefix, history={"room.*": {"size": 1000, "ttl": 2}}
    )
    try:
        first = await layer.group_send("room.h", {"type": "m"})
        assert first is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE
        while True:
            latest = await layer.group_send("room.h", {"type": "m"})
            kept = await layer.group_history("room.h")
            assert latest is not None and latest.epoch == first.epoch
            if kept.messages[0][0] > 1:
                break
            assert loop.time() < deadline, "the first message never expired"
            await asyncio.sleep(0.05)
        assert not (await layer.group_history("room.h", Position(first.epoch, 0))).recovered
        assert (await layer.group_history("room.h", latest)).recovered
    finally:
        await close_and_drop(system_redis, prefix, layer)


@pytest.mark.parametrize(
    "options",
    [{"serializer_format": "json"}, {"symmetric_encryption_keys": ["a secret of the test"]}],
)
async def test_positions_with_every_serializer(
    system_redis: tuple[str, int], options: dict[str, Any]
) -> None:
    prefix = unique_prefix()
    layer = RedisChannelLayer(hosts=[system_redis], prefix=prefix, history=HISTORY, **options)
    try:
        channels = [await layer.new_channel() for _ in range(2)]
        for channel in channels:
            await layer.group_add("room.i", channel)
        sent = await layer.group_send("room.i", {"type": "m", "text": "é"})
        assert sent is not None
        for channel in channels:
            message = await receive(layer, channel)
            assert message == {"type": "m", "text": "é", POSITION_KEY: [sent.epoch, 1]}
        assert (await layer.group_history("room.i")).messages == [(1, {"type": "m", "text": "é"})]
    finally:
        await close_and_drop(system_redis, prefix, layer)
