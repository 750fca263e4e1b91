"""Restarts, reconnects, close() and sync callers, against redis-servers this file restarts."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import textwrap
import warnings

import pytest
import redis
from asgiref.sync import async_to_sync

from headrace.layers.redis import RedisChannelLayer, RedisPubSubChannelLayer
from tests.layers_redis.conftest import unique_prefix
from tests.layers_redis.servers import (
    Cluster,
    RedisProcess,
    SentinelProcess,
    remove_dir,
    scratch_dir,
    wait_until,
)

TIMEOUT = 20


async def consume(layer: RedisChannelLayer, channel: str, into: list[int], stop: int) -> None:
    while True:
        message = await layer.receive(channel)
        into.append(message["n"])
        if message["n"] == stop:
            return


async def test_restart_mid_traffic_reconnects_without_duplicates(
    restartable_server: RedisProcess,
) -> None:
    prefix = unique_prefix()
    receiver = RedisChannelLayer(hosts=[restartable_server.url], prefix=prefix)
    sender = RedisChannelLayer(hosts=[restartable_server.url], prefix=prefix)
    local = await receiver.new_channel()
    got_local: list[int] = []
    got_queue: list[int] = []
    consumers = [
        asyncio.ensure_future(consume(receiver, local, got_local, 999)),
        asyncio.ensure_future(consume(receiver, "jobs", got_queue, 999)),
    ]
    try:
        for index in range(50):
            await sender.send(local, {"type": "m", "n": index})
            await sender.send("jobs", {"type": "m", "n": index})
        await asyncio.to_thread(restartable_server.restart)
        for index in range(50, 100):
            await sender.send(local, {"type": "m", "n": index})
            await sender.send("jobs", {"type": "m", "n": index})
        await sender.send(local, {"type": "m", "n": 999})
        await sender.send("jobs", {"type": "m", "n": 999})
        await asyncio.wait_for(asyncio.gather(*consumers), TIMEOUT)
    finally:
        for task in consumers:
            task.cancel()
        await receiver.close()
        await sender.close()
    for received in (got_local, got_queue):
        assert len(received) == len(set(received)), "a message was delivered twice"
        assert received == sorted(received)
        assert set(range(50, 100)) <= set(received), "messages sent after the restart were lost"


async def test_send_waits_out_a_short_outage(restartable_server: RedisProcess) -> None:
    layer = RedisChannelLayer(hosts=[restartable_server.url], prefix=unique_prefix())
    try:
        await layer.send("early", {"type": "warmup"})
        restartable_server.stop()
        sending = asyncio.ensure_future(layer.send("later", {"type": "during.outage"}))
        await asyncio.to_thread(restartable_server.start)
        await asyncio.wait_for(sending, TIMEOUT)
        assert await asyncio.wait_for(layer.receive("later"), TIMEOUT) == {"type": "during.outage"}
    finally:
        await layer.close()


async def test_pubsub_reconnect_callbacks_fire(restartable_server: RedisProcess) -> None:
    disconnected, reconnected = asyncio.Event(), asyncio.Event()

    async def on_reconnect() -> None:
        reconnected.set()

    layer = RedisPubSubChannelLayer(
        hosts=[restartable_server.url],
        prefix=unique_prefix(),
        on_disconnect=disconnected.set,
        on_reconnect=on_reconnect,
    )
    try:
        channel = await layer.new_channel()
        await layer.group_add("room", channel)
        await asyncio.to_thread(restartable_server.restart)
        await asyncio.wait_for(disconnected.wait(), TIMEOUT)
        await asyncio.wait_for(reconnected.wait(), TIMEOUT)
        await layer.send(channel, {"type": "direct"})
        await layer.group_send("room", {"type": "group"})
        assert await asyncio.wait_for(layer.receive(channel), TIMEOUT) == {"type": "direct"}
        assert await asyncio.wait_for(layer.receive(channel), TIMEOUT) == {"type": "group"}
    finally:
        await layer.close()


async def test_pubsub_forgets_departed_channels(system_redis: tuple[str, int]) -> None:
    """channels_redis #276: departed channels stayed in groups and subscriptions forever."""
    layer = RedisPubSubChannelLayer(hosts=[system_redis], prefix=unique_prefix())
    try:
        for index in range(100):
            channel = await layer.new_channel()
            await layer.group_add(f"room-{index % 10}", channel)
            receiving = asyncio.ensure_future(layer.receive(channel))
            await asyncio.sleep(0)
            receiving.cancel()
            await asyncio.gather(receiving, return_exceptions=True)
        sizes = await layer.local_state_sizes()
        assert sizes == {"channels": 0, "groups": 0, "channel_groups": 0, "subscriptions": 1}
        async with redis.asyncio.Redis(host=system_redis[0], port=system_redis[1]) as raw:
            topics = await raw.pubsub_channels(f"{{{layer.prefix}.0}}:pg:*")
        assert topics == []
    finally:
        await layer.close()


