"""``RabbitMQChannelLayer``: the channel layer on a RabbitMQ broker (or cluster), over aiormq.

Theory of operation
-------------------
*Client.* aiormq, not aio-pika: aio-pika is a convenience wrapper over aiormq whose "robust"
connection replays its own idea of the topology after a reconnect. This layer needs to decide
exactly what comes back after a reconnect (and what must not: unacked deliveries of the dead
connection), so it drives aiormq's frames itself and keeps one less layer per message.

*Where things live* (``P`` is the ``prefix``; ``X`` this instance's random id):

* a **worker channel** (no ``!``) is a durable queue ``P.c.<channel>`` with ``x-max-length`` =
  its capacity and ``x-overflow: reject-publish`` (a send to a full queue is ``basic.nack``-ed
  under publisher confirms and becomes :class:`~headrace.exceptions.ChannelFull`), and
  ``x-expires`` (``expiry + group_expiry``) so queues nobody uses any more disappear. Every
  process that receives it consumes the queue: RabbitMQ hands each message to one consumer
  (competing consumers), so a worker channel can have many readers.
* every **process-local channel** of one instance (``prefix.X!suffix``) is served by one
  process queue ``P.p.X`` (auto-delete: it goes with the connection that consumes it). A direct
  send publishes to it with the channel name in a header; the instance consumes it without acks and
  sorts messages into per-channel mailboxes. The queue is not *exclusive*: another process must
  be able to bind it to the groups exchange when it adds one of this instance's channels to a
  group (exclusive queues refuse every other connection).
* a **group** is a routing key on the direct exchange ``groups_exchange`` (``P.groups``).
  A worker-channel member is its queue bound with that key. For process-local members the
  process queue is bound **once** per group, and the instance keeps which of its channels are
  members; a group message reaches each process once and is fanned out in memory. A
  ``group_add`` of another instance's local channel binds that instance's queue and puts a
  *join* notice on it (confirmed before ``group_add`` returns, so any later group message is
  queued behind it); ``group_discard`` puts a *leave* notice.
* ``group_send`` is one publish to the groups exchange. A full member's queue refuses its copy
  (``reject-publish``); the broker still delivers the others, so nobody blocks on a full member.
  Local members beyond ``capacity`` buffered messages miss the copy in the receiving process.

*Expiry.* Every message carries a per-message TTL (``expiration``) and its deadline in a header;
the broker drops expired heads, the receiving process drops expired buffered messages. Group
memberships carry deadlines in the instance that made them: a sweep (and every ``group_send``
of that instance) unbinds lapsed ones; process-local memberships lapse in their own process.

*Receiving* never talks to the broker directly: it waits on a mailbox. A worker channel's
consumer runs while somebody waits on it (and :data:`LINGER` seconds more); messages it took
stay unacked until a receiver takes them, so a process that stops receiving (``basic.cancel``,
``basic.nack(requeue)``) or dies hands them back to the other readers. A cancelled receive puts
its message back in its mailbox.

*Loops.* aiormq connections belong to one event loop. The layer lives on a *home* loop: the
first loop that uses it; a call from another running loop is run on the home loop
(``run_coroutine_threadsafe``); calls from ``async_to_sync``'s one-call loops use a private loop
thread as home. If the home loop has ended, the next caller's loop becomes home (a new
connection; process-local names stay valid, their unreceived messages are gone).

*Broker failures.* See :mod:`.link`: the connection comes back by itself with capped backoff,
failing over the URL list in order. On every connect the instance re-declares its exchanges,
process queue and the queues and bindings of its memberships (durable ones survive a broker
restart anyway), and restarts the consumers that have waiting receivers; receivers keep
waiting through the outage. Buffered worker-channel messages of the dead connection are
dropped, since the broker redelivers them, so nothing arrives twice. Sends while the broker is down
wait up to ``connect_timeout`` and then raise :class:`RabbitMQUnavailable` (a
``ConnectionError``); a send is never retried after it reached the socket, so a lost
confirmation cannot duplicate a message.

*Statistics* (the ``statistics`` extension) count what this instance sent and refused in the
shared :class:`~headrace.layers.base.LayerStatistics`, with the last whole second as
rates; ``messages_pending`` asks the broker for worker-channel queue lengths (a passive
declare) and adds what this process buffers.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar, TypeVar, cast

import aiormq
import aiormq.abc
import msgpack
from asgiref.sync import AsyncToSync
from pamqp.commands import Basic

from headrace.exceptions import ChannelFull, ConfigError
from headrace.layers.base import BaseChannelLayer, LayerMessage, LayerStatistics, statistics_of
from headrace.layers.rabbitmq.delivery import Item, Mailbox, now_ms
from headrace.layers.rabbitmq.link import CHANNEL_ERRORS, RETRYABLE, Link, RabbitMQUnavailable
from headrace.layers.rabbitmq.settings import RabbitMQOptions, resolve_options

__all__ = ["RabbitMQChannelLayer", "RabbitMQUnavailable"]

logger = logging.getLogger("headrace.layers.rabbitmq")

T = TypeVar("T")

LINGER = 0.5
"""Seconds a worker-channel consumer stays after its last waiting receiver left."""

SWEEP_INTERVAL = 1.0
STATISTICS_QUEUE_LIMIT = 200
LOCAL_QUEUE_EXPIRES_MS = 300_000

DIRECT, GROUP, JOIN, LEAVE, FLUSH = "d", "g", "j", "l", "f"
GROUP_SENDS = ""
"""Where group sends are counted (members are not known here): in the totals only, since no
channel is named ``""``."""


def _encode(message: LayerMessage) -> bytes:
    data: bytes = msgpack.packb(message, use_bin_type=True)
    return data


def _decode(body: bytes) -> LayerMessage:
    message: LayerMessage = msgpack.unpackb(body, raw=False)
    return message


def _instance_of(channel: str) -> str:
    """The instance id of a process-local channel ``prefix.<instance>!<suffix>``."""
    return channel.partition("!")[0].rpartition(".")[2]


class _Reader:
    """A worker channel received in this process: its mailbox and its consumer."""

    __slots__ = ("channel", "consumer_tag", "linger", "mailbox", "starting")

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.mailbox = Mailbox()
        self.consumer_tag: str | None = None
        self.starting: asyncio.Future[None] | None = None
        self.linger: asyncio.TimerHandle | None = None


class _Core:
    """The layer's state on its home loop: the link, mailboxes, consumers, memberships."""

    def __init__(self, layer: RabbitMQChannelLayer, loop: asyncio.AbstractEventLoop) -> None:
        self.layer = layer
        self.options: RabbitMQOptions = layer.options
        self.loop = loop
        prefix = self.options.prefix
        self.process_queue = f"{prefix}.p.{layer.instance}"
        self.control_exchange = f"{prefix}.control"
        self.groups_exchange = self.options.groups_exchange
        self.local_boxes: dict[str, Mailbox] = {}
        self.local_groups: dict[str, dict[str, float]] = {}  # group -> channel -> deadline
        self.bound_groups: set[str] = set()
        self.readers: dict[str, _Reader] = {}
        self.declared: set[str] = set()
        self.known: set[str] = set()  # worker channels this instance touched
        self.memberships: dict[tuple[str, str], float] = {}  # (group, worker channel) -> deadline
        self.deadlines: list[tuple[float, str, str]] = []
        self.tasks: set[asyncio.Future[Any]] = set()
        self.mismatch_warned: set[str] = set()
        self.consumer_serial = 0
        self.link = Link(
            self.options.urls,
            self.options.ssl_context,
            self.options.prefetch,
            self._on_connected,
            self._on_lost,
            self._on_ready,
        )
        self.link.start()
        self.sweeper = self.spawn(self._sweep_forever())

    def spawn(self, coroutine: Awaitable[Any]) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coroutine, loop=self.loop)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def ready(self) -> Link:
        link = self.link
        await link.ready(self.options.connect_timeout)
        return link

    # ------------------------------------------------------------------ (re)connect

    async def _on_connected(self, link: Link) -> None:
        control = await link.control()
        await control.exchange_declare(self.groups_exchange, exchange_type="direct", durable=True)
        await control.exchange_declare(self.control_exchange, exchange_type="fanout", durable=True)
        await control.queue_declare(
            self.process_queue,
            auto_delete=True,
            arguments={"x-expires": LOCAL_QUEUE_EXPIRES_MS},
        )
        await control.queue_bind(self.process_queue, self.control_exchange, routing_key="")
        for group in self.bound_groups:
            await control.queue_bind(self.process_queue, self.groups_exchange, routing_key=group)
        self.declared.clear()
        now = time.monotonic()
        for (group, channel), deadline in list(self.memberships.items()):
            if deadline > now:
                await self._declare(link, channel)
                await control.queue_bind(
                    self._queue(channel), self.groups_exchange, routing_key=group
                )
        consumer = link.consumer
        cancel_callbacks = getattr(consumer, "on_consumer_cancel_callbacks", None)
        if cancel_callbacks is not None:  # aiormq >= 7: the broker's basic.cancel
            cancel_callbacks.add(self._on_broker_cancel)
        await consumer.basic_consume(self.process_queue, self._on_process_message, no_ack=True)
        for reader in self.readers.values():
            reader.consumer_tag = None

    def _on_ready(self) -> None:
        """Connected and declared: start the consumers somebody waits for (also those whose
        receive began while the connection was being set up)."""
        for reader in list(self.readers.values()):
            if reader.mailbox.has_waiters():
                self._want_consumer(reader)

    def _on_lost(self) -> None:
        """The connection died: its delivery tags are void and the broker requeues what it
        had handed us, so buffered worker-channel messages are dropped (no duplicates)."""
        for reader in self.readers.values():
            reader.consumer_tag = None
            reader.starting = None
            reader.mailbox.take_all()

    def _queue(self, channel: str) -> str:
        return f"{self.options.prefix}.c.{channel}"

    async def _declare(self, link: Link, channel: str) -> None:
        """Declare a worker channel's queue (once per connection)."""
        if channel in self.declared:
            return
        queue = self._queue(channel)
        layer = self.layer
        arguments: dict[str, aiormq.abc.FieldValue] = {
            "x-max-length": layer.get_capacity(channel),
            "x-overflow": "reject-publish",
            "x-expires": int((layer.expiry + layer.group_expiry) * 1000),
        }
        try:
            await link.call(
                lambda control: control.queue_declare(queue, durable=True, arguments=arguments)
            )
        except aiormq.ChannelPreconditionFailed:
            if queue not in self.mismatch_warned:
                self.mismatch_warned.add(queue)
                logger.warning(
                    "queue %s exists with other arguments (capacity or expiry changed); "
                    "using it as it is",
                    queue,
                )
            await link.call(lambda control: control.queue_declare(queue, passive=True))
        self.declared.add(channel)
        self.known.add(channel)

    # ------------------------------------------------------------------ sending

    def _properties(self, headers: dict[str, Any]) -> Basic.Properties:
        ttl = max(1, int(self.layer.expiry * 1000))
        headers["x"] = now_ms() + ttl
        return Basic.Properties(delivery_mode=1, expiration=str(ttl), headers=headers)

    async def send(self, channel: str, body: bytes) -> None:
        link = await self.ready()
        if "!" in channel:
            await self._send_local(link, channel, body)
        else:
            await self._send_worker(link, channel, body)
        self.layer.statistics.accepted(channel)

    async def _send_local(self, link: Link, channel: str, body: bytes) -> None:
        instance = _instance_of(channel)
        if instance == self.layer.instance:
            box = self.local_boxes.get(channel)
            if box is not None and len(box.items) >= self.layer.get_capacity(channel):
                self._refuse(channel)
        queue = f"{self.options.prefix}.p.{instance}"
        properties = self._properties({"k": DIRECT, "c": channel})
        try:
            await self._publish(link, body, "", queue, properties, mandatory=True)
        except aiormq.PublishError:
            logger.debug("message to %s dropped: its process is gone", channel)

    async def _send_worker(self, link: Link, channel: str, body: bytes) -> None:
        await self._declare(link, channel)
        properties = self._properties({"k": DIRECT})
        queue = self._queue(channel)
        try:
            confirm = await self._publish(link, body, "", queue, properties, mandatory=True)
        except aiormq.PublishError:  # the queue went (flush elsewhere, x-expires): again
            self.declared.discard(channel)
            await self._declare(link, channel)
            confirm = await self._publish(link, body, "", queue, properties, mandatory=True)
        if isinstance(confirm, Basic.Nack):
            self._refuse(channel)

    def _refuse(self, channel: str) -> None:
        self.layer.statistics.refused(channel)
        raise ChannelFull(f"channel {channel!r} is full")

    @staticmethod
    async def _publish(
        link: Link,
        body: bytes,
        exchange: str,
        routing_key: str,
        properties: Basic.Properties,
        mandatory: bool = False,
    ) -> Any:
        publisher = cast(aiormq.Channel, link.publisher)  # the abc lacks ``wait``
        try:
            return await publisher.basic_publish(
                body,
                exchange=exchange,
                routing_key=routing_key,
                properties=properties,
                mandatory=mandatory,
                wait=False,  # the confirmation is what we wait for, not the socket drain
            )
        except aiormq.PublishError:  # returned (mandatory, no queue): the caller decides
            raise
        except aiormq.DeliveryError:  # basic.nack: a queue at its x-max-length refused it
            return Basic.Nack()
        except RETRYABLE as exc:
            raise RabbitMQUnavailable(
                f"RabbitMQ connection lost during a publish: {exc!r}"
            ) from exc

    async def group_send(self, group: str, body: bytes) -> None:
        link = await self.ready()
        await self._expire_memberships(link)
        properties = self._properties({"k": GROUP, "g": group})
        await self._publish(link, body, self.groups_exchange, group, properties)
        self.layer.statistics.accepted(GROUP_SENDS)

    # ------------------------------------------------------------------ the process queue

    async def _on_process_message(self, message: aiormq.abc.DeliveredMessage) -> None:
        # No await in here: aiormq starts one task per delivery, in order, and each runs to
        # its end at once, so deliveries are handled in the order they arrived.
        headers = message.header.properties.headers or {}
        kind = headers.get("k")
        if kind == DIRECT:
            self._deliver_local(str(headers.get("c", "")), message.body, _expires(headers))
        elif kind == GROUP:
            self._deliver_group(str(headers.get("g", "")), message.body, _expires(headers))
        elif kind == JOIN:
            self._join_local(str(headers["g"]), str(headers["c"]))
        elif kind == LEAVE:
            self._leave_local(str(headers["g"]), str(headers["c"]))
        elif kind == FLUSH and headers.get("i") != self.layer.instance:
            self._forget_local()
            self.spawn(self._purge_known())

    def _local_box(self, channel: str) -> Mailbox:
        box = self.local_boxes.get(channel)
        if box is None:
            box = self.local_boxes[channel] = Mailbox()
        return box

    def _deliver_local(self, channel: str, body: bytes, expires: int) -> bool:
        box = self._local_box(channel)
        if len(box.items) >= self.layer.get_capacity(channel):
            self.layer.statistics.refused(channel)
            return False
        box.deliver(Item(expires, body, None, 0))
        return True

    def _deliver_group(self, group: str, body: bytes, expires: int) -> None:
        members = self.local_groups.get(group)
        if not members:
            return
        now = time.monotonic()
        for channel, deadline in list(members.items()):
            if deadline > now:
                self._deliver_local(channel, body, expires)
            else:
                del members[channel]
        if not members:
            self._unbind_group_soon(group)

    def _join_local(self, group: str, channel: str) -> None:
        deadline = time.monotonic() + self.layer.group_expiry
        self.local_groups.setdefault(group, {})[channel] = deadline
        self.bound_groups.add(group)  # the joiner bound our queue already

    def _leave_local(self, group: str, channel: str) -> None:
        members = self.local_groups.get(group)
        if members is not None:
            members.pop(channel, None)
            if not members:
                self._unbind_group_soon(group)

    def _unbind_group_soon(self, group: str) -> None:
        self.spawn(self._unbind_group_if_empty(group))

    async def _unbind_group_if_empty(self, group: str) -> None:
        if self.local_groups.get(group) or group not in self.bound_groups:
            return
        self.local_groups.pop(group, None)
        self.bound_groups.discard(group)
        link = self.link
        if not link.is_ready:
            return  # the next connect binds only what is still in bound_groups
        with contextlib.suppress(*RETRYABLE, aiormq.ChannelClosed):
            await link.call(
                lambda control: control.queue_unbind(
                    self.process_queue, self.groups_exchange, routing_key=group
                )
            )
        if self.local_groups.get(group):  # someone joined while we unbound: bind again
            await self._bind_process_queue(link, group)

    async def _bind_process_queue(self, link: Link, group: str) -> None:
        await link.call(
            lambda control: control.queue_bind(
                self.process_queue, self.groups_exchange, routing_key=group
            )
        )
        self.bound_groups.add(group)

    # ------------------------------------------------------------------ receiving

    async def receive(self, channel: str) -> bytes:
        if "!" in channel:
            return await self._receive_local(channel)
        return await self._receive_worker(channel)

    async def _receive_local(self, channel: str) -> bytes:
        if _instance_of(channel) != self.layer.instance:
            raise RuntimeError(
                f"{channel!r} belongs to another layer instance; only the instance whose "
                "new_channel() made it can receive it"
            )
        box = self._local_box(channel)  # idle boxes are dropped by the sweep, not here:
        while True:  # a consumer re-arming its receive would re-create its box every time
            item = await box.get()
            if item.expires > now_ms():
                return item.body

    async def _receive_worker(self, channel: str) -> bytes:
        reader = self.readers.get(channel)
        if reader is None:
            reader = self.readers[channel] = _Reader(channel)
            self.known.add(channel)
        try:
            while True:
                item = await reader.mailbox.get(lambda: self._want_consumer(reader))
                if item.generation != self.link.generation:
                    continue  # the connection it came on died: the broker redelivers it
                self._ack(item)
                if item.expires > now_ms():
                    return item.body
        finally:
            if not reader.mailbox.has_waiters():
                self._linger(reader)

    def _ack(self, item: Item) -> None:
        if item.tag is None:
            return
        with contextlib.suppress(*RETRYABLE):
            # wait=False: queued for the writer, no suspension point, so no cancellation
            # can land between taking the message and acknowledging it.
            self.spawn(self.link.consumer.basic_ack(item.tag, wait=False))

    def _want_consumer(self, reader: _Reader) -> None:
        if reader.linger is not None:
            reader.linger.cancel()
            reader.linger = None
        if reader.consumer_tag is None and reader.starting is None and self.link.is_ready:
            reader.starting = self.spawn(self._start_consumer(self.link, reader))

    async def _start_consumer(self, link: Link, reader: _Reader) -> None:
        try:
            await self._declare(link, reader.channel)
            generation = link.generation
            # A fresh tag each time: an earlier consumer of this channel may still be
            # between basic.cancel and cancel-ok.
            self.consumer_serial += 1
            tag = f"{self.layer.instance}.{self.consumer_serial}.{reader.channel}"[:255]

            async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
                self._on_worker_message(reader, generation, message)

            consumer = link.consumer
            reader.consumer_tag = tag  # deliveries may run before basic_consume returns
            await consumer.basic_consume(self._queue(reader.channel), on_message, consumer_tag=tag)
        except CHANNEL_ERRORS as exc:
            reader.consumer_tag = None
            logger.debug("consumer of %s not started (%r); retried on reconnect", reader, exc)
        finally:
            reader.starting = None
        if not reader.mailbox.has_waiters():
            self._linger(reader)

    def _on_worker_message(
        self, reader: _Reader, generation: int, message: aiormq.abc.DeliveredMessage
    ) -> None:
        tag = message.delivery.delivery_tag  # type: ignore[union-attr]
        headers = message.header.properties.headers or {}
        expires = _expires(headers)
        item = Item(expires, message.body, tag, generation)
        if reader.consumer_tag is None and not reader.mailbox.has_waiters():
            self._requeue([item])
            return
        reader.mailbox.deliver(item)

    def _requeue(self, items: list[Item]) -> None:
        link = self.link
        for item in items:
            if item.tag is not None and item.generation == link.generation:
                with contextlib.suppress(*RETRYABLE):
                    self.spawn(link.consumer.basic_nack(item.tag, requeue=True, wait=False))

    def _on_broker_cancel(self, frame: Basic.Cancel) -> None:
        """The broker cancelled a consumer (its queue was deleted): start it again if
        somebody waits (the queue is declared anew)."""
        for reader in self.readers.values():
            if reader.consumer_tag == frame.consumer_tag:
                reader.consumer_tag = None
                self.declared.discard(reader.channel)
                if reader.mailbox.has_waiters():
                    self._want_consumer(reader)

    def _linger(self, reader: _Reader) -> None:
        if reader.linger is None:
            reader.linger = self.loop.call_later(LINGER, self._stop_if_unwanted, reader)

    def _stop_if_unwanted(self, reader: _Reader) -> None:
        reader.linger = None
        if reader.mailbox.has_waiters():
            return
        self.spawn(self._stop_consumer(reader))

    async def _stop_consumer(self, reader: _Reader) -> None:
        tag, reader.consumer_tag = reader.consumer_tag, None
        if tag is not None and self.link.is_ready:
            with contextlib.suppress(*RETRYABLE, aiormq.ChannelClosed):
                await self.link.consumer.basic_cancel(tag)
        if reader.mailbox.has_waiters():  # a receiver came back meanwhile
            self._want_consumer(reader)
            return
        self._requeue(reader.mailbox.take_all())
        if self.readers.get(reader.channel) is reader and reader.mailbox.idle():
            del self.readers[reader.channel]

    # ------------------------------------------------------------------ groups

    async def group_add(self, group: str, channel: str) -> None:
        link = await self.ready()
        if "!" not in channel:
            await self._declare(link, channel)
            queue = self._queue(channel)
            await link.call(
                lambda control: control.queue_bind(queue, self.groups_exchange, routing_key=group)
            )
            deadline = time.monotonic() + self.layer.group_expiry
            self.memberships[(group, channel)] = deadline
            heapq.heappush(self.deadlines, (deadline, group, channel))
            return
        instance = _instance_of(channel)
        if instance == self.layer.instance:
            bound = group in self.bound_groups
            self._join_local(group, channel)
            if not bound:
                self.bound_groups.discard(group)
                await self._bind_process_queue(link, group)
            return
        await self._join_foreign(link, group, instance, channel)

    async def _join_foreign(self, link: Link, group: str, instance: str, channel: str) -> None:
        queue = f"{self.options.prefix}.p.{instance}"
        try:
            await link.call(
                lambda control: control.queue_bind(queue, self.groups_exchange, routing_key=group)
            )
        except aiormq.ChannelNotFoundEntity:
            return  # that process is gone: its channels receive nothing any more
        properties = self._properties({"k": JOIN, "g": group, "c": channel})
        with contextlib.suppress(aiormq.PublishError):
            await self._publish(link, b"", "", queue, properties, mandatory=True)

    async def group_discard(self, group: str, channel: str) -> None:
        link = await self.ready()
        if "!" not in channel:
            self.memberships.pop((group, channel), None)
            await self._unbind_worker(link, group, channel)
            return
        instance = _instance_of(channel)
        if instance == self.layer.instance:
            self._leave_local(group, channel)
            return
        properties = self._properties({"k": LEAVE, "g": group, "c": channel})
        queue = f"{self.options.prefix}.p.{instance}"
        with contextlib.suppress(aiormq.PublishError):
            await self._publish(link, b"", "", queue, properties, mandatory=True)

    async def _unbind_worker(self, link: Link, group: str, channel: str) -> None:
        queue = self._queue(channel)
        with contextlib.suppress(aiormq.ChannelNotFoundEntity):
            await link.call(
                lambda control: control.queue_unbind(queue, self.groups_exchange, routing_key=group)
            )

    async def _expire_memberships(self, link: Link) -> None:
        """Unbind the worker-channel memberships of this instance that lapsed."""
        now = time.monotonic()
        deadlines = self.deadlines
        while deadlines and deadlines[0][0] <= now:
            deadline, group, channel = heapq.heappop(deadlines)
            if self.memberships.get((group, channel)) != deadline:
                continue  # renewed or discarded since
            del self.memberships[(group, channel)]
            await self._unbind_worker(link, group, channel)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            self._sweep_local()
            if self.link.is_ready:
                with contextlib.suppress(*RETRYABLE, aiormq.ChannelClosed):
                    await self._expire_memberships(self.link)

    def _sweep_local(self) -> None:
        now, clock = now_ms(), time.monotonic()
        for channel, box in list(self.local_boxes.items()):
            if box.items and box.items[0].expires <= now:
                box.items = type(box.items)(item for item in box.items if item.expires > now)
            if box.idle():
                del self.local_boxes[channel]
        for group, members in list(self.local_groups.items()):
            for channel in [name for name, deadline in members.items() if deadline <= clock]:
                del members[channel]
            if not members:
                self._unbind_group_soon(group)

    # ------------------------------------------------------------------ flush, statistics

    async def flush(self) -> None:
        link = await self.ready()
        self._forget_local()
        for group, channel in list(self.memberships):
            del self.memberships[(group, channel)]
        self.deadlines.clear()
        for channel in list(self.known):
            await self._delete_queue(link, channel)
        self.known.clear()
        self.declared.clear()
        for reader in self.readers.values():
            reader.consumer_tag = None
            if reader.mailbox.has_waiters():
                self._want_consumer(reader)
        properties = self._properties({"k": FLUSH, "i": self.layer.instance})
        await self._publish(link, b"", self.control_exchange, "", properties)
        self.layer.statistics = LayerStatistics()

    def _forget_local(self) -> None:
        for box in self.local_boxes.values():
            box.items.clear()
        for group in list(self.local_groups):
            self.local_groups[group].clear()
            self._unbind_group_soon(group)
        for reader in self.readers.values():
            for item in reader.mailbox.take_all():
                self._ack(item)

    async def _delete_queue(self, link: Link, channel: str) -> None:
        queue = self._queue(channel)
        with contextlib.suppress(aiormq.ChannelNotFoundEntity):
            await link.call(lambda control: control.queue_delete(queue))

    async def _purge_known(self) -> None:
        for channel in list(self.known):
            with contextlib.suppress(*RETRYABLE, aiormq.ChannelClosed):
                await self._purge(channel)

    async def _purge(self, channel: str) -> None:
        queue = self._queue(channel)
        await self.link.call(lambda control: control.queue_purge(queue))

    async def pending_on_broker(self, channel: str) -> int:
        link = await self.ready()
        queue = self._queue(channel)
        try:
            declared = await link.call(lambda control: control.queue_declare(queue, passive=True))
        except aiormq.ChannelNotFoundEntity:
            return 0
        return int(declared.message_count or 0)

    def buffered(self, channel: str) -> Mailbox | None:
        if "!" in channel:
            mine = _instance_of(channel) == self.layer.instance
            return self.local_boxes.get(channel) if mine else None
        reader = self.readers.get(channel)
        return reader.mailbox if reader is not None else None

    def all_buffered(self) -> list[Mailbox]:
        return [*self.local_boxes.values(), *(reader.mailbox for reader in self.readers.values())]

    # ------------------------------------------------------------------ close

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        for reader in self.readers.values():
            if reader.linger is not None:
                reader.linger.cancel()
        await self.link.close()  # the broker requeues every unacked (buffered) message
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=5)


