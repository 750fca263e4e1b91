"""The connection driver: one ``asyncio.Protocol`` per accepted socket.

Theory of operation
-------------------
:class:`Connection` owns the transport and everything that is the same for every wire
protocol: peer/local addresses and scheme, write back-pressure (``pause_writing`` /
``resume_writing`` become :meth:`drain`), pausing and resuming reads, closing, and membership
in the server's connection set (graceful shutdown walks it). Everything protocol-specific is
delegated to the current :class:`~headrace.server.handler.ConnectionHandler`; handlers swap
themselves with :meth:`switch_handler` (HTTP/1.1 → WebSocket, HTTP/1.1 → HTTP/2). The first
handler is HTTP/2 when TLS negotiated ALPN ``h2`` (and the server has an HTTP/2 wire), HTTP/1.1
otherwise. Which handler classes and starters exist is the server's choice, handed to every
connection as one :class:`Wires` (so this module imports no wire).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from headrace._types import Scope
from headrace.server.handler import ConnectionHandler, UpgradeRequest
from headrace.server.state import ServerState

logger = logging.getLogger("headrace.server")


def _address(value: Any) -> tuple[str, int] | None:
    if isinstance(value, tuple) and len(value) >= 2:
        return (str(value[0]), int(value[1]))
    return None


WebSocketStarter = Callable[["Connection", Scope, bytes], ConnectionHandler]
Http2Starter = Callable[["Connection", bytes, UpgradeRequest | None], ConnectionHandler | None]


@dataclass(frozen=True, slots=True)
class Wires:
    """The wire adapters a server speaks (see :mod:`headrace.server.handler`)."""

    http11: Callable[[Connection], ConnectionHandler]
    """Makes the first handler of a connection that is not HTTP/2 from its first byte."""
    http2: Http2Starter | None = None
    websocket: WebSocketStarter | None = None


class Connection(asyncio.Protocol):
    """Transport owner; forwards events to the current protocol handler."""

    __slots__ = (
        "_drain_waiters",
        "client",
        "closed",
        "handler",
        "is_tls",
        "loop",
        "reading_paused",
        "scheme",
        "server",
        "state",
        "transport",
        "wires",
        "write_paused",
    )

    def __init__(self, state: ServerState, loop: asyncio.AbstractEventLoop, wires: Wires) -> None:
        self.state = state
        self.loop = loop
        self.wires = wires
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.handler: ConnectionHandler = None  # type: ignore[assignment]
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int | None] | None = None
        self.scheme = "http"
        self.is_tls = False
        self.closed = False
        self.write_paused = False
        self.reading_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.client = _address(transport.get_extra_info("peername"))
        sockname = transport.get_extra_info("sockname")
        if isinstance(sockname, str):
            self.server = (sockname, None)
        else:
            self.server = _address(sockname)
        self.is_tls = transport.get_extra_info("sslcontext") is not None
        self.scheme = "https" if self.is_tls else "http"
        self.state.connections.add(self)
        self.handler = self._initial_handler()

    def _initial_handler(self) -> ConnectionHandler:
        if self.is_tls:
            ssl_object = self.transport.get_extra_info("ssl_object")
            if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
                starter = self.wires.http2
                handler = starter(self, b"", None) if starter is not None else None
                if handler is not None:
                    return handler
        return self.wires.http11(self)

    def data_received(self, data: bytes) -> None:
        self.handler.data_received(data)

    def eof_received(self) -> bool | None:
        keep_open = self.handler.eof_received()
        return bool(keep_open) and not self.closed and not self.is_tls

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.state.connection_closed(self)
        self._wake_drainers()
        self.handler.connection_lost(exc)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_drainers()
        self.handler.writing_resumed()

    # -- services for handlers ------------------------------------------------------------------

    def switch_handler(self, handler: ConnectionHandler) -> None:
        """Hand the socket to another protocol handler (upgrade, ALPN, h2c)."""
        self.handler = handler

    def write(self, data: bytes) -> None:
        if not self.closed:
            self.transport.write(data)

    def writelines(self, pieces: list[bytes] | tuple[bytes, ...]) -> None:
        """Write several buffers without joining them (writev on uvloop)."""
        if not self.closed:
            self.transport.writelines(pieces)

    async def drain(self) -> None:
        """Wait until the transport accepts more data (returns at once if it does, or closed)."""
        if not self.write_paused or self.closed:
            return
        waiter = self.loop.create_future()
        self._drain_waiters.append(waiter)
        await waiter

    def _wake_drainers(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def pause_reading(self) -> None:
        if not self.reading_paused and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        """Flush what was written, then close."""
        if not self.closed:
            self.closed = True
            self.transport.close()

    def abort(self) -> None:
        """Close at once, discarding unsent data."""
        self.closed = True
        self.transport.abort()

    def shutdown(self) -> None:
        """Graceful server shutdown for this connection."""
        self.handler.shutdown()
