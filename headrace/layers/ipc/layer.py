"""``IPCChannelLayer``: the channel layer for processes on one host, with no server to install.

Theory of operation
-------------------
Every layer instance talks to one hub (:mod:`headrace.layers.ipc.hub`) over a Unix socket at
``path`` (default: ``$HEADRACE_IPC_DIR/<prefix>.sock``, else
``$XDG_RUNTIME_DIR/headrace-ipc/<prefix>.sock``, else ``<tmp>/headrace-ipc-<uid>/<prefix>.sock``).
If nobody serves that socket, the instance elects itself: it takes ``<path>.lock`` with
``flock`` and hosts the hub on a thread. So the layer works the same under ``headrace --workers
N`` (whose supervisor runs a companion hub for the default path), with ``runworker`` and web
processes started separately, or in one process.

One connection per event loop (:class:`HubLink`), because ``async_to_sync`` may run the layer
on several loops. Requests carry an id and are answered in any order; a ``receive`` parks at the
hub until a message arrives. Cancelling a ``receive`` (a consumer closing) sends CANCEL; if the
message was already on its way, the link pushes it back to the front of its queue, so cancelling
never loses a message.

Group messages. The hub answers all of this link's parked receives that one ``group_send``
reaches with a single ``DELIVER_MANY`` frame (payload once, request ids listed); the link resolves
each receive's future from it, and a receive cancelled meanwhile has its copy pushed back like any
other in-flight message.

Process-local channels (``!``) are *watched* (hub protocol 3): the first ``receive`` sends WATCH
once, and the hub pushes that channel's messages to this link, which buffers them in a
:class:`Watch` until a receiver takes them. A consumer re-arming its receive costs no I/O at all,
and a group message to a thousand members of this process is one frame. Pushes from ``send`` are
counted: taking one is reported back in one CONSUMED frame per loop iteration, so the hub keeps
enforcing capacity; group copies beyond a member's capacity are dropped here (like a full member
at the hub). Nothing buffered here is lost when receivers go: the last receiver of a channel
leaving (cancelled) unwatches it and hands its buffer back with PUSH_FRONT; a pushed message for a
channel no longer watched goes back the same way. A watch nobody waits on and nobody has received
from for a whole sweep interval (a reply channel received from once) is unwatched by the sweep.
When the loop shuts down (``asyncio.run``, ``async_to_sync`` and the test runners cancel every
task first) a *guardian* task DETACHes (waiting for the hub's answer, so no push is left in the
socket) and hands everything back; the same happens on ``close()`` and when a plain asyncio loop
is closed. If another connection watches the same channel (another event loop receiving it), this
one is told DISPLACED, hands its buffer back and fails its waiting receivers: one event loop
receives a process-local channel.

Receiving from any of several channels (``receive_any``, hub protocol 5; the Channels-1
worker's receive). The normal channels go to the hub in ONE RECEIVE_ANY, shuffled per call (so a
busy channel cannot starve a quiet one); its answer names the channel, and cancelling it is a
CANCEL like a plain receive's (a message already on its way is pushed back to the front of its
channel). Process-local channels among them are served from their watches: the call puts one
:class:`Claim` in the line of each watch, sharing one future, so the first item any of them
offers resolves it and the other claims are skipped. With both kinds, the hub request and the
claims race, and whatever the loser got goes back (to the front of its watch or, PUSH_FRONT, of
its channel at the hub). So every call takes exactly one message and a cancelled one takes none.
An older hub answers HELLO with a lower version: ``receive_any`` returns ``None`` and the caller
receives the channels one by one.

History and presence. The instance's ``history`` / ``presence`` options travel in HELLO and
the hub applies them (see the hub module). ``group_send`` answers the position; ``group_history``
and the presence reads are one request each. While this instance has presence members, each of
its links sends a BEAT every ttl/3 (the shortest configured ttl), one frame whatever the number
of members; when every link of a process is gone (the process died), the hub removes its members
after their ttl and sends the leave events. Members are replayed with their info, quietly, on a
new hub.

Failure. When the hub's process dies the link sees its connection close, reconnects (electing a
new hub if needed, see the hub module), replays this instance's unexpired group memberships and
watches and re-issues the requests that were in flight. Parked receives are re-parked, so
consumers do not notice. Messages that were queued in the dead hub are lost, which at-most-once
delivery allows (and so are pushes on their way to a watcher); a send in flight at the moment of
the crash is re-sent and may, rarely, arrive twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from itertools import count
from typing import Any

from headrace.exceptions import (
    ChannelFull,
    ChannelLayerError,
    InvalidChannelLayerError,
    MessageTooLarge,
)
from headrace.layers.base import BaseChannelLayer, LayerMessage, Statistics, statistics_of
from headrace.layers.history import (
    POSITION_KEY,
    GroupHistory,
    Position,
    check_history_query,
    check_info,
)
from headrace.layers.ipc.hub import HubHost
from headrace.layers.ipc.wire import (
    MAX_FRAME,
    PROTOCOL_ANY,
    PROTOCOL_FEATURES,
    PROTOCOL_VERSION,
    PROTOCOL_WATCH,
    FramedProtocol,
    Op,
    Status,
    decode_message,
    encode_message,
)

__all__ = ["HubLost", "IPCChannelLayer", "default_path"]

MAX_PAYLOAD = MAX_FRAME - 4096
UNIX_PATH_MAX = 107
PRUNE_EVERY = 1024
VALID_NAMES_KEPT = 65536
SWEEP_INTERVAL = 1.0  # how often a link drops expired messages it buffers for watched channels
DETACH_TIMEOUT = 5.0

Item = tuple[bytes, float, bool]  # payload, expires_at, counted (a ``send``, not a group copy)
Taken = tuple[str, bytes]  # the channel a message came from, its payload


class HubLost(ConnectionError):
    """The hub connection closed while a request was in flight (the request is retried)."""


def default_path(prefix: str = "asgi") -> str:
    """Where the hub socket of ``prefix`` lives unless ``path`` is given:
    ``$HEADRACE_IPC_DIR/<prefix>.sock`` when that variable is set, else under the user's
    runtime directory or the temporary directory."""
    chosen = os.environ.get("HEADRACE_IPC_DIR")
    if chosen:
        return os.path.join(os.path.abspath(chosen), f"{prefix}.sock")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        folder = os.path.join(runtime, "headrace-ipc")
    else:
        folder = os.path.join(tempfile.gettempdir(), f"headrace-ipc-{os.getuid()}")
    return os.path.join(folder, f"{prefix}.sock")


class LinkProtocol(FramedProtocol):
    """The client end of one hub connection; hands replies to its :class:`HubLink`."""

    def __init__(self, link: HubLink) -> None:
        super().__init__(link.on_reply)
        self.link = link

    def connection_lost(self, exc: Exception | None) -> None:
        self.link.on_lost(self)


class Claim:
    """One ``receive_any``'s place in the line of one of its watches. The claims of one call
    share one future: the first watch to hand an item over resolves it with ``(watch, item)``,
    and the other claims are done from then on, so their watches skip them."""

    __slots__ = ("future", "watch")

    def __init__(self, watch: Watch, future: asyncio.Future[tuple[Watch, Item]]) -> None:
        self.watch = watch
        self.future = future

    def done(self) -> bool:
        return self.future.done()

    def set_result(self, item: Item) -> None:
        self.future.set_result((self.watch, item))

    def set_exception(self, error: BaseException) -> None:
        self.future.set_exception(error)


class Watch:
    """A process-local channel this link watches: messages the hub pushed, waiting receivers."""

    __slots__ = ("capacity", "channel", "items", "recent", "waiters", "watch_id")

    def __init__(self, channel: str, watch_id: int, capacity: int) -> None:
        self.channel = channel
        self.watch_id = watch_id
        self.capacity = capacity
        self.items: deque[Item] = deque()
        self.waiters: deque[asyncio.Future[Item] | Claim] = deque()
        self.recent = True  # taken from since the last sweep (an idle watch is dropped later)

    def offer(self, item: Item) -> None:
        """Hand ``item`` to the oldest waiting receiver, else buffer it; a group copy (not
        counted) for a member already holding ``capacity`` messages is dropped."""
        if self.hand_over(item):
            return
        if item[2] or len(self.items) < self.capacity:
            self.items.append(item)

    def hand_over(self, item: Item) -> bool:
        """Give ``item`` to the oldest receiver still waiting; False if there is none."""
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(item)
                return True
        return False

    def fail_waiters(self, error: Exception) -> None:
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_exception(error)
        self.waiters.clear()

    @property
    def idle(self) -> bool:
        return not self.items and not self.waiters


class HubLink:
    """One event loop's connection to the hub, with reconnection and request bookkeeping."""

    def __init__(self, layer: IPCChannelLayer, loop: asyncio.AbstractEventLoop) -> None:
        self.layer = layer
        self.loop = loop
        self.protocol: LinkProtocol | None = None
        self.pending: dict[int, asyncio.Future[tuple[int, Any]]] = {}
        self.cancelled: dict[int, str] = {}
        # Messages answered to receives cancelled an instant earlier, for their clean-up.
        self.orphaned: dict[int, tuple[Any, ...]] = {}
        self._ids = count(1)
        self._connecting: asyncio.Future[LinkProtocol] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.closed = False
        self.hub_version = 0
        self.watches: dict[int, Watch] = {}  # watch id -> watch
        self.watched: dict[str, Watch] = {}  # channel -> watch
        self.retired: dict[int, str] = {}  # watch id -> channel, until the hub confirms UNWATCH
        self.unwatching: dict[int, int] = {}  # UNWATCH request id -> watch id
        self._consumed: list[str] = []
        self._guardian: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------- connection

    async def connected(self) -> LinkProtocol:
        if self.protocol is not None:
            return self.protocol
        if self.closed:
            raise ChannelLayerError("the IPC channel layer is closed")
        if self._connecting is None:
            self._connecting = self.loop.create_future()
            task = asyncio.ensure_future(self._connect())
            task.add_done_callback(self._finish_connecting)
        return await asyncio.shield(self._connecting)

    def _finish_connecting(self, task: asyncio.Future[LinkProtocol]) -> None:
        waiter, self._connecting = self._connecting, None
        assert waiter is not None
        if task.cancelled():
            waiter.cancel()
        elif task.exception() is not None:
            waiter.set_exception(task.exception())  # type: ignore[arg-type]
        else:
            waiter.set_result(task.result())
        if not waiter.cancelled():
            waiter.exception()  # mark retrieved: every waiter sees it through shield()

    async def _connect(self) -> LinkProtocol:
        layer = self.layer
        deadline = time.monotonic() + layer.connect_timeout
        delay = 0.005
        while True:
            try:
                _, protocol = await self.loop.create_unix_connection(
                    lambda: LinkProtocol(self), layer.path
                )
            except (FileNotFoundError, ConnectionRefusedError):
                # Nobody serves the path: elect ourselves, or wait for whoever holds the lock.
                hosting = HubHost.for_path(layer.path).try_start()
                if time.monotonic() > deadline:
                    raise ChannelLayerError(
                        f"IPC channel layer: cannot reach or start the hub at {layer.path}"
                    ) from None
                await asyncio.sleep(0 if hosting else delay)
                delay = min(delay * 2, 0.1)
                continue
            try:
                await self._introduce(protocol, deadline)
            except HubLost:
                # The hub died while we introduced ourselves: elect or find the next one.
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.1)
                continue
            except BaseException:
                if protocol.transport is not None:
                    protocol.transport.close()
                raise
            self.protocol = protocol
            return protocol

    async def _introduce(self, protocol: LinkProtocol, deadline: float) -> None:
        """HELLO with the capacity rules (the answer tells the hub's protocol version), then
        replay this instance's group memberships and this link's watches."""
        layer = self.layer
        patterns = [(pattern.pattern, capacity) for pattern, capacity in layer.channel_capacity]
        hello_id = next(self._ids)
        answer: asyncio.Future[tuple[int, Any]] = self.loop.create_future()
        self.pending[hello_id] = answer
        features = layer.group_features.as_config()
        hello = (layer.capacity, patterns, PROTOCOL_VERSION, layer.client_id, features)
        protocol.write((Op.HELLO, hello_id, *hello, layer.expiry))
        try:
            async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                _, version = await answer
        except TimeoutError:
            raise ChannelLayerError(
                f"IPC channel layer: the hub at {layer.path} did not answer HELLO"
            ) from None
        finally:
            self.pending.pop(hello_id, None)
        self.hub_version = version if isinstance(version, int) else 2
        if layer.group_features and self.hub_version < PROTOCOL_FEATURES:
            raise ChannelLayerError(
                f"IPC channel layer: the hub at {layer.path} speaks protocol {self.hub_version},"
                f" history and presence need {PROTOCOL_FEATURES} (restart it with this version)"
            )
        now = time.time()
        for (group, channel), expires_at in list(layer.memberships.items()):
            if expires_at > now:
                info = layer.presence_info.get((group, channel))
                quiet_replay = () if info is None else (info, False)
                protocol.write((Op.GROUP_ADD, 0, group, channel, expires_at, *quiet_replay))
        if self.hub_version < PROTOCOL_WATCH:
            self._unwatch_all_locally()
        for watch in self.watches.values():
            protocol.write((Op.WATCH, 0, watch.channel, watch.watch_id))

    def on_lost(self, protocol: LinkProtocol) -> None:
        if self.protocol is not protocol and self.protocol is not None:
            return  # a connection that failed during HELLO; the current one is fine
        self.protocol = None
        self.cancelled.clear()
        self.orphaned.clear()
        self.retired.clear()
        self.unwatching.clear()
        self._consumed.clear()  # the next hub starts with nothing counted
        for future in self.pending.values():
            if not future.done():
                future.set_exception(HubLost("IPC hub connection lost"))
        self.pending.clear()
        wanted = self.layer.memberships or self.watches
        if not self.closed and wanted and not self.loop.is_closed():
            self._reconnect_soon()

    def _reconnect_soon(self) -> None:
        """Reconnect now rather than at the next request, so this instance's memberships are
        re-registered at the new hub even if the process is idle (members get group messages
        sent by other processes meanwhile)."""
        task = self.loop.create_task(self._reconnect())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _reconnect(self) -> None:
        with contextlib.suppress(ChannelLayerError):
            await self.connected()

    def on_reply(self, item: tuple[Any, ...]) -> None:
        request_id, status, value = item
        if status == Status.PUSH:
            self._on_push(*value)
            return
        if status == Status.DELIVER_MANY:
            self._fan_out(*value)
            return
        if status == Status.DISPLACED:
            self._displaced(value)
            return
        watch_id = self.unwatching.pop(request_id, None)
        if watch_id is not None:
            self.retired.pop(watch_id, None)  # no push for it can follow this answer
            return
        future = self.pending.pop(request_id, None)
        if future is not None:
            if not future.done():
                future.set_result((status, value))
            elif future.cancelled() and status == Status.OK:
                # Its receive was cancelled and has not run its clean-up yet: keep the
                # message for that clean-up (``_abandon``), which puts it back.
                self.orphaned[request_id] = value
            return
        channel = self.cancelled.pop(request_id, None)
        if channel is not None and status == Status.OK and self.protocol is not None:
            # A message was on its way to a receive that was cancelled: put it back.
            self._push_back(self.protocol, channel, value)

    @staticmethod
    def _push_back(protocol: LinkProtocol, channel: str, value: tuple[Any, ...]) -> None:
        """Return a message answered to a receive (``(payload, expires_at)``, or a
        RECEIVE_ANY's ``(payload, expires_at, its channel)``) to the front of its channel."""
        origin = value[2] if len(value) > 2 else channel
        protocol.write((Op.PUSH_FRONT, 0, origin, value[0], value[1]))

    def _fan_out(self, request_ids: list[int], payload: bytes, expires_at: float) -> None:
        """One group message for several parked receives: resolve each as if answered alone
        (all wake in the same loop iteration; each receiver decodes its own copy)."""
        value = (payload, expires_at)
        pending = self.pending
        for request_id in request_ids:
            future = pending.pop(request_id, None)
            if future is not None:
                if not future.done():
                    future.set_result((Status.OK, value))
                elif future.cancelled():
                    self.orphaned[request_id] = value
            elif request_id in self.cancelled:
                self.on_reply((request_id, Status.OK, value))

    def close(self) -> None:
        self.closed = True
        if self._guardian is not None:
            self._guardian.cancel()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.close()

    async def shutdown(self) -> None:
        """Hand watched channels back to the hub, then close the connection."""
        await self.detach()
        self.close()

    # ---------------------------------------------------------------- requests

    async def request(self, op: int, *arguments: Any) -> tuple[int, Any]:
        """Send a request and wait for its reply, retrying on a new hub if the hub dies."""
        while True:
            protocol = await self.connected()
            request_id = next(self._ids)
            future: asyncio.Future[tuple[int, Any]] = self.loop.create_future()
            self.pending[request_id] = future
            if self._consumed:
                self._flush_consumed()  # so a send right after a receive sees the room it made
            protocol.write((op, request_id, *arguments))
            try:
                return self._checked(await future)
            except HubLost:
                continue
            finally:
                self.pending.pop(request_id, None)

    async def receive(self, channel: str) -> tuple[bytes, float]:
        """Park a receive at the hub; on cancellation make sure no message is lost."""
        payload, expires_at = await self._park(Op.RECEIVE, channel, channel)
        return payload, expires_at

    async def receive_shared(self, channels: list[str]) -> tuple[bytes, float, str] | None:
        """Park one RECEIVE_ANY over the normal ``channels``: ``(payload, expires_at,
        channel)``, or None from a hub older than protocol 5."""
        value = await self._park(Op.RECEIVE_ANY, channels, channels[0], PROTOCOL_ANY)
        return None if value is None else (value[0], value[1], value[2])

    async def _park(
        self, op: int, target: str | list[str], channel: str, needs: int = 0
    ) -> tuple[Any, ...] | Any:
        """Send a receive request (``op`` on ``target``) and wait for its message, re-parking
        it on a new hub; on cancellation make sure no message is lost. None when the hub is
        older than protocol ``needs``."""
        while True:
            protocol = await self.connected()
            if self.hub_version < needs:
                return None
            request_id = next(self._ids)
            future: asyncio.Future[tuple[int, Any]] = self.loop.create_future()
            self.pending[request_id] = future
            protocol.write((op, request_id, target))
            try:
                _, value = self._checked(await future)
            except HubLost:
                continue
            except asyncio.CancelledError:
                self._abandon(channel, request_id, future)
                raise
            finally:
                self.pending.pop(request_id, None)
            return value

    def _abandon(
        self, channel: str, request_id: int, future: asyncio.Future[tuple[int, Any]]
    ) -> None:
        orphaned = self.orphaned.pop(request_id, None)
        protocol = self.protocol
        if protocol is None:
            return
        if orphaned is not None:
            self._push_back(protocol, channel, orphaned)
            return
        if future.done() and not future.cancelled() and future.exception() is None:
            status, value = future.result()
            if status == Status.OK:
                self._push_back(protocol, channel, value)
            return
        self.cancelled[request_id] = channel
        protocol.write((Op.CANCEL, 0, channel, request_id))

    # ---------------------------------------------------------------- watched channels

    async def receive_local(self, channel: str) -> bytes:
        """Take the next message of a process-local channel from its :class:`Watch`."""
        watch = self.watched.get(channel)
        if watch is not None and self.protocol is not None:  # the usual case: no set-up
            try:
                return await self._take(watch)
            except HubLost:
                pass
        return await self._receive_local_slowly(channel)

    async def _receive_local_slowly(self, channel: str) -> bytes:
        """Connect and watch first if needed; fall back to plain receives on an older hub."""
        while True:
            watch = self.watched.get(channel)
            if watch is None or self.protocol is None:
                await self.connected()
                if self.hub_version < PROTOCOL_WATCH:
                    payload, _ = await self.receive(channel)  # an older hub: one receive each
                    return payload
                watch = self._watch(channel)
            with contextlib.suppress(HubLost):  # a reconnect found an older hub: start over
                return await self._take(watch)

    async def _take(self, watch: Watch) -> bytes:
        watch.recent = True
        while True:
            if watch.items:
                item = watch.items.popleft()
            else:
                future: asyncio.Future[Item] = self.loop.create_future()
                watch.waiters.append(future)
                try:
                    item = await future
                except asyncio.CancelledError:
                    self._leave(watch, future)
                    raise
            if self._accept(watch, item):
                return item[0]

    def _accept(self, watch: Watch, item: Item) -> bool:
        """Count ``item`` taken (if counted); whether it is still fresh."""
        if item[2]:
            self._consume(watch.channel)
        return item[1] > time.time()

    # ---------------------------------------------------------------- receive_any

    async def receive_any(self, channels: list[str]) -> Taken | None:
        """One message of any of ``channels`` (normal and process-local, no repeats) as
        ``(channel, payload)``; None from a hub older than protocol 5 (module docs)."""
        order = random.sample(channels, len(channels))
        local = [channel for channel in order if "!" in channel]
        if not local:
            answer = await self.receive_shared(order)
            return None if answer is None else (answer[2], answer[0])
        shared = [channel for channel in order if "!" not in channel]
        while True:
            await self.connected()
            if self.hub_version < PROTOCOL_ANY:
                return None
            watches = [self._watch(channel) for channel in local]
            taken = self._take_buffered(watches) or await self._claim(watches, shared)
            if taken is not None:
                return taken

    def _take_buffered(self, watches: list[Watch]) -> Taken | None:
        """The first fresh message buffered in ``watches``, in their order."""
        for watch in watches:
            watch.recent = True
            items = watch.items
            while items:
                item = items.popleft()
                if self._accept(watch, item):
                    return watch.channel, item[0]
        return None

    async def _claim(self, watches: list[Watch], shared: list[str]) -> Taken | None:
        """Wait in the line of every watch and, with ``shared`` channels, at the hub too;
        the first message wins and the other side's is given back. None: try again."""
        chosen: asyncio.Future[tuple[Watch, Item]] = self.loop.create_future()
        claims = [Claim(watch, chosen) for watch in watches]
        for claim in claims:
            claim.watch.waiters.append(claim)
        remote = asyncio.ensure_future(self.receive_shared(shared)) if shared else None
        racing = (chosen,) if remote is None else (chosen, remote)
        try:
            await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            self._release(claims, chosen, remote, keep=False)
            raise
        return self._release(claims, chosen, remote, keep=True)

    def _release(
        self,
        claims: list[Claim],
        chosen: asyncio.Future[tuple[Watch, Item]],
        remote: asyncio.Future[tuple[bytes, float, str] | None] | None,
        keep: bool,
    ) -> Taken | None:
        """End one :meth:`_claim`: withdraw its claims, stop the hub request, keep one
        message if ``keep`` (the local one when both came) and give every other back."""
        for claim in claims:
            with contextlib.suppress(ValueError):
                claim.watch.waiters.remove(claim)
        for future in (chosen, remote):
            if future is not None and not future.done():
                future.cancel()  # the hub request's own clean-up pushes back what is on its way
        local, local_error = _outcome(chosen)
        shared, shared_error = _outcome(remote)
        if shared is not None and (local is not None or not keep) and self.protocol is not None:
            self.protocol.write((Op.PUSH_FRONT, 0, shared[2], shared[0], shared[1]))
        if not keep:
            if local is not None:
                watch, item = local
                if not watch.hand_over(item):
                    watch.items.appendleft(item)
            for claim in claims:
                self._unwatch_unless_awaited(claim.watch)
            return None
        if local is not None:
            watch, item = local
            return (watch.channel, item[0]) if self._accept(watch, item) else None
        if shared is not None:
            return shared[2], shared[0]
        error = local_error or shared_error
        if error is not None:
            raise error
        return None

    def _watch(self, channel: str) -> Watch:
        watch = self.watched.get(channel)
        if watch is None:
            watch_id = next(self._ids)
            capacity = self.layer.get_capacity(channel)
            watch = self.watches[watch_id] = self.watched[channel] = Watch(
                channel, watch_id, capacity
            )
            assert self.protocol is not None
            self.protocol.write((Op.WATCH, 0, channel, watch_id))
            if self._guardian is None or self._guardian.done():
                self._guardian = self.loop.create_task(self._guard())
        return watch

    def _leave(self, watch: Watch, future: asyncio.Future[Item]) -> None:
        """A receiver was cancelled: pass a message handed to it on to the next receiver (or
        keep it first in line); unwatch if it was the last."""
        if future.done() and not future.cancelled():
            item = future.result()
            if not watch.hand_over(item):
                watch.items.appendleft(item)
        else:
            with contextlib.suppress(ValueError):
                watch.waiters.remove(future)
        self._unwatch_unless_awaited(watch)

    def _unwatch_unless_awaited(self, watch: Watch) -> None:
        if not watch.waiters and self.watches.get(watch.watch_id) is watch:
            self._unwatch(watch)

    def _unwatch(self, watch: Watch) -> None:
        """Stop watching and hand the buffered messages back (pushes still on their way are
        sent back as they arrive, until the hub confirms)."""
        self._forget(watch)
        protocol = self.protocol
        if protocol is None:
            watch.items.clear()  # the hub is gone, and what it had queued with it
            return
        request_id = next(self._ids)
        self.retired[watch.watch_id] = watch.channel
        self.unwatching[request_id] = watch.watch_id
        protocol.write((Op.UNWATCH, request_id, watch.channel, watch.watch_id))
        self._hand_back(protocol, watch)

    def _forget(self, watch: Watch) -> None:
        self.watches.pop(watch.watch_id, None)
        if self.watched.get(watch.channel) is watch:
            del self.watched[watch.channel]

    def _hand_back(self, protocol: LinkProtocol, watch: Watch) -> None:
        """PUSH_FRONT the buffered messages, newest first, so the hub keeps their order."""
        now = time.time()
        for payload, expires_at, counted in reversed(watch.items):
            if expires_at > now:
                protocol.write((Op.PUSH_FRONT, 0, watch.channel, payload, expires_at, counted))
            elif counted:
                self._consume(watch.channel)
        watch.items.clear()

    def _unwatch_all_locally(self) -> None:
        """The hub cannot watch (an older version): receivers fall back to plain receives."""
        for watch in list(self.watches.values()):
            self._forget(watch)
            watch.fail_waiters(HubLost("the hub does not watch channels"))

    def _on_push(
        self, watch_ids: list[int], payload: bytes, expires_at: float, counted: bool
    ) -> None:
        item = (payload, expires_at, counted)
        watches = self.watches
        for watch_id in watch_ids:
            watch = watches.get(watch_id)
            if watch is not None:
                watch.offer(item)
                continue
            channel = self.retired.get(watch_id)
            if channel is not None and self.protocol is not None:
                # Pushed before the hub saw our UNWATCH: back to the channel's queue.
                self.protocol.write((Op.PUSH_FRONT, 0, channel, payload, expires_at, counted))

    def _displaced(self, watch_id: int) -> None:
        """Another connection watches this channel now: hand our buffer back, fail waiters."""
        watch = self.watches.get(watch_id)
        if watch is None:
            return
        self._forget(watch)
        if self.protocol is not None:
            self._hand_back(self.protocol, watch)
        watch.fail_waiters(
            ChannelLayerError(
                f"{watch.channel} is being received on another event loop; "
                "receive a process-local channel from one loop at a time"
            )
        )

    def _consume(self, channel: str) -> None:
        """Report a counted message taken (one CONSUMED frame per loop iteration)."""
        consumed = self._consumed
        consumed.append(channel)
        if len(consumed) == 1:
            self.loop.call_soon(self._flush_consumed)

    def _flush_consumed(self) -> None:
        consumed, self._consumed = self._consumed, []
        if consumed and self.protocol is not None:
            self.protocol.write((Op.CONSUMED, 0, consumed))

    def oldest_buffered(self, channel: str | None) -> float | None:
        """The expiry time of the oldest message buffered here for ``channel`` (or for any
        watched channel): pushed by the hub, counted as pending there, not yet taken."""
        watches = self.watches.values() if channel is None else [self.watched.get(channel)]
        heads = [watch.items[0][1] for watch in watches if watch is not None and watch.items]
        return min(heads) if heads else None

    def drop_buffered(self) -> None:
        """Forget every buffered message (``flush``), releasing their counted holds."""
        for watch in self.watches.values():
            for _, _, counted in watch.items:
                if counted:
                    self._consume(watch.channel)
            watch.items.clear()

    def _sweep(self) -> None:
        """Drop expired buffered messages (their counted hold at the hub goes with them), and
        unwatch channels nobody has received from since the previous sweep and nobody waits
        on: a channel received from once (a reply channel) must not stay watched forever."""
        now = time.time()
        for watch in list(self.watches.values()):
            items = watch.items
            while items and items[0][1] <= now:
                if items.popleft()[2]:
                    self._consume(watch.channel)
            if watch.idle and not watch.recent:
                self._unwatch(watch)
            watch.recent = False

    async def _guard(self) -> None:
        """Sweep now and then; when cancelled (the loop is shutting down), hand every watched
        channel back so nothing the hub pushed here is stranded."""
        try:
            while self.watches:
                await asyncio.sleep(SWEEP_INTERVAL)
                self._sweep()
        except asyncio.CancelledError:
            self._guardian = None
            await self.detach()
            raise

    async def detach(self) -> None:
        """End every watch: DETACH, wait until the hub confirms (so every push for them has
        arrived), then hand the buffered messages back. The hub answers in order, so the same
        wait lets the answers of receives cancelled a moment ago arrive and be pushed back
        (``on_reply``) before the connection closes: a message the hub had already sent to a
        receive that was cancelled while the process stops goes back to its channel."""
        protocol = self.protocol
        if not (self.watches or self.cancelled) or protocol is None:
            return
        request_id = next(self._ids)
        answer: asyncio.Future[tuple[int, Any]] = self.loop.create_future()
        self.pending[request_id] = answer
        protocol.write((Op.DETACH, request_id))
        try:
            async with asyncio.timeout(DETACH_TIMEOUT):
                await answer
        except (HubLost, TimeoutError):
            return  # the hub is gone: there is nobody to hand anything to
        finally:
            self.pending.pop(request_id, None)
        for watch in list(self.watches.values()):
            self._forget(watch)
            self._hand_back(protocol, watch)
            watch.fail_waiters(ChannelLayerError("the IPC channel layer was closed"))
        self._flush_consumed()

    # ---------------------------------------------------------------- presence heartbeat

    def keep_members_alive(self) -> None:
        """Start this link's heartbeat unless it runs."""
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = self.loop.create_task(self._beat())

    async def _beat(self) -> None:
        """BEAT every ttl/3 while the instance has presence members."""
        layer = self.layer
        interval = layer.heartbeat_interval
        while layer.presence_info and not self.closed:
            await asyncio.sleep(interval)
            if self.protocol is not None and not layer.heartbeat_stopped:
                self.protocol.write((Op.BEAT, 0))

    @staticmethod
    def _checked(reply: tuple[int, Any]) -> tuple[int, Any]:
        if reply[0] == Status.ERROR:
            raise ChannelLayerError(f"IPC hub refused the request: {reply[1]}")
        return reply


