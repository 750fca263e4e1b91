"""The Redis pub/sub channel layer: process-local channels and groups over PUBLISH/SUBSCRIBE.

Theory of operation
-------------------
Process-local channels (``specific.<id>!<suffix>``) and group messages travel over Redis
pub/sub: nothing is stored, a message goes straight from the publisher to the subscribed
processes. Each layer instance subscribes **once per inbox** (``{B}:p:specific.<id>!``), not
once per channel, so consumers coming and going cause no SUBSCRIBE churn; a group is one
pub/sub channel (``{B}:pg:<group>``, on the group's shard) that a process subscribes to while
it has at least one local member, and the process fans group messages out to its members.

Normal channels (worker channels such as ``"thumbnails"``) keep the queue semantics of
:class:`~headrace.layers.redis.RedisChannelLayer` (each message to exactly one receiver, even
with many worker processes, which pub/sub cannot give), and so do groups' normal-channel
members: ``group_send`` publishes once and runs the queue layer's group script concurrently.

*No leak (channels_redis #276).* When the last ``receive()`` of a local channel is cancelled
(the consumer is gone — the Channels convention), the channel's mailbox and every group
membership of it are dropped, and a group left without local members is unsubscribed. Messages
for unknown local channels are discarded. Nothing grows with channels that have come and gone.

*Connections.* Per shard and event loop, one subscriber and one publisher connection, both
:class:`~headrace.layers.redis.wire.RespConnection`, which opens the socket itself with the
client's settings (TLS, auth, Sentinel) and drives it directly — messages are parsed in
``data_received`` and handed to the waiting ``receive()`` in the same loop turn (this is where the
latency win comes from).
``PUBLISH`` is at most once: retried while it cannot be written, never after (a lost reply may
hide a delivered message). With a Redis Cluster any node serves pub/sub, so a reconnect tries
the configured node, then the startup nodes, then the cluster client's current topology.

*Reconnects (#406).* The subscriber connection reads all of its shard's subscriptions. When it
breaks, ``on_disconnect()`` is called, the subscriber reconnects with jittered backoff,
re-subscribes everything, then calls ``on_reconnect()``. Callbacks take no arguments and may be
plain functions or coroutine functions. What is published while the connection is down is lost
(pub/sub stores nothing); queue-backed normal channels are not.

Capacity: a local channel buffers at most ``capacity`` messages in the receiving process; more
are dropped (and counted as ``channel_full_count``) since a publisher cannot be told. Sends to
local channels never raise ChannelFull.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError

from headrace.layers.redis import scripts
from headrace.layers.redis.connections import RETRYABLE, Backoff, raise_if_cancelling
from headrace.layers.redis.core import (
    Item,
    Mailbox,
    RedisChannelLayer,
    _CoreLoop,
    _split_local,
    now_ms,
)
from headrace.layers.redis.hosts import AnyRedis, HostSpec
from headrace.layers.redis.ring import HashRing
from headrace.layers.redis.wire import PushHandler, RespConnection

__all__ = ["RedisPubSubChannelLayer"]

logger = logging.getLogger(__name__)

Callback = Callable[[], Any]
Opener = Callable[[PushHandler | None], Awaitable[RespConnection]]


async def _call(callback: Callback | None) -> None:
    if callback is None:
        return
    try:
        result = callback()
        if inspect.isawaitable(result):
            await result
    except Exception:
        logger.exception("channel layer reconnect callback failed")


class _Subscriber:
    """The pub/sub connection of one shard in one loop; survives reconnects.

    A maintenance task connects (with backoff), subscribes everything wanted, then waits for the
    connection to be lost; messages never pass through it: the connection hands each one to
    :meth:`_handle` from ``data_received``."""

    def __init__(self, layer: RedisPubSubChannelLayer, state: _PubSubLoop, opener: Opener) -> None:
        self.layer = layer
        self.state = state
        self.opener = opener
        self.channels: set[str] = set()
        self.connection: RespConnection | None = None
        self.confirmations: dict[str, list[asyncio.Future[None]]] = {}
        self.task: asyncio.Task[None] | None = None
        self._topics: dict[bytes, str] = {}

    async def subscribe(self, name: str) -> None:
        """Subscribe and wait for Redis to confirm, so later publishes reach us."""
        if name in self.channels:
            return
        self.channels.add(name)
        confirmed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.confirmations.setdefault(name, []).append(confirmed)
        if self.task is None:
            self.task = self.state.spawn(self._run())
        connection = self.connection
        if connection is not None and connection.is_open:
            connection.send(b"SUBSCRIBE", name)
        # else: the maintenance task subscribes everything in self.channels once connected
        try:
            await asyncio.wait_for(confirmed, self.layer.reconnect_timeout)
        except TimeoutError:
            raise RedisConnectionError(f"Redis did not confirm SUBSCRIBE {name}") from None

    async def unsubscribe(self, name: str) -> None:
        if name not in self.channels:
            return
        self.channels.discard(name)
        connection = self.connection
        if connection is not None and connection.is_open:
            # If this write is lost, the reconnect subscribes only what is still wanted.
            connection.send(b"UNSUBSCRIBE", name)

    async def _run(self) -> None:
        backoff = Backoff()
        first = True
        while not self.state.closed:
            try:
                connection = await self.opener(self._handle)
            except Exception as exc:  # keep trying: consumers wait on this subscriber
                raise_if_cancelling()
                if not isinstance(exc, RETRYABLE):
                    logger.error("pub/sub subscriber cannot connect to Redis: %r", exc)
                await backoff.wait()
                continue
            self.connection = connection
            if self.channels:
                connection.send(b"SUBSCRIBE", *self.channels)
            backoff.reset()
            if not first:
                await _call(self.layer.on_reconnect)
            first = False
            await asyncio.shield(connection.lost)
            self.connection = None
            with contextlib.suppress(*RETRYABLE):
                await connection.close()  # closes our side of the dead socket
            if not self.state.closed:
                await _call(self.layer.on_disconnect)
                await backoff.wait()

    def _handle(self, reply: Any) -> None:
        if not isinstance(reply, list) or len(reply) < 3:
            return
        kind, topic = reply[0], reply[1]
        if kind == b"message":
            name = self._topics.get(topic)
            if name is None:
                name = self._topics[topic] = topic.decode()
            self.layer._dispatch(self.state, name, reply[2])
        elif kind == b"subscribe":
            for future in self.confirmations.pop(topic.decode(), []):
                if not future.done():
                    future.set_result(None)
        elif kind == b"unsubscribe":
            self._topics.pop(topic, None)

    async def aclose(self) -> None:
        self.channels.clear()
        connection, self.connection = self.connection, None
        if connection is not None:
            with contextlib.suppress(*RETRYABLE):
                await connection.close()


class _Publisher:
    """The PUBLISH connection of one shard in one loop, opened on first use and after a loss."""

    def __init__(self, opener: Opener) -> None:
        self.opener = opener
        self.connection: RespConnection | None = None
        self._opening: asyncio.Future[RespConnection] | None = None

    async def publish(self, topic: str, element: bytes) -> None:
        """Publish at most once: connection errors before the command is written propagate
        (the caller retries them); once written, a lost reply is not retried, since Redis may
        have delivered the message already and a retry would deliver it twice."""
        connection = self.connection
        if connection is None or not connection.is_open:
            connection = await self._open()
        reply = connection.call(b"PUBLISH", topic, element)
        try:
            await reply
        except RedisConnectionError:
            logger.warning("connection lost during PUBLISH to %s: the message may be lost", topic)
            return
        await connection.drain()

    async def _open(self) -> RespConnection:
        dead, self.connection = self.connection, None
        if dead is not None:
            with contextlib.suppress(*RETRYABLE):
                await dead.close()  # closes our side of the dead socket
        if self._opening is None:
            self._opening = asyncio.ensure_future(self.opener(None))
        opening = self._opening
        try:
            self.connection = await asyncio.shield(opening)
        finally:
            if self._opening is opening and opening.done():
                self._opening = None
        return self.connection

    async def aclose(self) -> None:
        opening, self._opening = self._opening, None
        if opening is not None:
            opening.cancel()
            await asyncio.gather(opening, return_exceptions=True)
            if not opening.cancelled() and opening.exception() is None:
                await opening.result().close()
        connection, self.connection = self.connection, None
        if connection is not None:
            with contextlib.suppress(*RETRYABLE):
                await connection.close()


class _PubSubLoop(_CoreLoop):
    """Per-loop state: subscribers per shard, local mailboxes, local group memberships."""

    def __init__(self, layer: RedisPubSubChannelLayer, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(layer, loop)
        self.subscribers: dict[int, _Subscriber] = {}
        self.publishers: dict[int, _Publisher] = {}
        self.node_clients: dict[str, AnyRedis] = {}
        self.mailboxes: dict[str, Mailbox] = {}
        self.groups: dict[str, dict[str, int]] = {}
        self.channel_groups: dict[str, set[str]] = {}

    def node_client(self, spec: HostSpec) -> AnyRedis:
        """A plain client for one cluster node (pub/sub), kept for this loop."""
        client = self.node_clients.get(spec.description)
        if client is None:
            client = self.node_clients[spec.description] = spec.make_client()
        return client

    async def before_close(self) -> None:
        for subscriber in self.subscribers.values():
            await subscriber.aclose()
        self.subscribers.clear()
        for publisher in self.publishers.values():
            await publisher.aclose()
        self.publishers.clear()
        clients, self.node_clients = list(self.node_clients.values()), {}
        for client in clients:
            await client.aclose()
        await super().before_close()


class RedisPubSubChannelLayer(RedisChannelLayer):
    """Lowest-latency Redis layer: local channels and groups over pub/sub (see module doc).

    Takes every :class:`RedisChannelLayer` option plus ``on_disconnect`` and ``on_reconnect``,
    except ``history`` and ``presence`` (refused with a ConfigError: pub/sub stores nothing, and
    its group messages bypass the script that would number them; use RedisChannelLayer).
    """

    extensions: ClassVar[list[str]] = ["groups", "flush", "statistics"]

    def __init__(
        self,
        *args: Any,
        on_disconnect: Callback | None = None,
        on_reconnect: Callback | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.on_disconnect = on_disconnect
        self.on_reconnect = on_reconnect
        self._group_ring = HashRing(self.shard_count)

    def _make_loop_state(self, loop: asyncio.AbstractEventLoop) -> _CoreLoop:
        return _PubSubLoop(self, loop)

    async def _state(self) -> _PubSubLoop:
        state = await self._resources()
        assert isinstance(state, _PubSubLoop)
        return state

    def _opener(self, state: _PubSubLoop, shard: int) -> Opener:
        """How the pub/sub connections of ``shard`` (re)connect."""
        host_index = self._shards[shard][0]
        spec = self.hosts[host_index]

        async def open_server(on_push: PushHandler | None) -> RespConnection:
            return await RespConnection.open(state.client(host_index), on_push)

        async def open_cluster_node(on_push: PushHandler | None) -> RespConnection:
            return await self._open_on_cluster_node(state, host_index, on_push)

        return open_cluster_node if spec.kind == "cluster" else open_server

    async def _open_on_cluster_node(
        self, state: _PubSubLoop, host_index: int, on_push: PushHandler | None
    ) -> RespConnection:
        """Cluster pub/sub is broadcast to every node, so any node will do: the configured one
        first, then every other node of the cluster's current topology — losing the configured
        node does not stop pub/sub."""
        error: BaseException | None = None
        for node in self._cluster_pubsub_candidates(state, host_index):
            try:
                return await RespConnection.open(state.node_client(node), on_push)
            except RETRYABLE as exc:
                error = exc
        assert error is not None
        raise error

    def _cluster_pubsub_candidates(self, state: _PubSubLoop, host_index: int) -> list[HostSpec]:
        spec = self.hosts[host_index]
        addresses = list(spec.nodes)
        cluster = state.client(host_index)
        if isinstance(cluster, RedisCluster):
            addresses += [(node.host, int(node.port)) for node in cluster.get_nodes()]
        candidates = [spec.pubsub_node()]
        for address in dict.fromkeys(addresses):
            candidates.append(spec.pubsub_node(address))
        return candidates

    def _subscriber(self, state: _PubSubLoop, shard: int) -> _Subscriber:
        subscriber = state.subscribers.get(shard)
        if subscriber is None:
            opener = self._opener(state, shard)
            subscriber = state.subscribers[shard] = _Subscriber(self, state, opener)
        return subscriber

    def _publisher(self, state: _PubSubLoop, shard: int) -> _Publisher:
        publisher = state.publishers.get(shard)
        if publisher is None:
            publisher = state.publishers[shard] = _Publisher(self._opener(state, shard))
        return publisher

    async def _publish(self, state: _PubSubLoop, shard: int, topic: str, element: bytes) -> None:
        publisher = self._publisher(state, shard)
        try:
            await publisher.publish(topic, element)  # the common case: no retry machinery
        except RETRYABLE:
            raise_if_cancelling()
            await self._retry(lambda: publisher.publish(topic, element))

    def _inbox_topic(self, nonlocal_name: str) -> tuple[int, str]:
        shard = self.shard_of(nonlocal_name)
        return shard, f"{self._shards[shard][1]}:p:{nonlocal_name}"

    def _group_topic(self, group: str) -> tuple[int, str]:
        shard = self._group_ring.index(group)
        return shard, f"{self._shards[shard][1]}:pg:{group}"

    # ------------------------------------------------------------------ local channels

    async def _start_inbox(self, channel: str) -> None:
        state = await self._state()
        await self._ensure_local(state, channel)

    async def _ensure_local(self, state: _PubSubLoop, channel: str) -> Mailbox:
        box = state.mailboxes.get(channel)
        if box is None:
            box = state.mailboxes[channel] = Mailbox()
        shard, topic = self._inbox_topic(_split_local(channel)[0])
        await self._subscriber(state, shard).subscribe(topic)
        return box

    async def _send_in(self, resources: _CoreLoop, channel: str, payload: bytes) -> None:
        if "!" not in channel:
            await super()._send_in(resources, channel, payload)
            return
        state = resources
        assert isinstance(state, _PubSubLoop)
        nonlocal_name, suffix = _split_local(channel)
        shard, topic = self._inbox_topic(nonlocal_name)
        element = scripts.format_element(now_ms() + self._ttls()[0], payload, suffix)
        await self._publish(state, shard, topic, element)

    async def _receive_in(self, resources: _CoreLoop, channel: str) -> bytes:
        if "!" not in channel:
            return await super()._receive_in(resources, channel)
        state = resources
        assert isinstance(state, _PubSubLoop)
        box = state.mailboxes.get(channel) or await self._ensure_local(state, channel)
        while True:
            try:
                expires, payload, _ = await box.get()
            except asyncio.CancelledError:
                if not box.has_waiters():
                    await asyncio.shield(self._forget_channel(state, channel))
                raise
            if expires > now_ms():
                return payload

    async def _forget_channel(self, state: _PubSubLoop, channel: str) -> None:
        """The consumer of ``channel`` left: drop its mailbox and its group memberships."""
        state.mailboxes.pop(channel, None)
        for group in list(state.channel_groups.pop(channel, ())):
            await self._leave_local_group(state, group, channel)

    def _dispatch(self, state: _PubSubLoop, topic: str, element: bytes) -> None:
        expires, targets, payload = scripts.parse_element(element)
        if expires <= now_ms():
            return
        kind, _, name = topic.partition("}:")[2].partition(":")
        if kind == "p":
            item = (expires, payload, False)
            for suffix in targets.split(","):
                self._deliver(state, name + suffix, item)
        elif kind == "pg":
            cutoff = now_ms() - int(self.group_expiry * 1000)
            item = (expires, payload, False)
            for channel, added in list(state.groups.get(name, {}).items()):
                if added > cutoff:
                    self._deliver(state, channel, item)

    def _deliver(self, state: _PubSubLoop, channel: str, item: Item) -> None:
        box = state.mailboxes.get(channel)
        if box is None:
            return
        if box.waiters or len(box.items) < self.get_capacity(channel):
            box.deliver(item)

    # ------------------------------------------------------------------ groups

    async def _group_add(self, group: str, channel: str) -> None:
        if "!" not in channel:
            await super()._group_add(group, channel)
            return
        if not _split_local(channel)[0].endswith(f".{self.client_prefix}!"):
            raise RuntimeError(
                f"group_add({group!r}, {channel!r}): with RedisPubSubChannelLayer a process-local "
                "channel joins groups from the layer instance that created it (membership lives "
                "in that process): call group_add in the consumer, with self.channel_name"
            )
        state = await self._state()
        await self._ensure_local(state, channel)
        state.groups.setdefault(group, {})[channel] = now_ms()
        state.channel_groups.setdefault(channel, set()).add(group)
        shard, topic = self._group_topic(group)
        await self._subscriber(state, shard).subscribe(topic)

    async def _group_discard(self, group: str, channel: str) -> None:
        if "!" not in channel:
            await super()._group_discard(group, channel)
            return
        state = await self._state()
        groups = state.channel_groups.get(channel)
        if groups is not None:
            groups.discard(group)
            if not groups:
                del state.channel_groups[channel]
        await self._leave_local_group(state, group, channel)

    async def _leave_local_group(self, state: _PubSubLoop, group: str, channel: str) -> None:
        members = state.groups.get(group)
        if members is None:
            return
        members.pop(channel, None)
        if not members:
            del state.groups[group]
            shard, topic = self._group_topic(group)
            await self._subscriber(state, shard).unsubscribe(topic)

    async def _group_send(self, group: str, payload: bytes) -> None:
        state = await self._state()
        shard, topic = self._group_topic(group)
        element = scripts.format_element(now_ms() + self._ttls()[0], payload)
        await asyncio.gather(
            self._publish(state, shard, topic, element), super()._group_send(group, payload)
        )

    # ------------------------------------------------------------------ flush, introspection

    async def _flush(self) -> None:
        state = await self._state()
        for box in state.mailboxes.values():
            box.items.clear()
        for group in list(state.groups):
            shard, topic = self._group_topic(group)
            await self._subscriber(state, shard).unsubscribe(topic)
        state.groups.clear()
        state.channel_groups.clear()
        await super()._flush()

    def _buffered_mailbox(self, resources: _CoreLoop, channel: str) -> Mailbox | None:
        if "!" not in channel:
            return super()._buffered_mailbox(resources, channel)
        assert isinstance(resources, _PubSubLoop)
        return resources.mailboxes.get(channel)

    async def local_state_sizes(self) -> dict[str, int]:
        """Sizes of this loop's bookkeeping (for leak checks and monitoring)."""
        state = await self._state()
        return {
            "channels": len(state.mailboxes),
            "groups": len(state.groups),
            "channel_groups": len(state.channel_groups),
            "subscriptions": sum(len(s.channels) for s in state.subscribers.values()),
        }
