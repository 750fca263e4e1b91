"""The Redis channel layer: sharded queues, collapsed group fan-out, per-loop connections.

Theory of operation
-------------------
*Where things live.* Names are placed on shards by consistent hashing (:mod:`.ring`). A normal
channel is a Redis list on the shard of its name. A process-local channel
``specific.<id>!<suffix>`` has no list of its own: every local channel of one layer instance
shares that instance's *inbox* list, on the shard of ``specific.<id>!`` — the same shard for
the sender and the receiver, whatever the suffix (channels_redis #221 loses messages here).
A group membership lives on the shard of the member channel; so ``group_send`` runs one Lua
script per shard that reads the shard's members and fills their queues in the same round trip,
and a process with many members in a group receives **one** inbox element naming all of its
member channels (the fan-out is finished in that process, in memory). See :mod:`.scripts` for
the key layout and element format.

*Receiving.* ``receive()`` never talks to Redis itself: it waits on a :class:`Mailbox`. A
background reader per inbox (``BLMPOP``, many elements per call) or per received normal
channel (``BLPOP``, one at a time, only while someone waits, so other processes get the rest)
fills mailboxes. Cancelling ``receive()`` therefore never loses a message: one that arrives
for a receiver that just left stays buffered for the next ``receive()``; ``close()`` pushes
buffered normal-channel messages back to the head of their lists.

*Capacity and expiry.* A normal channel's capacity is its list length (expired heads are
trimmed first). For a local channel, direct sends are counted in a hash next to the inbox,
raised by the sender's script and lowered when the receiver takes the message (batched with
the process's other settlements, one call per inbox every ``SETTLE_DELAY``; a send from the
receiving loop itself settles first), so ``send()`` raises ``ChannelFull`` exactly. Group copies
for local channels are bounded by the receiving process instead: a member already holding
``capacity`` messages misses the copy. That keeps the group script free of per-member work
for local members — it joins each process's member suffixes in C and pushes one element.
Every element carries its expiry time; readers drop expired elements and keys expire
``expiry`` seconds after the last write.

*Failures.* Every Redis call retries connection errors with jittered exponential backoff for
``reconnect_timeout`` seconds; readers retry forever, so consumers keep waiting through a
Redis restart. Sends carry an id whose marker makes a retry after a lost reply a no-op — a
message is never delivered twice. What a restart can lose: everything the server held
(queued messages, memberships unless re-added), and an element a reader had popped when the
connection broke.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, ResponseError

from headrace.exceptions import ChannelFull, InvalidChannelLayerError
from headrace.layers.base import (
    BaseChannelLayer,
    CapacityPattern,
    LayerMessage,
    Statistics,
    statistics_of,
)
from headrace.layers.history import POSITION_KEY, GroupHistory, Position
from headrace.layers.redis import scripts
from headrace.layers.redis.blocking import BlockingPopper, PopperPool
from headrace.layers.redis.connections import (
    RETRYABLE,
    Backoff,
    LeanConnection,
    LoopResources,
    Script,
    SyncBridge,
    raise_if_cancelling,
    retrying,
)
from headrace.layers.redis.features import GroupFeatureStore
from headrace.layers.redis.hosts import AnyRedis, HostSpec, decode_hosts
from headrace.layers.redis.mailbox import Inbox, Item, Mailbox, QueueReader, Settle, now_ms
from headrace.layers.redis.ring import HashRing, shard_name
from headrace.layers.redis.serializers import MessageSerializer

__all__ = ["Item", "Mailbox", "RedisChannelLayer", "now_ms"]

T = TypeVar("T")

_SEND = Script(scripts.SEND)
_SEND_LOCAL = Script(scripts.SEND_LOCAL)
_GROUP_ADD = Script(scripts.GROUP_ADD)
_GROUP_ADD_LOCAL = Script(scripts.GROUP_ADD_LOCAL)
_GROUP_DISCARD_LOCAL = Script(scripts.GROUP_DISCARD_LOCAL)
_GROUP_SEND = Script(scripts.GROUP_SEND)
_SETTLE = Script(scripts.SETTLE)
_STATISTICS = Script(scripts.STATISTICS)
_GLOBAL_STATISTICS = Script(scripts.GLOBAL_STATISTICS)

_POP_ERRORS: tuple[type[BaseException], ...] = (*RETRYABLE, ResponseError, RedisClusterException)
INBOX_BATCH = 512
STATISTICS_SCAN_LIMIT = 1000
SHARD_CACHE_SIZE = 65536
SETTLE_DELAY = 0.01
_GLOB_SPECIALS = str.maketrans({char: "\\" + char for char in "*?[]\\"})


class _CoreLoop(LoopResources):
    """Per-loop state of :class:`RedisChannelLayer`."""

    def __init__(self, layer: RedisChannelLayer, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(layer.hosts, loop)
        self.layer = layer
        self.inboxes: dict[str, Inbox] = {}
        self.readers: dict[str, QueueReader] = {}
        self.settle: dict[tuple[int, str], Settle] = {}
        self.flush_task: asyncio.Task[None] | None = None
        self.settle_lock = asyncio.Lock()
        self.poppers = PopperPool()
        self.shared_poppers: dict[int, BlockingPopper] = {}
        self.node_servers: dict[str, aioredis.Redis] = {}

    def node_server(self, spec: HostSpec) -> aioredis.Redis:
        """A plain client of one cluster node (for blocking pops), kept for this loop."""
        server = self.node_servers.get(spec.description)
        if server is None:
            client = spec.make_client()
            assert isinstance(client, aioredis.Redis)
            server = self.node_servers[spec.description] = client
        return server

    async def before_close(self) -> None:
        try:
            await self.poppers.aclose()
            servers, self.node_servers = list(self.node_servers.values()), {}
            for server in servers:
                await server.aclose()
            await self.layer._return_buffered(self)
            await self.layer._flush_settle(self)
        except RETRYABLE:
            pass


class RedisChannelLayer(BaseChannelLayer):
    """Channel layer on one or more Redis servers, a Sentinel-managed master or a Cluster.

    Options (all keyword; see docs/layers.md): ``hosts``, ``prefix``, ``expiry``,
    ``group_expiry``, ``capacity``, ``channel_capacity``, ``symmetric_encryption_keys``,
    ``serializer_format`` (``"msgpack"`` or ``"json"``), ``random_prefix_length`` (accepted for
    channels_redis compatibility; unused), ``statistics`` (per-channel counters, default on),
    ``reconnect_timeout`` (how long a call retries a lost Redis), ``cluster_shards`` (hash-tag
    shards spread over a Redis Cluster).
    """

    extensions: ClassVar[list[str]] = ["groups", "flush", "statistics", "history", "presence"]
    blocking_timeout: ClassVar[float] = 1.0

    def __init__(
        self,
        hosts: Sequence[Any] | None = None,
        prefix: str = "asgi",
        expiry: float = 60,
        group_expiry: float = 86400,
        capacity: int = 100,
        channel_capacity: Mapping[CapacityPattern, int] | None = None,
        symmetric_encryption_keys: Sequence[str | bytes] | None = None,
        random_prefix_length: int = 12,
        serializer_format: str = "msgpack",
        statistics: bool = True,
        reconnect_timeout: float = 10.0,
        cluster_shards: int = 16,
        **kwargs: Any,
    ) -> None:
        _check_options(prefix, expiry, group_expiry, capacity, reconnect_timeout, cluster_shards)
        super().__init__(
            expiry=expiry,
            capacity=capacity,
            channel_capacity=channel_capacity,
            group_expiry=group_expiry,
            **kwargs,
        )
        self.hosts: list[HostSpec] = decode_hosts(hosts)
        self.prefix = prefix
        self.serializer = MessageSerializer(serializer_format, symmetric_encryption_keys)
        self.statistics = statistics
        self.reconnect_timeout = reconnect_timeout
        self._shards = self._layout_shards(cluster_shards)
        self._ring = HashRing(len(self._shards))
        self._single_shard = len(self._shards) == 1
        self._shard_cache: dict[str, int] = {}
        self.client_prefix = secrets.token_hex(8)
        self._loops: dict[asyncio.AbstractEventLoop, _CoreLoop] = {}
        self._bridge = SyncBridge()
        self._features = GroupFeatureStore(self)

    def _layout_shards(self, cluster_shards: int) -> list[tuple[int, str]]:
        """(host index, key base) per shard; a cluster gets ``cluster_shards`` hash tags."""
        if self.hosts[0].kind == "cluster":
            return [(0, f"{{{self.prefix}.{n}}}") for n in range(cluster_shards)]
        return [(n, f"{{{self.prefix}.{n}}}") for n in range(len(self.hosts))]

    @property
    def shard_count(self) -> int:
        return len(self._shards)

    def shard_of(self, channel: str) -> int:
        """The shard index a channel's queue (or inbox) lives on."""
        if self._single_shard:
            return 0
        name = shard_name(channel)
        shard = self._shard_cache.get(name)
        if shard is None:
            if len(self._shard_cache) >= SHARD_CACHE_SIZE:
                self._shard_cache.clear()
            shard = self._shard_cache[name] = self._ring.index(name)
        return shard

    # ------------------------------------------------------------------ plumbing

    async def _bridged(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run ``operation`` here, or on the sync bridge when called from ``async_to_sync``."""
        if self._bridge.should_offload():

            async def on_bridge() -> T:
                return await operation()

            return await self._bridge.run(on_bridge())
        return await operation()

    def _make_loop_state(self, loop: asyncio.AbstractEventLoop) -> _CoreLoop:
        return _CoreLoop(self, loop)

    async def _resources(self) -> _CoreLoop:
        loop = asyncio.get_running_loop()
        resources = self._loops.get(loop)
        if resources is None or resources.closed:
            for old_loop in [old for old in self._loops if old.is_closed()]:
                del self._loops[old_loop]
            resources = self._loops[loop] = self._make_loop_state(loop)
            await resources.start()
            await self._initialize_clusters(resources)
        return resources

    async def _initialize_clusters(self, resources: _CoreLoop) -> None:
        """Load cluster topology once, before concurrent calls: redis-py's cluster client
        races (and fails) when several first commands initialise it at the same time."""
        for index, spec in enumerate(self.hosts):
            client = resources.client(index)
            if spec.kind == "cluster" and isinstance(client, RedisCluster):
                await self._retry(client.initialize)

    def _client(self, resources: _CoreLoop, shard: int) -> tuple[AnyRedis, str]:
        host_index, base = self._shards[shard]
        return resources.client(host_index), base

    async def _retry(self, operation: Callable[[], Awaitable[T]]) -> T:
        return await retrying(operation, self.reconnect_timeout)

    def _ttls(self) -> tuple[int, int]:
        """(queue ttl, dedupe marker ttl) in ms."""
        return max(1, int(self.expiry * 1000)), int((self.reconnect_timeout + 5) * 1000)

    # ------------------------------------------------------------------ send

    async def send(self, channel: str, message: LayerMessage) -> None:
        """Append ``message`` to ``channel``; raise ChannelFull when it is at capacity."""
        self.require_valid_channel_name(channel)
        self.require_valid_message(message)
        payload = self.serializer.serialize(message)
        resources = self._loops.get(asyncio.get_running_loop())
        if resources is not None and not resources.closed:
            await self._send_in(resources, channel, payload)  # fast path, as in receive()
        else:
            await self._bridged(lambda: self._send(channel, payload))

    async def _send(self, channel: str, payload: bytes) -> None:
        await self._send_in(await self._resources(), channel, payload)

    async def _send_in(self, resources: _CoreLoop, channel: str, payload: bytes) -> None:
        shard = self.shard_of(channel)
        client, base = self._client(resources, shard)
        ttl, dedupe_ttl = self._ttls()
        dedupe = f"{base}:d:{secrets.token_hex(8)}"
        capacity = self.get_capacity(channel)
        now = now_ms()
        tail: list[str | bytes | int] = [base, channel, "1" if self.statistics else "0"]
        if "!" in channel:
            nonlocal_name, suffix = _split_local(channel)
            if nonlocal_name in resources.inboxes:
                await self._settle_now(resources)
            element = scripts.format_element(now + ttl, payload, suffix)
            inbox, counts = f"{base}:c:{nonlocal_name}", f"{base}:n:{nonlocal_name}"
            keys = [inbox, counts, dedupe, f"{base}:s"]
            args: list[str | bytes | int] = [now, suffix, element, capacity, ttl, dedupe_ttl]
            script = _SEND_LOCAL
        else:
            element = scripts.format_element(now + ttl, payload)
            keys = [f"{base}:c:{channel}", dedupe, f"{base}:s"]
            args = [now, element, capacity, ttl, dedupe_ttl]
            script = _SEND
        args += tail
        lean = resources.lean(self._shards[shard][0])
        if lean is not None:
            accepted = await self._retry(lambda: script.run_lean(lean, keys, args))
        else:
            accepted = await self._retry(lambda: script(client, keys, args))
        if not accepted:
            raise ChannelFull(f"channel {channel!r} is full ({capacity} messages)")

    # ------------------------------------------------------------------ receive

    async def new_channel(self, prefix: str = "specific") -> str:
        """A new process-local channel of this instance; its inbox reader starts now."""
        channel = f"{prefix}.{self.client_prefix}!{self.random_suffix()}"
        self.require_valid_channel_name(channel)
        await self._bridged(lambda: self._start_inbox(channel))
        return channel

    async def _start_inbox(self, channel: str) -> None:
        resources = await self._resources()
        self._inbox(resources, _split_local(channel)[0])

    async def receive(self, channel: str) -> LayerMessage:
        """Wait for the next unexpired message on ``channel``."""
        self.require_valid_channel_name(channel)
        resources = self._loops.get(asyncio.get_running_loop())
        if resources is not None and not resources.closed:
            # fast path: this loop is set up already, no offload check, no extra coroutine
            if "!" in channel and type(resources) is _CoreLoop:
                payload = await self._receive_local(resources, channel)
            else:
                payload = await self._receive_in(resources, channel)
        else:
            payload = await self._bridged(lambda: self._receive(channel))
        return self.serializer.deserialize(payload)

    async def _receive(self, channel: str) -> bytes:
        return await self._receive_in(await self._resources(), channel)

    async def receive_any(self, channels: Sequence[str]) -> tuple[str, LayerMessage] | None:
        """The next unexpired message of any of the normal ``channels``, as ``(channel,
        message)``: ONE blocking pop over all their lists, in a random order each call (so a
        busy channel cannot starve a quiet one). Exactly one message leaves Redis per call, and
        a cancelled call leaves it there (:class:`BlockingPopper`), so a caller that receives
        only when it is free holds nothing but what it is working on (the Channels-1 worker).
        ``None`` when one pop cannot do it (a process-local channel, channels on several
        shards): receive them one by one then."""
        names = list(channels)
        for name in names:
            self.require_valid_channel_name(name)
        if not names or any("!" in name for name in names):
            return None
        shard = self.shard_of(names[0])
        if any(self.shard_of(name) != shard for name in names[1:]):
            return None
        resources = await self._bridged(self._resources)
        buffered = self._take_buffered(resources, names)
        if buffered is not None:
            return buffered[0], self.serializer.deserialize(buffered[1])
        random.shuffle(names)
        _, base = self._client(resources, shard)
        keys = {f"{base}:c:{name}": name for name in names}
        key, payload = await self._pop_any(resources, shard, keys)
        return keys[key], self.serializer.deserialize(payload)

    async def _pop_any(
        self, resources: _CoreLoop, shard: int, keys: Mapping[str, str]
    ) -> tuple[str, bytes]:
        """BLPOP over ``keys`` until an unexpired element comes; its key and payload."""
        command = ("BLPOP", *keys, self._block_seconds())
        first_key = next(iter(keys))
        backoff = Backoff()
        while True:
            popper = None
            try:
                popper = self._any_popper(resources, shard, first_key)
                popped = await popper.pop(_taken, *command)
            except _POP_ERRORS:
                raise_if_cancelling()
                _discard(popper)
                await backoff.wait()
                continue
            finally:
                if popper is not None:
                    self._release_any_popper(resources, popper)
            backoff.reset()
            if popped:
                key, (element,) = _taken(popped)
                expires, _, payload = scripts.parse_element(element)
                if expires > now_ms():
                    return key, payload
            raise_if_cancelling()

    def _any_popper(self, resources: _CoreLoop, shard: int, key: str) -> BlockingPopper:
        """The popper of one :meth:`receive_any`: on a plain server the one sharing the loop's
        lean connection (a worker's replies and its next pop go out in one write) unless
        another receive uses it; else one of the loop's own."""
        lean = resources.lean(self._shards[shard][0])
        if lean is not None:
            popper = resources.shared_poppers.get(id(lean))
            if popper is None:
                popper = resources.shared_poppers[id(lean)] = BlockingPopper(lean.client, lean)
            if not popper.in_use:
                popper.in_use = True
                return popper
        return resources.poppers.acquire(self._server_of(resources, shard, key))

    @staticmethod
    def _release_any_popper(resources: _CoreLoop, popper: BlockingPopper) -> None:
        if popper.shared is not None:
            popper.in_use = False
        else:
            resources.poppers.release(popper)

    @staticmethod
    def _take_buffered(resources: _CoreLoop, names: Sequence[str]) -> tuple[str, bytes] | None:
        """An unexpired message this loop already holds for one of ``names`` (given back by a
        receive that left), first in line."""
        now = now_ms()
        for name in names:
            reader = resources.readers.get(name)
            while reader is not None and reader.mailbox.items:
                expires, payload, _ = reader.mailbox.items.popleft()
                if expires > now:
                    return name, payload
        return None

    async def _receive_in(self, resources: _CoreLoop, channel: str) -> bytes:
        if "!" in channel:
            return await self._receive_local(resources, channel)
        reader = resources.readers.get(channel)
        if reader is None:
            reader = resources.readers[channel] = QueueReader(channel)
        while True:
            try:
                expires, payload, _ = await reader.mailbox.get(
                    lambda: self._ensure_queue_reader(resources, reader)
                )
            except asyncio.CancelledError:
                self._keep_returned(resources, reader)
                raise
            if expires > now_ms():
                return payload

    @staticmethod
    def _keep_returned(resources: _CoreLoop, reader: QueueReader) -> None:
        """A receive cancelled just after its reader handed it a message put the message back
        in the reader's mailbox; the reader may have retired meanwhile (it had no waiter left),
        so make sure the next receive of the channel finds the message, first in line."""
        if not reader.mailbox.items:
            return
        current = resources.readers.get(reader.channel)
        if current is None:
            resources.readers[reader.channel] = reader  # restarted by the next waiting receive
        elif current is not reader:
            pending = [*reader.mailbox.items, *current.mailbox.items]
            reader.mailbox.items.clear()
            current.mailbox.items.clear()
            for item in pending:
                current.mailbox.deliver(item)

    async def _receive_local(self, resources: _CoreLoop, channel: str) -> bytes:
        nonlocal_name, suffix = _split_local(channel)
        inbox = self._inbox(resources, nonlocal_name)
        try:
            while True:
                expires, payload, counted = await inbox.mailbox(suffix).get()
                if counted:
                    self._settle(resources, nonlocal_name).taken.append(suffix)
                if expires > now_ms():
                    return payload
        except BaseException:
            # A cancelled receive() is how a consumer leaves: forget its mailbox now. After a
            # delivery the mailbox stays for the next receive() (no re-creation per message);
            # the reader's periodic sweep forgets it if that never comes.
            inbox.forget_if_idle(suffix)
            raise

    def _inbox(self, resources: _CoreLoop, nonlocal_name: str) -> Inbox:
        inbox = resources.inboxes.get(nonlocal_name)
        if inbox is None:
            inbox = resources.inboxes[nonlocal_name] = Inbox(nonlocal_name)
            if self.group_features and not self._single_shard:
                self._read_inbox_everywhere(resources, inbox)
        if inbox.task is None or inbox.task.done():
            inbox.task = resources.spawn(self._read_inbox(resources, inbox))
        return inbox

    def _read_inbox_everywhere(self, resources: _CoreLoop, inbox: Inbox) -> None:
        """Read ``inbox`` on every other shard too, so that a group with history or presence
        delivers to it from the group's shard in the same script call (see :mod:`.features`)."""
        home = self.shard_of(inbox.nonlocal_name)
        for shard in range(self.shard_count):
            if shard != home:
                resources.spawn(self._read_inbox(resources, inbox, shard))

    async def _read_inbox(self, resources: _CoreLoop, inbox: Inbox, shard: int = -1) -> None:
        """Move ``inbox``'s elements into mailboxes: from its home shard, or from ``shard``
        (where groups with history or presence push copies for it)."""
        shard = self.shard_of(inbox.nonlocal_name) if shard < 0 else shard
        _, base = self._client(resources, shard)
        key = f"{base}:c:{inbox.nonlocal_name}"
        command = ("BLMPOP", self._block_seconds(), "1", key, "LEFT", "COUNT", str(INBOX_BATCH))

        backoff = Backoff()
        swept = resources.loop.time()
        popper: BlockingPopper | None = None
        try:
            while not resources.closed:
                try:
                    server = self._server_of(resources, shard, key)
                    popper = popper or resources.poppers.acquire(server)
                    popped = await popper.pop(_taken, *command)
                except _POP_ERRORS:
                    raise_if_cancelling()
                    _discard(popper)
                    popper = None
                    await backoff.wait()
                    continue
                raise_if_cancelling()
                backoff.reset()
                if popped:
                    self._dispatch_inbox(resources, inbox, cast(list[bytes], popped[1]))
                if not popped or resources.loop.time() - swept >= self.blocking_timeout:
                    self._sweep_inbox(resources, inbox)
                    swept = resources.loop.time()
        finally:
            if popper is not None:
                resources.poppers.release(popper)

    def _block_seconds(self) -> str:
        return f"{self.blocking_timeout:g}"

    def _server_of(self, resources: _CoreLoop, shard: int, key: str) -> aioredis.Redis:
        """The plain client of the server holding ``key`` (on a cluster, a client of the node
        serving its slot, kept for this loop)."""
        client, _ = self._client(resources, shard)
        if not isinstance(client, RedisCluster):
            return client
        node = client.get_node_from_key(key)
        if node is None:
            raise RedisConnectionError(f"no cluster node known for {key!r}")
        spec = self.hosts[self._shards[shard][0]].pubsub_node((node.host, int(node.port)))
        return resources.node_server(spec)

    def _dispatch_inbox(self, resources: _CoreLoop, inbox: Inbox, elements: list[bytes]) -> None:
        now = now_ms()
        for element in elements:
            expires, targets, payload = scripts.parse_element(element)
            if targets.startswith("*"):
                self._dispatch_group_copy(resources, inbox, targets[1:], (expires, payload, False))
            elif expires <= now:
                self._settle(resources, inbox.nonlocal_name).taken.append(targets)
            else:
                inbox.mailbox(targets).deliver((expires, payload, True))

    def _dispatch_group_copy(
        self, resources: _CoreLoop, inbox: Inbox, targets: str, item: Item
    ) -> None:
        """One group message for many local channels: bounded per channel, by capacity."""
        if item[0] <= now_ms():
            return
        settle = self._settle(resources, inbox.nonlocal_name)
        accepted, refused = settle.accepted, settle.refused
        mailboxes, nonlocal_name = inbox.mailboxes, inbox.nonlocal_name
        uniform = None if self.channel_capacity else self.capacity
        for suffix in targets.split(","):
            box = mailboxes.get(suffix) or inbox.mailbox(suffix)
            capacity = uniform or self.get_capacity(nonlocal_name + suffix)
            if box.waiters or len(box.items) < capacity:
                box.deliver(item)
                accepted.append(suffix)
            else:
                refused.append(suffix)

    def _sweep_inbox(self, resources: _CoreLoop, inbox: Inbox) -> None:
        """Drop expired buffered messages and forget idle mailboxes (no leak per channel)."""
        now = now_ms()
        for suffix, box in list(inbox.mailboxes.items()):
            for _, _, counted in box.drop_expired(now):
                if counted:
                    self._settle(resources, inbox.nonlocal_name).taken.append(suffix)
            inbox.forget_if_idle(suffix)

    def _ensure_queue_reader(self, resources: _CoreLoop, reader: QueueReader) -> None:
        if reader.task is None or reader.task.done():
            reader.task = resources.spawn(self._read_queue(resources, reader))

    async def _hand_over_popped(
        self, popper: BlockingPopper, key: str, reader: QueueReader, element: bytes
    ) -> None:
        """Give a popped element to a waiting receive; when every receive left while the
        BLPOP was out, push it back to the head of the list, so it stays in Redis for any
        process (not buffered in this one, which may die first). If Redis cannot take it back,
        it waits in this process for the next receive."""
        expires, _, payload = scripts.parse_element(element)
        if expires <= now_ms():
            return
        if not reader.mailbox.has_waiters():
            try:
                await popper.push_back(key, [element])
                return
            except RETRYABLE:
                pass
        reader.mailbox.deliver((expires, payload, False))

    async def _read_queue(self, resources: _CoreLoop, reader: QueueReader) -> None:
        shard = self.shard_of(reader.channel)
        _, base = self._client(resources, shard)
        key = f"{base}:c:{reader.channel}"
        command = ("BLPOP", key, self._block_seconds())

        backoff = Backoff()
        popper: BlockingPopper | None = None
        try:
            while reader.mailbox.has_waiters() and not resources.closed:
                try:
                    server = self._server_of(resources, shard, key)
                    popper = popper or resources.poppers.acquire(server)
                    popped = await popper.pop(_taken, *command)
                except _POP_ERRORS:
                    raise_if_cancelling()
                    _discard(popper)
                    popper = None
                    await backoff.wait()
                    continue
                raise_if_cancelling()
                backoff.reset()
                if popped:
                    await self._hand_over_popped(popper, key, reader, cast(bytes, popped[1]))
        finally:
            if popper is not None:
                resources.poppers.release(popper)
        if not reader.mailbox.items and resources.readers.get(reader.channel) is reader:
            del resources.readers[reader.channel]

    def _settle(self, resources: _CoreLoop, nonlocal_name: str) -> Settle:
        """The batch owed for ``nonlocal_name``'s inbox; sent within one loop turn."""
        key = (self.shard_of(nonlocal_name), nonlocal_name)
        settle = resources.settle.get(key)
        if settle is None:
            settle = resources.settle[key] = Settle()
        if resources.flush_task is None or resources.flush_task.done():
            resources.flush_task = resources.spawn(self._flush_settle_soon(resources))
        return settle

    async def _settle_now(self, resources: _CoreLoop) -> None:
        """Land this loop's pending settlements (and any in flight) before a send to one of
        its own local channels, so a receive followed by a send sees the freed capacity."""
        if resources.settle:
            await self._flush_settle(resources)
        else:
            async with resources.settle_lock:
                pass

    async def _flush_settle_soon(self, resources: _CoreLoop) -> None:
        # Coalesce: one SETTLE per inbox per SETTLE_DELAY, not one per message. A send from
        # this loop to a local channel settles first (_settle_decrements), so it stays exact.
        await asyncio.sleep(SETTLE_DELAY)
        await self._flush_settle(resources)

    async def _flush_settle(self, resources: _CoreLoop) -> None:
        async with resources.settle_lock:
            pending, resources.settle = resources.settle, {}
            await self._send_settlements(resources, pending)

    async def _send_settlements(
        self, resources: _CoreLoop, pending: dict[tuple[int, str], Settle]
    ) -> None:
        calls = []
        stats_flag = "1" if self.statistics else "0"
        for (shard, nonlocal_name), settle in pending.items():
            if not (settle.taken or settle.accepted or settle.refused):
                continue
            client, base = self._client(resources, shard)
            lean = resources.lean(self._shards[shard][0])
            keys = [f"{base}:n:{nonlocal_name}", f"{base}:s"]
            args: list[str | bytes | int] = [
                ",".join(settle.taken),
                base,
                now_ms(),
                nonlocal_name,
                ",".join(settle.accepted),
                ",".join(settle.refused),
                stats_flag,
            ]
            if lean is not None:
                calls.append(self._retry(_bind_lean(_SETTLE, lean, keys, args)))
            else:
                calls.append(self._retry(_bind(_SETTLE, client, keys, args)))
        await asyncio.gather(*calls)

    async def _return_buffered(self, resources: _CoreLoop) -> None:
        """Put messages buffered for departed receivers back at the head of their lists."""
        now = now_ms()
        for channel, reader in list(resources.readers.items()):
            items = [item for item in reader.mailbox.items if item[0] > now]
            reader.mailbox.items.clear()
            if not items:
                continue
            client, base = self._client(resources, self.shard_of(channel))
            elements = [scripts.format_element(expires, payload) for expires, payload, _ in items]
            await client.lpush(f"{base}:c:{channel}", *reversed(elements))
        resources.readers.clear()
        resources.inboxes.clear()

    # ------------------------------------------------------------------ groups

    async def group_add(self, group: str, channel: str, info: dict[str, Any] | None = None) -> None:
        """Add ``channel`` to ``group`` (or renew it); stored on the channel's shard, or on
        the group's for a group with history or presence (which records ``info``)."""
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        if info is not None and not isinstance(info, dict):
            raise TypeError(f"info must be a dict or None, not {type(info).__name__}")
        if self.group_features and self._features.special(group):
            await self._bridged(lambda: self._features.add(group, channel, info))
            return
        await self._bridged(lambda: self._group_add(group, channel))

    async def _group_add(self, group: str, channel: str) -> None:
        resources = await self._resources()
        client, base = self._client(resources, self.shard_of(channel))
        ttl = max(1, int(self.group_expiry * 1000))
        if "!" in channel:
            nonlocal_name, suffix = _split_local(channel)
            keys = [f"{base}:gl:{group}", f"{base}:gm:{group}:{nonlocal_name}"]
            args: list[str | bytes | int] = [now_ms(), suffix, nonlocal_name, ttl]
            await self._retry(_bind(_GROUP_ADD_LOCAL, client, keys, args))
            return
        keys = [f"{base}:g:{group}"]
        args = [now_ms(), self._member(channel), ttl]
        await self._retry(_bind(_GROUP_ADD, client, keys, args))

    def _member(self, channel: str) -> str:
        """A normal channel's group entry carries its capacity, enforced by the group script
        (process-local members are bounded by their receiving process)."""
        return f"{self.get_capacity(channel)}|{channel}"

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group``; no error if it was not a member."""
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        if self.group_features and self._features.special(group):
            await self._bridged(lambda: self._features.discard(group, channel))
            return
        await self._bridged(lambda: self._group_discard(group, channel))

    async def _group_discard(self, group: str, channel: str) -> None:
        resources = await self._resources()
        client, base = self._client(resources, self.shard_of(channel))
        if "!" in channel:
            nonlocal_name, suffix = _split_local(channel)
            keys = [f"{base}:gl:{group}", f"{base}:gm:{group}:{nonlocal_name}"]
            args: list[str | bytes | int] = [suffix, nonlocal_name]
            await self._retry(_bind(_GROUP_DISCARD_LOCAL, client, keys, args))
            return
        key, member = f"{base}:g:{group}", self._member(channel)
        await self._retry(lambda: client.zrem(key, member))

    async def group_send(self, group: str, message: LayerMessage) -> Position | None:
        """Send to every member: one script per shard, one inbox element per process. A group
        with history or presence: one script on the group's shard; returns the Position of a
        kept message."""
        self.require_valid_group_name(group)
        self.require_valid_message(message)
        if self.group_features and self._features.special(group):
            if POSITION_KEY in message:
                message = {key: value for key, value in message.items() if key != POSITION_KEY}
            kept = self.serializer.serialize(message)
            return await self._bridged(lambda: self._features.send(group, kept))
        payload = self.serializer.serialize(message)
        await self._bridged(lambda: self._group_send(group, payload))
        return None

    async def group_history(
        self, group: str, since: Position | None = None, limit: int | None = None
    ) -> GroupHistory:
        """The kept messages of ``group`` after ``since``: one script call."""
        self.require_valid_group_name(group)
        return await self._bridged(lambda: self._features.history(group, since, limit))

    async def group_presence(self, group: str) -> dict[str, dict[str, Any]]:
        """``{channel: info}`` of the live members of ``group``: one script call."""
        self.require_valid_group_name(group)
        return await self._bridged(lambda: self._features.presence(group))

    async def group_presence_count(self, group: str) -> int:
        """The live members of ``group``: one script call (a ZCOUNT)."""
        self.require_valid_group_name(group)
        return await self._bridged(lambda: self._features.presence_count(group))

    async def _group_send(self, group: str, payload: bytes) -> None:
        resources = await self._resources()
        ttl, dedupe_ttl = self._ttls()
        now = now_ms()
        cutoff = now - int(self.group_expiry * 1000)
        token = secrets.token_hex(8)
        calls = []
        for shard in range(self.shard_count):
            client, base = self._client(resources, shard)
            keys = [f"{base}:g:{group}", f"{base}:d:{token}", f"{base}:s", f"{base}:gl:{group}"]
            args: list[str | bytes | int] = [
                now,
                cutoff,
                ttl,
                b"%013d" % (now + ttl),
                payload,
                base,
                dedupe_ttl,
                "1" if self.statistics else "0",
                group,
            ]
            calls.append(self._retry(_bind(_GROUP_SEND, client, keys, args)))
        await asyncio.gather(*calls)

    def stop_presence_heartbeat(self) -> None:
        """Stop refreshing the presence of the channels this layer added (for tests: the
        layer then looks like a process that hung or died without discarding them)."""
        self._features.stop()

    # ------------------------------------------------------------------ flush, close

    async def flush(self) -> None:
        """Delete every key under this prefix on every shard and drop buffered messages."""
        await self._bridged(self._flush)

    async def _flush(self) -> None:
        resources = await self._resources()
        for inbox in resources.inboxes.values():
            for box in inbox.mailboxes.values():
                box.items.clear()
        for reader in resources.readers.values():
            reader.mailbox.items.clear()
        resources.settle.clear()
        self._features.forget()
        for host_index in sorted({host for host, _ in self._shards}):
            await self._flush_host(resources.client(host_index))

    async def _flush_host(self, client: AnyRedis) -> None:
        pattern = "{" + self.prefix.translate(_GLOB_SPECIALS) + ".*"
        by_tag: dict[bytes, list[bytes]] = {}
        async for key in client.scan_iter(match=pattern, count=1000):
            by_tag.setdefault(key[: key.index(b"}") + 1], []).append(key)
        for keys in by_tag.values():
            for start in range(0, len(keys), 500):
                await client.unlink(*keys[start : start + 500])

    async def close(self) -> None:
        """Stop readers, return buffered messages, close every connection of every loop."""
        loops, self._loops = self._loops, {}
        current = asyncio.get_running_loop()
        for loop, resources in loops.items():
            if loop is current:
                await resources.aclose()
            elif loop.is_running():
                future = asyncio.run_coroutine_threadsafe(resources.aclose(), loop)
                await asyncio.wrap_future(future)
        self._bridge.stop()

    async def local_state_sizes(self) -> dict[str, int]:
        """Sizes of this loop's in-process bookkeeping (for leak checks and monitoring):
        mailboxes of local channels, and normal channels with a reader or buffered messages."""
        resources = await self._bridged(self._resources)
        return {
            "channels": sum(len(inbox.mailboxes) for inbox in resources.inboxes.values()),
            "queue_readers": len(resources.readers),
        }

    # ------------------------------------------------------------------ statistics

    async def global_statistics(self) -> Statistics:
        """Counters over all shards, one script call per shard (in parallel). Pending messages
        and their age are per channel only (``messages_pending`` and ``messages_max_age`` are
        not in the answer): Redis keeps no cheap total of every list."""
        return await self._bridged(self._global_statistics)

    async def _global_statistics(self) -> Statistics:
        resources = await self._resources()
        now = now_ms()
        calls = []
        for shard in range(self.shard_count):
            client, base = self._client(resources, shard)
            keys: list[str] = [f"{base}:s"]
            args: list[str | bytes | int] = [base, now]
            calls.append(self._retry(_bind(_GLOBAL_STATISTICS, client, keys, args)))
        totals = [0, 0, 0, 0]
        for answer in await asyncio.gather(*calls):
            for index, value in enumerate(answer):
                totals[index] += int(value)
        return {
            "messages_count": totals[0],
            "messages_count_per_second": totals[2],
            "channel_full_count": totals[1],
            "channel_full_count_per_second": totals[3],
        }

    async def channel_statistics(self, channel: str) -> Statistics:
        """``messages_count`` (in the last one to two hours), ``messages_pending``,
        ``messages_max_age`` (s), ``channel_full_count`` and the last second's rates of one
        channel: one script call."""
        self.require_valid_channel_name(channel)
        return await self._bridged(lambda: self._channel_statistics(channel))

    async def _channel_statistics(self, channel: str) -> Statistics:
        resources = await self._resources()
        client, base = self._client(resources, self.shard_of(channel))
        nonlocal_name, suffix = _split_local(channel) if "!" in channel else (channel, "")
        keys = [f"{base}:c:{nonlocal_name}", f"{base}:n:{nonlocal_name}"]
        args: list[str | bytes | int] = [now_ms(), suffix, base, channel, STATISTICS_SCAN_LIMIT]
        answer = await self._retry(lambda: _STATISTICS(client, keys, args))
        count, full, pending, oldest, count_rate, full_rate = (int(value) for value in answer)
        oldest = self._oldest_buffered(resources, channel, oldest)
        age = max(0.0, (now_ms() - (oldest - self._ttls()[0])) / 1000) if oldest > 0 else 0.0
        return statistics_of(
            (count, count_rate, full, full_rate),
            pending + self._buffered_count(resources, channel),
            age,
        )

    def _buffered_mailbox(self, resources: _CoreLoop, channel: str) -> Mailbox | None:
        if "!" in channel:
            nonlocal_name, suffix = _split_local(channel)
            inbox = resources.inboxes.get(nonlocal_name)
            return inbox.mailboxes.get(suffix) if inbox else None
        reader = resources.readers.get(channel)
        return reader.mailbox if reader else None

    def _buffered_count(self, resources: _CoreLoop, channel: str) -> int:
        """Messages buffered here that Redis does not count (direct local sends it does)."""
        box = self._buffered_mailbox(resources, channel)
        return 0 if box is None else sum(1 for _, _, counted in box.items if not counted)

    def _oldest_buffered(self, resources: _CoreLoop, channel: str, oldest: int) -> int:
        box = self._buffered_mailbox(resources, channel)
        if box is not None and box.items:
            first = box.items[0][0]
            return first if oldest < 0 else min(first, oldest)
        return oldest


def _bind(
    script: Script, client: AnyRedis, keys: list[str], args: list[str | bytes | int]
) -> Callable[[], Awaitable[Any]]:
    """A zero-argument call of ``script`` (for retrying, without late-binding lambdas)."""

    def call() -> Awaitable[Any]:
        return script(client, keys, args)

    return call


def _bind_lean(
    script: Script, lean: LeanConnection, keys: list[str], args: list[str | bytes | int]
) -> Callable[[], Awaitable[Any]]:
    """:func:`_bind` on the loop's lean connection."""

    def call() -> Awaitable[Any]:
        return script.run_lean(lean, keys, args)

    return call


def _taken(reply: Any) -> tuple[str, list[bytes]]:
    """The key and elements of a BLPOP (``[key, element]``) or BLMPOP (``[key, [elements]]``)
    reply."""
    key, popped = reply
    elements = popped if isinstance(popped, list) else [popped]
    return key.decode() if isinstance(key, bytes) else str(key), elements


def _discard(popper: BlockingPopper | None) -> None:
    """Forget a popper whose connection failed (the next one reconnects, maybe elsewhere)."""
    if popper is not None:
        popper.abort()


def _split_local(channel: str) -> tuple[str, str]:
    bang = channel.index("!")
    return channel[: bang + 1], channel[bang + 1 :]


def _check_options(
    prefix: object,
    expiry: object,
    group_expiry: object,
    capacity: object,
    reconnect_timeout: object,
    cluster_shards: object,
) -> None:
    if not isinstance(prefix, str) or not prefix or "{" in prefix or "}" in prefix:
        raise InvalidChannelLayerError(
            f"prefix must be a non-empty str without '{{' or '}}', not {prefix!r}"
        )
    for name, value in (
        ("expiry", expiry),
        ("group_expiry", group_expiry),
        ("reconnect_timeout", reconnect_timeout),
    ):
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise InvalidChannelLayerError(f"{name} must be a positive number, not {value!r}")
    for name, value in (("capacity", capacity), ("cluster_shards", cluster_shards)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidChannelLayerError(f"{name} must be a positive int, not {value!r}")
