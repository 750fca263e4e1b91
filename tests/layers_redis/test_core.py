"""RedisChannelLayer beyond the contract: sharding, collapsed fan-out, statistics, options."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from headrace.exceptions import ChannelFull, InvalidChannelLayerError
from headrace.layers.redis import RedisChannelLayer, RedisPubSubChannelLayer
from tests.layers_redis.conftest import close_and_drop, unique_prefix
from tests.layers_redis.servers import RedisProcess

TIMEOUT = 10


async def collect(layer: RedisChannelLayer, channels: list[str]) -> list[dict[str, Any]]:
    return await asyncio.wait_for(
        asyncio.gather(*(layer.receive(channel) for channel in channels)), TIMEOUT
    )


@pytest.fixture
async def sharded(shard_servers: list[RedisProcess]) -> Any:
    prefix = unique_prefix()
    hosts = [server.url for server in shard_servers[:2]]
    layers = [RedisChannelLayer(hosts=hosts, prefix=prefix) for _ in range(3)]
    yield layers
    await layers[0].flush()
    for layer in layers:
        await layer.close()


async def test_local_channels_on_two_shards_lose_nothing(sharded: list[RedisChannelLayer]) -> None:
    """channels_redis #221: with two hosts about half of these messages vanish."""
    receiver, sender, _ = sharded
    channels = [await receiver.new_channel() for _ in range(60)]
    assert len({receiver.shard_of(channel) for channel in channels}) == 1
    for index, channel in enumerate(channels):
        await sender.send(channel, {"type": "direct", "n": index})
    received = await collect(receiver, channels)
    assert [message["n"] for message in received] == list(range(60))


async def test_normal_channels_spread_over_shards(sharded: list[RedisChannelLayer]) -> None:
    receiver, sender, _ = sharded
    names = [f"work-{index}" for index in range(40)]
    assert len({sender.shard_of(name) for name in names}) == 2
    for index, name in enumerate(names):
        await sender.send(name, {"type": "job", "n": index})
    received = await collect(receiver, names)
    assert [message["n"] for message in received] == list(range(40))


async def test_group_send_is_one_element_per_process(system_redis: tuple[str, int]) -> None:
    prefix = unique_prefix()
    sender = RedisChannelLayer(hosts=[system_redis], prefix=prefix)
    receiver = RedisChannelLayer(hosts=[system_redis], prefix=prefix)
    offline = "specific.offlineprocess!"
    members = [f"{offline}{index}" for index in range(100)]
    try:
        for member in members:
            await sender.group_add("crowd", member)
        await sender.group_add("crowd", "plain-member")
        await sender.group_send("crowd", {"type": "hello"})
        async with aioredis.Redis(host=system_redis[0], port=system_redis[1]) as raw:
            assert await raw.llen(f"{{{prefix}.0}}:c:{offline}") == 1
            assert await raw.llen(f"{{{prefix}.0}}:c:plain-member") == 1
        received = await collect(receiver, [*members, "plain-member"])
        assert all(message == {"type": "hello"} for message in received)
    finally:
        await close_and_drop(system_redis, prefix, sender, receiver)


async def test_ten_thousand_member_group(sharded: list[RedisChannelLayer]) -> None:
    hosts = [spec.url for spec in sharded[0].hosts]
    processes = [
        *sharded,
        *(RedisChannelLayer(hosts=hosts, prefix=sharded[0].prefix) for _ in range(2)),
    ]
    try:
        per_process = 2000
        channels = {
            layer: [await layer.new_channel() for _ in range(per_process)] for layer in processes
        }

        async def join_all(layer: RedisChannelLayer, names: list[str]) -> None:
            for start in range(0, per_process, 100):
                await asyncio.gather(
                    *(layer.group_add("huge", name) for name in names[start : start + 100])
                )

        await asyncio.gather(*(join_all(layer, names) for layer, names in channels.items()))
        await processes[0].group_send("huge", {"type": "fanout", "body": "x" * 100})
        for layer, names in channels.items():
            received = await collect(layer, names)
            assert len(received) == per_process
            assert all(message["type"] == "fanout" for message in received)
        for layer, names in channels.items():
            assert (await layer.channel_statistics(names[0]))["messages_pending"] == 0
    finally:
        for layer in processes[3:]:
            await layer.close()