class _Bridge:
    """A private event loop in a daemon thread: the home of a layer first used from
    ``async_to_sync``'s one-call loops."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="headrace-rabbitmq", daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


def _refuse_group_features(config: Mapping[str, Any]) -> None:
    """History needs one place that numbers a group's messages and that every process can read
    up to its newest offset; presence needs a roster every process reads as the last
    ``group_add`` left it. RabbitMQ 3.10 over AMQP 0-9-1 offers neither: a stream queue numbers
    messages, but only its consumers see the offsets and nobody can learn its newest one (a
    passive declare reports 0 messages, ``basic.get`` is refused), so a read cannot tell when
    it has everything sent before it; a marker to read up to would take an offset itself. See
    docs/history-presence-backends.md, "RabbitMQ", for the measurements and what would work."""
    for option in ("history", "presence"):
        if config.get(option):
            raise ConfigError(
                f"RabbitMQChannelLayer does not support the {option!r} option: over AMQP 0-9-1 "
                "no process can learn a stream's newest offset (or read a roster as another "
                "process left it), so a read could miss what was sent before it; use the Redis, "
                "IPC or in-memory layer for groups with history or presence (see "
                "docs/history-presence-backends.md)"
            )


class RabbitMQChannelLayer(BaseChannelLayer):
    """Channel layer on RabbitMQ. See the module docs and docs/layers.md.

    Options: ``url`` (or ``host``; a str or a list of URLs tried in order), ``ssl_context``,
    ``prefix``, ``expiry``, ``group_expiry``, ``capacity``, ``channel_capacity``,
    ``prefetch`` (unacked messages per worker-channel consumer), ``connect_timeout`` (how long
    a call waits for the broker before :class:`RabbitMQUnavailable`), ``groups_exchange``.
    asgi_rabbitmq's and channels_rabbitmq's names are accepted where they mean the same.
    """

    extensions: ClassVar[list[str]] = ["groups", "flush", "statistics"]

    def __init__(self, **config: Any) -> None:
        _refuse_group_features(config)
        self.options = resolve_options(config)
        super().__init__(**config)
        self.instance = self.random_suffix()
        self.statistics = LayerStatistics()
        self._core: _Core | None = None
        self._bridge: _Bridge | None = None
        self._lock = threading.Lock()
        self.closed = False

    # ------------------------------------------------------------------ the home loop

    async def _home(self, operation: Callable[[_Core], Awaitable[T]]) -> T:
        """Run ``operation`` with the core, on the home loop (see the module docs)."""
        loop = asyncio.get_running_loop()
        core = self._core
        if core is not None and core.loop is loop:
            return await operation(core)
        home = self._home_loop(loop)
        if home is loop:
            return await operation(self._core_on(loop))

        async def on_home() -> T:
            return await operation(self._core_on(home))

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(on_home(), home))

    def _home_loop(self, caller: asyncio.AbstractEventLoop) -> asyncio.AbstractEventLoop:
        with self._lock:
            core = self._core
            if core is not None and core.loop.is_running() and not core.loop.is_closed():
                return core.loop
            if caller in AsyncToSync.loop_thread_executors:
                if self._bridge is None:
                    self._bridge = _Bridge()
                return self._bridge.loop
            return caller

    def _core_on(self, loop: asyncio.AbstractEventLoop) -> _Core:
        with self._lock:
            core = self._core
            if core is None or core.loop is not loop:
                if self.closed:
                    raise RabbitMQUnavailable("the RabbitMQ layer is closed")
                core = self._core = _Core(self, loop)
            return core

    # ------------------------------------------------------------------ the contract

    async def send(self, channel: str, message: LayerMessage) -> None:
        """Send ``message`` to ``channel``; ChannelFull when its queue is at capacity."""
        self.require_valid_channel_name(channel)
        self.require_valid_message(message)
        body = _encode(message)
        await self._home(lambda core: core.send(channel, body))

    async def receive(self, channel: str) -> LayerMessage:
        """Wait for the next unexpired message on ``channel``."""
        self.require_valid_channel_name(channel)
        body = await self._home(lambda core: core.receive(channel))
        return _decode(body)

    async def new_channel(self, prefix: str = "specific") -> str:
        """A new process-local channel of this instance: ``<prefix>.<instance>!<random>``."""
        channel = f"{prefix}.{self.instance}!{self.random_suffix()}"
        self.require_valid_channel_name(channel)
        await self._home(self._connected)
        return channel

    @staticmethod
    async def _connected(core: _Core) -> None:
        await core.ready()

    async def group_add(self, group: str, channel: str, info: dict[str, Any] | None = None) -> None:
        """Add ``channel`` to ``group`` (or renew it for another ``group_expiry``). ``info`` is
        for groups with presence, which this layer refuses to configure (see the class doc)."""
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        await self._home(lambda core: core.group_add(group, channel))

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group``; nothing happens if it was not a member."""
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        await self._home(lambda core: core.group_discard(group, channel))

    async def group_send(self, group: str, message: LayerMessage) -> None:
        """One publish to the groups exchange; full members miss the message."""
        self.require_valid_group_name(group)
        self.require_valid_message(message)
        body = _encode(message)
        await self._home(lambda core: core.group_send(group, body))

    async def flush(self) -> None:
        """Drop the messages and memberships of every channel this instance knows, and tell
        the other live instances to do the same with theirs."""
        await self._home(lambda core: core.flush())

    async def close(self) -> None:
        """Close the connection (buffered worker-channel messages go back to their queues)."""
        with self._lock:
            self.closed = True
            core, self._core = self._core, None
            bridge, self._bridge = self._bridge, None
        if core is not None and not core.loop.is_closed():
            if core.loop is asyncio.get_running_loop():
                await core.close()
            elif core.loop.is_running():
                future = asyncio.run_coroutine_threadsafe(core.close(), core.loop)
                await asyncio.wrap_future(future)
        if bridge is not None:
            bridge.stop()

    # ------------------------------------------------------------------ statistics

    async def global_statistics(self) -> dict[str, float]:
        """What this instance counted, the broker's worker-queue lengths for the channels it
        knows (up to 200) plus what it buffers, and the age of its oldest buffered message."""
        return await self._home(self._global_statistics)

    async def _global_statistics(self, core: _Core) -> dict[str, float]:
        pending = 0
        for channel in sorted(core.known)[:STATISTICS_QUEUE_LIMIT]:
            pending += await core.pending_on_broker(channel)
        boxes = core.all_buffered()
        pending += sum(len(box.items) for box in boxes)
        max_age = max((_age(box, self.expiry) for box in boxes), default=0.0)
        return statistics_of(self.statistics.global_counts(), pending, max_age)

    async def channel_statistics(self, channel: str) -> dict[str, float]:
        """The same for one channel."""
        self.require_valid_channel_name(channel)
        return await self._home(lambda core: self._channel_statistics(core, channel))

    async def _channel_statistics(self, core: _Core, channel: str) -> dict[str, float]:
        box = core.buffered(channel)
        pending = len(box.items) if box is not None else 0
        if "!" not in channel:
            pending += await core.pending_on_broker(channel)
        max_age = _age(box, self.expiry) if box is not None else 0.0
        return statistics_of(self.statistics.channel_counts(channel), pending, max_age)


def _expires(headers: dict[str, Any]) -> int:
    """The deadline (wall-clock ms) a message carries in its ``x`` header."""
    value = headers.get("x")
    return value if isinstance(value, int) else now_ms()


def _age(box: Mailbox, expiry: float) -> float:
    """Seconds since the oldest message buffered in ``box`` was sent (0 when empty)."""
    if not box.items:
        return 0.0
    sent = box.items[0].expires - max(1, int(expiry * 1000))
    return max(0.0, (now_ms() - sent) / 1000)