def _outcome(future: asyncio.Future[Any] | None) -> tuple[Any, BaseException | None]:
    """``(result, error)`` of a finished ``future`` (retrieving either); ``(None, None)`` if
    there is none, it was cancelled, or it failed with HubLost (the caller tries again)."""
    if future is None or not future.done() or future.cancelled():
        return None, None
    error = future.exception()
    if error is None:
        return future.result(), None
    return None, None if isinstance(error, HubLost) else error


class IPCChannelLayer(BaseChannelLayer):
    """A channel layer shared by the processes of one host through a Unix-socket hub.

    Options (``CONFIG``): ``path`` (hub socket; default from ``prefix``), ``prefix``
    (``"asgi"``), ``expiry`` (60 s), ``group_expiry`` (86400 s), ``capacity`` (100),
    ``channel_capacity`` (glob or regex → capacity), ``connect_timeout`` (10 s: how long to
    wait for a hub before raising :class:`~headrace.exceptions.ChannelLayerError`), and
    ``history`` / ``presence`` (docs/history-presence.md).
    """

    extensions = ["groups", "flush", "statistics", "history", "presence"]

    def __init__(
        self,
        path: str | None = None,
        prefix: str = "asgi",
        connect_timeout: float = 10.0,
        **config: Any,
    ) -> None:
        super().__init__(**config)
        self.prefix = prefix
        self.path = os.path.abspath(path) if path else default_path(prefix)
        if len(os.fsencode(self.path)) > UNIX_PATH_MAX:
            raise InvalidChannelLayerError(
                f"IPC layer path is longer than {UNIX_PATH_MAX} bytes: {self.path}"
            )
        self.connect_timeout = connect_timeout
        self.client_id = self.random_suffix(10)
        self.memberships: dict[tuple[str, str], float] = {}
        self.presence_info: dict[tuple[str, str], dict[str, Any]] = {}
        beats = [settings.heartbeat for _, _, settings in self.group_features.presence]
        self.heartbeat_interval = min(beats, default=10.0)
        self.heartbeat_stopped = False
        self._links: dict[asyncio.AbstractEventLoop, HubLink] = {}
        self._valid_channels: set[str] = set()

    def _link(self) -> HubLink:
        loop = asyncio.get_running_loop()
        link = self._links.get(loop)
        if link is None or link.closed:
            self._forget_closed_loops()
            link = self._links[loop] = HubLink(self, loop)
            self._close_link_with_loop(loop)
        return link

    def _forget_closed_loops(self) -> None:
        """Drop links of loops that were closed (their sockets go with the garbage)."""
        for loop in [loop for loop in self._links if loop.is_closed()]:
            del self._links[loop]

    def _close_link_with_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close this loop's hub connection when the loop closes.

        ``async_to_sync`` runs every call on a fresh loop and closes it afterwards; without
        this each call would leave a connection behind. Loops whose ``close`` cannot be wrapped
        (uvloop's) are handled by :meth:`_forget_closed_loops` instead."""
        original_close = loop.close

        def close() -> None:
            link = self._links.pop(loop, None)
            if link is not None and not loop.is_running() and not loop.is_closed():
                with contextlib.suppress(Exception):
                    loop.run_until_complete(link.shutdown())
                    loop.run_until_complete(asyncio.sleep(0))  # let the transport close
            original_close()

        with contextlib.suppress(AttributeError):
            loop.close = close  # type: ignore[method-assign]

    @staticmethod
    def _payload(message: LayerMessage) -> bytes:
        BaseChannelLayer.require_valid_message(message)
        payload = encode_message(message)
        if len(payload) > MAX_PAYLOAD:
            raise MessageTooLarge(
                f"message is {len(payload)} bytes; the IPC layer carries at most {MAX_PAYLOAD}"
            )
        return payload

    # ---------------------------------------------------------------- channels

    def _require_valid_channel(self, channel: str) -> None:
        """``require_valid_channel_name`` with a bounded memory of names already checked, so a
        consumer re-arming its receive (or a fan-out of a thousand) skips the regex."""
        if type(channel) is str and channel in self._valid_channels:
            return
        self.require_valid_channel_name(channel)
        if len(self._valid_channels) >= VALID_NAMES_KEPT:
            self._valid_channels.clear()
        self._valid_channels.add(channel)

    async def send(self, channel: str, message: LayerMessage) -> None:
        self._require_valid_channel(channel)
        payload = self._payload(message)
        status, _ = await self._link().request(Op.SEND, channel, payload, self.expiry)
        if status == Status.FULL:
            raise ChannelFull(channel)

    async def receive(self, channel: str) -> LayerMessage:
        self._require_valid_channel(channel)
        link = self._link()
        if "!" in channel:
            return decode_message(await link.receive_local(channel))
        payload, _ = await link.receive(channel)
        return decode_message(payload)

    async def receive_any(self, channels: Sequence[str]) -> tuple[str, LayerMessage] | None:
        """The next message of any of ``channels`` (normal or process-local) as ``(channel,
        message)``: one parked request at the hub, in a random order each call, so a busy
        channel cannot starve a quiet one. Exactly one message leaves its channel per call and
        a cancelled call takes none (module docs). ``None`` when one request cannot do it (no
        channels, a hub older than protocol 5): receive them one by one then."""
        names = list(dict.fromkeys(channels))
        for name in names:
            self._require_valid_channel(name)
        if not names:
            return None
        taken = await self._link().receive_any(names)
        return None if taken is None else (taken[0], decode_message(taken[1]))

    async def new_channel(self, prefix: str = "specific") -> str:
        return f"{prefix}.{self.client_id}!{self.random_suffix()}"

    # ---------------------------------------------------------------- groups

    async def group_add(self, group: str, channel: str, info: dict[str, Any] | None = None) -> None:
        """Add ``channel`` to ``group``; in a group with presence, with ``info``."""
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        recorded = check_info(info)
        expires_at = time.time() + self.group_expiry
        self.memberships[(group, channel)] = expires_at
        if len(self.memberships) % PRUNE_EVERY == 0:
            self._prune_memberships()
        link = self._link()
        if self.group_features.presence_of(group) is None:
            await link.request(Op.GROUP_ADD, group, channel, expires_at)
            return
        encode_message(recorded)  # TypeError now for what the hub could not carry
        await link.request(Op.GROUP_ADD, group, channel, expires_at, recorded, True)
        # Recorded once added: a replay (quiet) while connecting must not pre-empt the join.
        self.presence_info[(group, channel)] = recorded
        link.keep_members_alive()

    def _prune_memberships(self) -> None:
        now = time.time()
        for key, expires_at in list(self.memberships.items()):
            if expires_at <= now:
                del self.memberships[key]
                self.presence_info.pop(key, None)

    async def group_discard(self, group: str, channel: str) -> None:
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        self.memberships.pop((group, channel), None)
        self.presence_info.pop((group, channel), None)
        await self._link().request(Op.GROUP_DISCARD, group, channel)

    async def group_send(self, group: str, message: LayerMessage) -> Position | None:
        """Fan out at the hub; in a group with history, the message's position."""
        self.require_valid_group_name(group)
        if POSITION_KEY in message and self.group_features.history_of(group) is not None:
            message = {key: value for key, value in message.items() if key != POSITION_KEY}
        payload = self._payload(message)
        _, answer = await self._link().request(Op.GROUP_SEND, group, payload, self.expiry)
        return None if answer is None else Position(answer[0], answer[1])

    async def group_history(
        self, group: str, since: Position | None = None, limit: int | None = None
    ) -> GroupHistory:
        """The kept messages of ``group`` after ``since``: one request to the hub."""
        self.require_valid_group_name(group)
        self.group_features.require_history(group)
        check_history_query(since, limit)
        epoch, offset = (None, 0) if since is None else (since.epoch, since.offset)
        _, answer = await self._link().request(Op.GROUP_HISTORY, group, epoch, offset, limit)
        current, newest, kept, recovered = answer
        messages = [(number, decode_message(payload)) for number, payload in kept]
        return GroupHistory(current, newest, messages, recovered)

    async def group_presence(self, group: str) -> dict[str, dict[str, Any]]:
        self._require_presence(group)
        _, members = await self._link().request(Op.PRESENCE, group)
        return dict(members)

    async def group_presence_count(self, group: str) -> int:
        """One request; the hub keeps the count (O(1))."""
        self._require_presence(group)
        _, count = await self._link().request(Op.PRESENCE_COUNT, group)
        return int(count)

    def _require_presence(self, group: str) -> None:
        self.require_valid_group_name(group)
        self.group_features.require_presence(group)

    def stop_presence_heartbeat(self) -> None:
        """Stop the BEATs (as a hung process would); for tests of presence ttl."""
        self.heartbeat_stopped = True

    # ---------------------------------------------------------------- lifecycle

    async def flush(self) -> None:
        self.memberships.clear()
        self.presence_info.clear()
        link = self._link()
        link.drop_buffered()
        await link.request(Op.FLUSH)

    # ---------------------------------------------------------------- statistics

    async def global_statistics(self) -> Statistics:
        """Counted at the hub for every process of the host (one request)."""
        return await self._statistics(None)

    async def channel_statistics(self, channel: str) -> Statistics:
        self._require_valid_channel(channel)
        return await self._statistics(channel)

    async def _statistics(self, channel: str | None) -> Statistics:
        link = self._link()
        _, value = await link.request(Op.STATISTICS, channel)
        *counts, pending, oldest = value
        buffered = link.oldest_buffered(channel)
        if buffered is not None:
            oldest = buffered if oldest is None else min(oldest, buffered)
        age = 0.0 if oldest is None else self.expiry - (oldest - time.time())
        return statistics_of((counts[0], counts[1], counts[2], counts[3]), pending, age)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        link = self._links.pop(loop, None)
        if link is not None:
            await link.shutdown()
        self._forget_closed_loops()