async def test_local_channel_capacity_is_exact(system_redis: tuple[str, int]) -> None:
    prefix = unique_prefix()
    layer = RedisChannelLayer(hosts=[system_redis], prefix=prefix, capacity=2)
    try:
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "a"})
        await layer.send(channel, {"type": "b"})
        with pytest.raises(ChannelFull):
            await layer.send(channel, {"type": "c"})
        assert (await asyncio.wait_for(layer.receive(channel), TIMEOUT))["type"] == "a"
        await layer.send(channel, {"type": "c"})
        with pytest.raises(ChannelFull):
            await layer.send(channel, {"type": "d"})
    finally:
        await close_and_drop(system_redis, prefix, layer)


async def test_statistics(system_redis: tuple[str, int]) -> None:
    prefix = unique_prefix()
    layer = RedisChannelLayer(hosts=[system_redis], prefix=prefix, capacity=3)
    try:
        assert "statistics" in layer.extensions
        for index in range(3):
            await layer.send("counted", {"type": "m", "n": index})
        with pytest.raises(ChannelFull):
            await layer.send("counted", {"type": "m"})
        stats = await layer.channel_statistics("counted")
        assert stats["messages_count"] == 3
        assert stats["messages_pending"] == 3
        assert stats["channel_full_count"] == 1
        assert 0 <= stats["messages_max_age"] < 60
        await asyncio.wait_for(layer.receive("counted"), TIMEOUT)
        assert (await layer.channel_statistics("counted"))["messages_pending"] == 2
        local = await layer.new_channel()
        await layer.send(local, {"type": "x"})
        local_stats = await layer.channel_statistics(local)
        assert local_stats["messages_count"] == 1
        assert local_stats["messages_pending"] == 1
        totals = await layer.global_statistics()
        assert totals["messages_count"] == 4
        assert totals["channel_full_count"] == 1
        assert set(totals) == {
            "messages_count",
            "messages_count_per_second",
            "channel_full_count",
            "channel_full_count_per_second",
        }
    finally:
        await close_and_drop(system_redis, prefix, layer)


async def test_encryption_with_key_rotation(system_redis: tuple[str, int]) -> None:
    prefix = unique_prefix()
    old = RedisChannelLayer(
        hosts=[system_redis], prefix=prefix, symmetric_encryption_keys=["old-key"]
    )
    rotated = RedisChannelLayer(
        hosts=[system_redis], prefix=prefix, symmetric_encryption_keys=["new-key", "old-key"]
    )
    new_only = RedisChannelLayer(
        hosts=[system_redis], prefix=prefix, symmetric_encryption_keys=["new-key"]
    )
    try:
        await old.send("secret", {"type": "s", "text": "plaintext-marker"})
        async with aioredis.Redis(host=system_redis[0], port=system_redis[1]) as raw:
            stored = await raw.lrange(f"{{{prefix}.0}}:c:secret", 0, -1)
        assert stored and b"plaintext-marker" not in stored[0]
        assert await asyncio.wait_for(rotated.receive("secret"), TIMEOUT) == {
            "type": "s",
            "text": "plaintext-marker",
        }
        await rotated.send("secret", {"type": "s2"})
        assert await asyncio.wait_for(new_only.receive("secret"), TIMEOUT) == {"type": "s2"}
    finally:
        await close_and_drop(system_redis, prefix, old, rotated, new_only)