@pytest.mark.parametrize("layer_class", [RedisChannelLayer, RedisPubSubChannelLayer])
def test_sync_callers_reuse_one_connection(
    restartable_server: RedisProcess, layer_class: type[RedisChannelLayer]
) -> None:
    """async_to_sync runs each call in a new loop; the layer routes them to one bridge loop."""
    layer = layer_class(hosts=[restartable_server.url], prefix=unique_prefix())
    for index in range(30):
        async_to_sync(layer.send)("from-sync", {"type": "sync", "n": index})
        async_to_sync(layer.send)("specific.elsewhere!x", {"type": "sync", "n": index})
        async_to_sync(layer.group_send)("room", {"type": "sync", "n": index})
    assert async_to_sync(layer.receive)("from-sync") == {"type": "sync", "n": 0}
    with restartable_server.client() as raw:
        clients = [entry for entry in raw.client_list() if entry["cmd"] != "client|list"]
    # the layer's pooled client (one or two connections) plus, for pub/sub, its publisher; the
    # core layer's lean send connection and its blocking pop share that budget of three
    assert len(clients) <= (4 if layer_class is RedisPubSubChannelLayer else 3)
    async_to_sync(layer.close)()
    assert layer._bridge.loop is None


def test_no_event_loop_closed_errors_when_loop_ends(restartable_server: RedisProcess) -> None:
    """A layer used in asyncio.run() and never closed must still close its sockets cleanly."""
    script = textwrap.dedent(
        f"""
        import asyncio, gc
        from headrace.layers.redis import RedisChannelLayer, RedisPubSubChannelLayer
        async def main(kind):
            layer = kind(hosts=["{restartable_server.url}"], prefix="closing")
            channel = await layer.new_channel()
            await layer.group_add("g", channel)
            await layer.send(channel, {{"type": "x"}})
            await layer.receive(channel)
            await layer.send("plain", {{"type": "y"}})
            await layer.receive("plain")
        for kind in (RedisChannelLayer, RedisPubSubChannelLayer):
            asyncio.run(main(kind))
            gc.collect()
        print("done")
        """
    )
    result = subprocess.run(
        [sys.executable, "-X", "dev", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "done", result.stderr
    assert "Event loop is closed" not in result.stderr
    assert "Unclosed" not in result.stderr
    assert "Task was destroyed" not in result.stderr


async def test_sentinel_failover_moves_the_layer_to_the_new_master() -> None:
    workdir = scratch_dir()
    master = RedisProcess(workdir).start()
    replica = RedisProcess(workdir, ["--replicaof", "127.0.0.1", str(master.port)]).start()
    sentinel = SentinelProcess(workdir, master, "failover-master", failover=True).start()
    layer = RedisChannelLayer(
        hosts=[{"master_name": "failover-master", "sentinels": [("127.0.0.1", sentinel.port)]}],
        prefix=unique_prefix(),
        reconnect_timeout=30,
    )
    try:
        await asyncio.to_thread(wait_until, lambda: _replica_linked(replica), "replication")
        await layer.send("before", {"type": "m"})
        assert await asyncio.wait_for(layer.receive("before"), TIMEOUT) == {"type": "m"}
        await asyncio.to_thread(master.stop)
        await asyncio.wait_for(layer.send("after", {"type": "promoted"}), 40)
        assert await asyncio.wait_for(layer.receive("after"), TIMEOUT) == {"type": "promoted"}
        with replica.client() as raw:
            assert raw.info("replication")["role"] == "master"
    finally:
        await layer.close()
        for process in (sentinel, replica, master):
            process.stop()
        remove_dir(workdir)


def _replica_linked(replica: RedisProcess) -> bool:
    with replica.client() as raw:
        return bool(raw.info("replication").get("master_link_status") == "up")


async def test_pubsub_restart_mid_traffic_delivers_nothing_twice(
    restartable_server: RedisProcess,
) -> None:
    """PUBLISH is at most once: a publish whose reply was lost is not retried (Redis may have
    delivered it), sends during the outage wait for Redis, and traffic resumes afterwards."""
    prefix = unique_prefix()
    reconnected = asyncio.Event()
    receiver = RedisPubSubChannelLayer(
        hosts=[restartable_server.url], prefix=prefix, on_reconnect=reconnected.set
    )
    sender = RedisPubSubChannelLayer(hosts=[restartable_server.url], prefix=prefix)
    local = await receiver.new_channel()
    got: list[int] = []
    consumer = asyncio.ensure_future(consume(receiver, local, got, 999))
    try:
        for index in range(50):
            await sender.send(local, {"type": "m", "n": index})
        restarting = asyncio.ensure_future(asyncio.to_thread(restartable_server.restart))
        for index in range(50, 100):  # published before, during and after the restart
            await asyncio.wait_for(sender.send(local, {"type": "m", "n": index}), TIMEOUT)
        await asyncio.wait_for(restarting, TIMEOUT)
        await asyncio.wait_for(reconnected.wait(), TIMEOUT)
        await _until_delivered(sender, receiver, got)
        for index in range(200, 250):
            await sender.send(local, {"type": "m", "n": index})
        await sender.send(local, {"type": "m", "n": 999})
        await asyncio.wait_for(consumer, TIMEOUT)
    finally:
        consumer.cancel()
        await receiver.close()
        await sender.close()
    assert len(got) == len(set(got)), "a message was delivered twice"
    assert set(range(50)) <= set(got)
    assert set(range(200, 250)) <= set(got), "messages sent after the reconnect were lost"


async def _until_delivered(
    sender: RedisChannelLayer, receiver: RedisChannelLayer, got: list[int]
) -> None:
    """Probe (n = 100, 101, ...) until one arrives: both sides are reconnected."""
    channel = await receiver.new_channel()
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    probe = 100
    while True:
        await sender.send(channel, {"type": "probe", "n": probe})
        try:
            await asyncio.wait_for(receiver.receive(channel), 0.5)
            return
        except TimeoutError:
            assert asyncio.get_running_loop().time() < deadline, "pub/sub never came back"
            probe += 1


async def test_pubsub_survives_a_malformed_message(
    system_redis: tuple[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    prefix = unique_prefix()
    layer = RedisPubSubChannelLayer(hosts=[system_redis], prefix=prefix)
    try:
        channel = await layer.new_channel()
        inbox = channel[: channel.index("!") + 1]
        async with redis.asyncio.Redis(host=system_redis[0], port=system_redis[1]) as raw:
            assert await raw.publish(f"{{{prefix}.0}}:p:{inbox}", b"not an element") == 1
        await layer.send(channel, {"type": "after.garbage"})
        assert await asyncio.wait_for(layer.receive(channel), TIMEOUT) == {"type": "after.garbage"}
        assert "malformed pub/sub message" in caplog.text
    finally:
        await layer.close()


async def test_pubsub_over_cluster_survives_losing_the_configured_node() -> None:
    """Cluster pub/sub is cluster-wide: when the node named in ``address`` dies, the pub/sub
    connections move to another node of the topology and local channels keep working."""
    workdir = scratch_dir()
    nodes = Cluster(workdir)
    reconnected = asyncio.Event()
    layer: RedisPubSubChannelLayer | None = None
    try:
        await asyncio.to_thread(nodes.start)
        layer = RedisPubSubChannelLayer(
            hosts=[{"cluster": True, "address": nodes.nodes[0].url}],
            prefix=unique_prefix(),
            on_reconnect=reconnected.set,
        )
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "before"})
        assert await asyncio.wait_for(layer.receive(channel), TIMEOUT) == {"type": "before"}
        await asyncio.to_thread(nodes.nodes[0].stop)
        await asyncio.wait_for(reconnected.wait(), TIMEOUT)
        await asyncio.wait_for(layer.send(channel, {"type": "after"}), TIMEOUT)
        assert await asyncio.wait_for(layer.receive(channel), TIMEOUT) == {"type": "after"}
    finally:
        if layer is not None:
            await layer.close()
        nodes.stop()
        remove_dir(workdir)


async def test_pubsub_reconnect_releases_the_dead_connections(
    restartable_server: RedisProcess,
) -> None:
    """After a reconnect the dead subscriber and publisher sockets are closed, not left to the
    garbage collector (which warns "unclosed Connection")."""
    reconnected = asyncio.Event()
    prefix = unique_prefix()
    receiver = RedisPubSubChannelLayer(
        hosts=[restartable_server.url], prefix=prefix, on_reconnect=reconnected.set
    )
    sender = RedisPubSubChannelLayer(hosts=[restartable_server.url], prefix=prefix)
    gc.collect()  # what earlier tests left to the collector must not be reported here
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        try:
            channel = await receiver.new_channel()
            await sender.send(channel, {"type": "before"})
            assert await asyncio.wait_for(receiver.receive(channel), TIMEOUT) == {"type": "before"}
            await asyncio.to_thread(restartable_server.restart)
            await asyncio.wait_for(reconnected.wait(), TIMEOUT)
            got: list[int] = []
            await _until_delivered(sender, receiver, got)
            gc.collect()
        finally:
            await receiver.close()
            await sender.close()
    # Only connections to this test's server count: a leaked redis-py connection is reported
    # with its address (its socket's own warning comes with it), while garbage of other tests
    # can reach the collector in this window too.
    ours = f"port={restartable_server.port},"
    leaks = [
        str(w.message)
        for w in caught
        if issubclass(w.category, ResourceWarning) and ours in str(w.message)
    ]
    assert leaks == []
