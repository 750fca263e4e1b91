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

Failure. When the hub's process dies the link sees its connection close, reconnects (electing a
new hub if needed, see the hub module), replays this instance's unexpired group memberships and
re-issues the requests that were in flight. Parked receives are re-parked, so consumers do not
notice. Messages that were queued in the dead hub are lost, which at-most-once delivery allows; a
send in flight at the moment of the crash is re-sent and may, rarely, arrive twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from itertools import count
from typing import Any

from headrace.exceptions import (
    ChannelFull,
    ChannelLayerError,
    InvalidChannelLayerError,
    MessageTooLarge,
)
from headrace.layers.base import BaseChannelLayer, LayerMessage
from headrace.layers.ipc.hub import HubHost
from headrace.layers.ipc.wire import (
    MAX_FRAME,
    PROTOCOL_BATCHED,
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


class HubLink:
    """One event loop's connection to the hub, with reconnection and request bookkeeping."""

    def __init__(self, layer: IPCChannelLayer, loop: asyncio.AbstractEventLoop) -> None:
        self.layer = layer
        self.loop = loop
        self.protocol: LinkProtocol | None = None
        self.pending: dict[int, asyncio.Future[tuple[int, Any]]] = {}
        self.cancelled: dict[int, str] = {}
        self._ids = count(1)
        self._connecting: asyncio.Future[LinkProtocol] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.closed = False

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
            self._introduce(protocol)
            self.protocol = protocol
            return protocol

    def _introduce(self, protocol: LinkProtocol) -> None:
        """HELLO with the capacity rules, then replay this instance's group memberships."""
        layer = self.layer
        patterns = [(pattern.pattern, capacity) for pattern, capacity in layer.channel_capacity]
        protocol.write((Op.HELLO, 0, layer.capacity, patterns, PROTOCOL_BATCHED))
        now = time.time()
        for (group, channel), expires_at in list(layer.memberships.items()):
            if expires_at > now:
                protocol.write((Op.GROUP_ADD, 0, group, channel, expires_at))

    def on_lost(self, protocol: LinkProtocol) -> None:
        if self.protocol is protocol:
            self.protocol = None
        self.cancelled.clear()
        for future in self.pending.values():
            if not future.done():
                future.set_exception(HubLost("IPC hub connection lost"))
        self.pending.clear()
        if not self.closed and self.layer.memberships and not self.loop.is_closed():
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
        if status == Status.DELIVER_MANY:
            self._fan_out(*value)
            return
        future = self.pending.pop(request_id, None)
        if future is not None:
            if not future.done():
                future.set_result((status, value))
            return
        channel = self.cancelled.pop(request_id, None)
        if channel is not None and status == Status.OK and self.protocol is not None:
            # A message was on its way to a receive that was cancelled: put it back.
            payload, expires_at = value
            self.protocol.write((Op.PUSH_FRONT, 0, channel, payload, expires_at))

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
            elif request_id in self.cancelled:
                self.on_reply((request_id, Status.OK, value))

    def close(self) -> None:
        self.closed = True
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.close()

    # ---------------------------------------------------------------- requests

    async def request(self, op: int, *arguments: Any) -> tuple[int, Any]:
        """Send a request and wait for its reply, retrying on a new hub if the hub dies."""
        while True:
            protocol = await self.connected()
            request_id = next(self._ids)
            future: asyncio.Future[tuple[int, Any]] = self.loop.create_future()
            self.pending[request_id] = future
            protocol.write((op, request_id, *arguments))
            try:
                return self._checked(await future)
            except HubLost:
                continue
            finally:
                self.pending.pop(request_id, None)

    async def receive(self, channel: str) -> tuple[bytes, float]:
        """Park a receive at the hub; on cancellation make sure no message is lost."""
        while True:
            protocol = await self.connected()
            request_id = next(self._ids)
            future: asyncio.Future[tuple[int, Any]] = self.loop.create_future()
            self.pending[request_id] = future
            protocol.write((Op.RECEIVE, request_id, channel))
            try:
                _, value = self._checked(await future)
            except HubLost:
                continue
            except asyncio.CancelledError:
                self._abandon(channel, request_id, future)
                raise
            finally:
                self.pending.pop(request_id, None)
            payload, expires_at = value
            return payload, expires_at

    def _abandon(
        self, channel: str, request_id: int, future: asyncio.Future[tuple[int, Any]]
    ) -> None:
        protocol = self.protocol
        if protocol is None:
            return
        if future.done() and not future.cancelled() and future.exception() is None:
            status, value = future.result()
            if status == Status.OK:
                protocol.write((Op.PUSH_FRONT, 0, channel, value[0], value[1]))
            return
        self.cancelled[request_id] = channel
        protocol.write((Op.CANCEL, 0, channel, request_id))

    @staticmethod
    def _checked(reply: tuple[int, Any]) -> tuple[int, Any]:
        if reply[0] == Status.ERROR:
            raise ChannelLayerError(f"IPC hub refused the request: {reply[1]}")
        return reply


class IPCChannelLayer(BaseChannelLayer):
    """A channel layer shared by the processes of one host through a Unix-socket hub.

    Options (``CONFIG``): ``path`` (hub socket; default from ``prefix``), ``prefix``
    (``"asgi"``), ``expiry`` (60 s), ``group_expiry`` (86400 s), ``capacity`` (100),
    ``channel_capacity`` (glob or regex → capacity) and ``connect_timeout`` (10 s: how long to
    wait for a hub before raising :class:`~headrace.exceptions.ChannelLayerError`).
    """

    extensions = ["groups", "flush"]

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
                link.close()
                with contextlib.suppress(Exception):
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
        payload, _ = await self._link().receive(channel)
        return decode_message(payload)

    async def new_channel(self, prefix: str = "specific") -> str:
        return f"{prefix}.{self.client_id}!{self.random_suffix()}"

    # ---------------------------------------------------------------- groups

    async def group_add(self, group: str, channel: str) -> None:
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        expires_at = time.time() + self.group_expiry
        self.memberships[(group, channel)] = expires_at
        if len(self.memberships) % PRUNE_EVERY == 0:
            self._prune_memberships()
        await self._link().request(Op.GROUP_ADD, group, channel, expires_at)

    def _prune_memberships(self) -> None:
        now = time.time()
        for key, expires_at in list(self.memberships.items()):
            if expires_at <= now:
                del self.memberships[key]

    async def group_discard(self, group: str, channel: str) -> None:
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        self.memberships.pop((group, channel), None)
        await self._link().request(Op.GROUP_DISCARD, group, channel)

    async def group_send(self, group: str, message: LayerMessage) -> None:
        self.require_valid_group_name(group)
        payload = self._payload(message)
        await self._link().request(Op.GROUP_SEND, group, payload, self.expiry)

    # ---------------------------------------------------------------- lifecycle

    async def flush(self) -> None:
        self.memberships.clear()
        await self._link().request(Op.FLUSH)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        link = self._links.pop(loop, None)
        if link is not None:
            link.close()
        self._forget_closed_loops()