@pytest.mark.parametrize("serializer_format", ["msgpack", "json"])
async def test_serializer_formats(system_redis: tuple[str, int], serializer_format: str) -> None:
    prefix = unique_prefix()
    layer = RedisChannelLayer(
        hosts=[system_redis], prefix=prefix, serializer_format=serializer_format
    )
    try:
        message = {"type": "fmt", "list": [1, 2.5, "three"], "nested": {"ok": True, "none": None}}
        await layer.send("formats", message)
        assert await asyncio.wait_for(layer.receive("formats"), TIMEOUT) == message
    finally:
        await close_and_drop(system_redis, prefix, layer)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"hosts": "redis://localhost"}, "hosts must be a list"),
        ({"hosts": ["http://localhost"]}, "hosts[0]"),
        ({"hosts": [("localhost", "6379")]}, "(host, port)"),
        ({"hosts": [{"adress": "redis://x"}]}, "needs 'address'"),
        ({"hosts": [{"address": "redis://x", "pasword": "p"}]}, "unknown connection option"),
        ({"hosts": [{"master_name": "m"}]}, "'sentinels'"),
        ({"hosts": [{"cluster": True}]}, "startup_nodes"),
        ({"hosts": [{"cluster": True, "address": "redis://a"}, "redis://b"]}, "only entry"),
        ({"serializer_format": "pickle"}, "serializer_format"),
        ({"symmetric_encryption_keys": "one-key"}, "symmetric_encryption_keys"),
        ({"prefix": "a{b}"}, "prefix"),
        ({"expiry": 0}, "expiry"),
        ({"capacity": "10"}, "capacity"),
        ({"unknown_option": 1}, "unknown_option"),
    ],
)
def test_bad_configuration_is_named(options: dict[str, Any], named: str) -> None:
    with pytest.raises((InvalidChannelLayerError, TypeError)) as caught:
        RedisChannelLayer(**options)
    assert named in str(caught.value)


def test_accepted_host_shapes() -> None:
    layer = RedisChannelLayer(
        hosts=[
            "redis://localhost:6379/0",
            "rediss://user:pw@localhost:6380",
            "unix:///tmp/redis.sock?db=1",
            ("localhost", 6379),
            {"address": "redis://localhost:6379", "password": "pw", "socket_connect_timeout": 2},
            {"address": ("localhost", 6379), "db": 2},
            {"master_name": "m", "sentinels": [("localhost", 26379)], "sentinel_kwargs": {}},
        ]
    )
    assert [spec.kind for spec in layer.hosts] == [
        "url",
        "url",
        "url",
        "params",
        "url",
        "params",
        "sentinel",
    ]
    assert layer.shard_count == 7


async def test_group_copies_respect_local_capacity(system_redis: tuple[str, int]) -> None:
    prefix = unique_prefix()
    sender = RedisChannelLayer(hosts=[system_redis], prefix=prefix)
    receiver = RedisChannelLayer(hosts=[system_redis], prefix=prefix, capacity=2)
    try:
        slow, fast = await receiver.new_channel(), await receiver.new_channel()
        await sender.group_add("bounded", slow)
        await sender.group_add("bounded", fast)
        for index in range(4):
            await sender.group_send("bounded", {"type": "g", "n": index})
            assert (await asyncio.wait_for(receiver.receive(fast), TIMEOUT))["n"] == index
        first = await asyncio.wait_for(receiver.receive(slow), TIMEOUT)
        second = await asyncio.wait_for(receiver.receive(slow), TIMEOUT)
        assert [first["n"], second["n"]] == [0, 1]
        await sender.group_send("bounded", {"type": "g", "n": 4})
        assert (await asyncio.wait_for(receiver.receive(slow), TIMEOUT))["n"] == 4
    finally:
        await close_and_drop(system_redis, prefix, sender, receiver)


async def test_pubsub_layer_bounds_local_channels(system_redis: tuple[str, int]) -> None:
    prefix = unique_prefix()
    layer = RedisPubSubChannelLayer(hosts=[system_redis], prefix=prefix, capacity=2)
    try:
        channel, marker = await layer.new_channel(), await layer.new_channel()
        for index in range(4):
            await layer.send(channel, {"type": "p", "n": index})
        # Same inbox topic, same order: once the marker is here, all four were dispatched.
        await layer.send(marker, {"type": "marker"})
        assert await asyncio.wait_for(layer.receive(marker), TIMEOUT) == {"type": "marker"}
        first = await asyncio.wait_for(layer.receive(channel), TIMEOUT)
        second = await asyncio.wait_for(layer.receive(channel), TIMEOUT)
        assert [first["n"], second["n"]] == [0, 1]
        await layer.send(channel, {"type": "p", "n": 9})
        assert (await asyncio.wait_for(layer.receive(channel), TIMEOUT))["n"] == 9
    finally:
        await close_and_drop(system_redis, prefix, layer)


async def test_pubsub_statistics_show_local_buffers(system_redis: tuple[str, int]) -> None:
    prefix = unique_prefix()
    layer = RedisPubSubChannelLayer(hosts=[system_redis], prefix=prefix)
    try:
        channel, marker = await layer.new_channel(), await layer.new_channel()
        await layer.send(channel, {"type": "waiting"})
        await layer.send(marker, {"type": "marker"})
        assert await asyncio.wait_for(layer.receive(marker), TIMEOUT) == {"type": "marker"}
        stats = await layer.channel_statistics(channel)
        assert stats["messages_pending"] == 1
        assert stats["messages_max_age"] >= 0
        await layer.send("queued", {"type": "q"})
        assert (await layer.channel_statistics("queued"))["messages_count"] == 1
    finally:
        await close_and_drop(system_redis, prefix, layer)


async def test_pubsub_group_add_of_a_foreign_local_channel_is_refused(
    system_redis: tuple[str, int],
) -> None:
    prefix = unique_prefix()
    owner = RedisPubSubChannelLayer(hosts=[system_redis], prefix=prefix)
    other = RedisPubSubChannelLayer(hosts=[system_redis], prefix=prefix)
    try:
        channel = await owner.new_channel()
        with pytest.raises(RuntimeError, match="layer instance that created it"):
            await other.group_add("room", channel)
    finally:
        await close_and_drop(system_redis, prefix, owner, other)


async def test_departed_local_channels_leave_no_state(system_redis: tuple[str, int]) -> None:
    """Mailboxes of cancelled receivers go at once; those of channels that just stopped
    receiving go at the reader's next sweep (within ``blocking_timeout``), even under traffic."""
    prefix = unique_prefix()
    layer = RedisChannelLayer(hosts=[system_redis], prefix=prefix)
    try:
        served = [await layer.new_channel() for _ in range(50)]
        for channel in served:
            await layer.send(channel, {"type": "once"})
            assert await asyncio.wait_for(layer.receive(channel), TIMEOUT) == {"type": "once"}
        for _ in range(50):
            receiving = asyncio.ensure_future(layer.receive(await layer.new_channel()))
            await asyncio.sleep(0)
            receiving.cancel()
            await asyncio.gather(receiving, return_exceptions=True)
        assert (await layer.local_state_sizes())["channels"] <= len(served)
        busy = await layer.new_channel()
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while (await layer.local_state_sizes())["channels"] > 1:  # only `busy` may remain
            assert asyncio.get_running_loop().time() < deadline, "mailboxes were never swept"
            await layer.send(busy, {"type": "traffic"})  # keeps the inbox reader popping
            await asyncio.wait_for(layer.receive(busy), TIMEOUT)
    finally:
        await close_and_drop(system_redis, prefix, layer)


async def test_group_send_is_one_command_per_shard(restartable_server: RedisProcess) -> None:
    """Members in three processes plus normal channels: group_send makes one call, the script."""
    prefix = unique_prefix()
    layer = RedisChannelLayer(hosts=[restartable_server.url], prefix=prefix)
    try:
        for process in ("a1b2c3", "d4e5f6", "a7b8c9"):
            for index in range(20):
                await layer.group_add("room", f"specific.{process}!{index}")
        for index in range(5):
            await layer.group_add("room", f"worker-{index}")
        await layer.group_send("warm-up", {"type": "loads the script"})
        with restartable_server.client() as raw:
            raw.config_resetstat()
            await layer.group_send("room", {"type": "hello"})
            stats = raw.info("commandstats")
            inboxes = [raw.llen(f"{{{prefix}.0}}:c:specific.{p}!") for p in ("a1b2c3", "d4e5f6")]
        # commandstats also counts the commands the script runs inside Redis (LINDEX, RPUSH...):
        # what the client sent is the one EVALSHA; no EVAL, no MULTI/pipeline of its own.
        assert stats["cmdstat_evalsha"]["calls"] == 1
        assert not {"cmdstat_eval", "cmdstat_multi", "cmdstat_exec"} & set(stats)
        assert inboxes == [1, 1]  # one element per receiving process, naming all its members
    finally:
        await layer.close()
