"""WebSocket over HTTP/2 (RFC 8441): the shared WebSocket stream inside an h2 stream.

Theory of operation
-------------------
The server advertises ``SETTINGS_ENABLE_CONNECT_PROTOCOL``; a client then opens a WebSocket
with an extended CONNECT request (``:method CONNECT``, ``:protocol websocket``) on a new
stream. :func:`start_websocket_stream` validates it with the same handshake checks as
HTTP/1.1 (no key/accept in HTTP/2), and runs the very same
:class:`~headrace.server.streams.websocket.WebSocketStream` (options, timeouts,
permessage-deflate, denial responses) over an :class:`H2WebSocketChannel`, which is both the
stream's :class:`~headrace.server.streams.websocket.WebSocketTransport` and the object the
HTTP/2 handler feeds:

* accepting answers ``:status 200`` (plus the negotiated subprotocol/extension headers);
  a denial answers its status with the body and ends the stream;
* WebSocket frames ride in DATA frames; closing the WebSocket ends the h2 stream
  (``END_STREAM``), the peer's ``END_STREAM`` or ``RST_STREAM`` is a lost connection;
* back-pressure: while the stream asks to pause reading, received bytes are not
  acknowledged, so the peer's flow-control window closes; resuming reopens it. Writes wait
  while the peer's window or the socket is full.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

from headrace._types import Scope
from headrace.server.protocols.http2 import H2Protocol
from headrace.server.protocols.websocket import HandshakeError, validate_request
from headrace.server.streams.admission import open_websocket
from headrace.server.streams.errors import server_answer
from headrace.server.streams.websocket import WebSocketStream

if TYPE_CHECKING:
    from headrace.server.connection import Connection
    from headrace.server.state import ServerState


class H2StreamHost(Protocol):
    """What this wire needs of the HTTP/2 connection wire that carries it."""

    protocol: H2Protocol
    connection: Connection
    state: ServerState
    loop: asyncio.AbstractEventLoop

    def schedule_flush(self) -> None:
        """Write what the protocol queued, at the end of this loop iteration."""

    def websocket_done(self, stream_id: int) -> None:
        """The WebSocket's application finished: release the h2 stream."""


def start_websocket_stream(
    handler: H2StreamHost, stream_id: int, scope: Scope
) -> H2WebSocketChannel:
    """Validate an extended CONNECT and start the app (or answer the invalid handshake)."""
    channel = H2WebSocketChannel(handler, stream_id)
    try:
        handshake = validate_request(b"CONNECT", scope["headers"], http2=True)
    except HandshakeError as error:
        answer = server_answer(error.status, error.message, tuple(error.headers))
        channel.send_response(error.status, answer.headers, answer.body)
        return channel
    scope["subprotocols"] = handshake.subprotocols
    channel.stream = open_websocket(
        handler.state, channel, scope, handshake, on_finished=lambda _stream: channel.finished()
    )
    return channel


class H2WebSocketChannel:
    """One WebSocket carried by one HTTP/2 stream (see the module docstring)."""

    __slots__ = (
        "_ended",
        "_finished",
        "_paused",
        "_unacknowledged",
        "_waiter",
        "closed",
        "handler",
        "stream",
        "stream_id",
    )

    def __init__(self, handler: H2StreamHost, stream_id: int) -> None:
        self.handler = handler
        self.stream_id = stream_id
        self.stream: WebSocketStream | None = None
        self.closed = False
        self._ended = False
        self._finished = False
        self._paused = False
        self._unacknowledged = 0
        self._waiter: asyncio.Future[None] | None = None

    @property
    def done(self) -> bool:
        """True once the h2 stream has been released (see :meth:`finished`)."""
        return self._finished

    # -- WebSocketTransport (called by the WebSocket stream) -----------------------------

    @property
    def flow(self) -> H2WebSocketChannel:
        return self  # write_paused depends on the h2 stream's window: computed below

    @property
    def write_paused(self) -> bool:
        if self.closed:
            return False
        queued = self.handler.protocol.queued_bytes(self.stream_id)
        return queued > 0 or self.handler.connection.write_paused

    async def wait_writable(self) -> None:
        handler = self.handler
        while self.write_paused and not handler.connection.closed:
            if handler.protocol.queued_bytes(self.stream_id):
                self._waiter = handler.loop.create_future()
                await self._waiter
            else:
                await handler.connection.drain()

    def send_accept(self, headers: list[tuple[bytes, bytes]]) -> None:
        if self.closed:
            return
        self.handler.protocol.send_headers(self.stream_id, 200, _lowered(headers), False)
        self.handler.schedule_flush()

    def send_response(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        if self.closed:
            return
        protocol = self.handler.protocol
        block = [*_lowered(headers), (b"content-length", str(len(body)).encode())]
        protocol.send_headers(self.stream_id, status, block, not body)
        if body:
            protocol.send_data(self.stream_id, body, True)
        self._ended = True
        self.handler.schedule_flush()
        if self.stream is None:
            self.finished()

    def write(self, data: bytes) -> None:
        if self.closed or self._ended:
            return
        self.handler.protocol.send_data(self.stream_id, data, False)
        self.handler.schedule_flush()

    def pause_reading(self) -> None:
        self._paused = True

    def resume_reading(self) -> None:
        self._paused = False
        if self._unacknowledged:
            length, self._unacknowledged = self._unacknowledged, 0
            self.handler.protocol.data_consumed(self.stream_id, length)
            self.handler.schedule_flush()

    def close(self) -> None:
        """End our side of the h2 stream (the WebSocket close handshake is done or abandoned)."""
        if self.closed or self._ended:
            return
        self._ended = True
        self.handler.protocol.end_stream(self.stream_id)
        self.handler.schedule_flush()

    def write_eof(self) -> None:
        """Ending our side of the h2 stream is this wire's half-close."""
        self.close()

    # -- fed by the HTTP/2 handler -------------------------------------------------------

    def feed_body(self, data: bytes) -> None:
        if self._paused:
            self._unacknowledged += len(data)
        else:
            self.handler.protocol.data_consumed(self.stream_id, len(data))
        if self.stream is not None:
            self.stream.data_received(data)

    def feed_end(self) -> None:
        if self.stream is not None:
            self.stream.eof_received()

    def feed_disconnect(self) -> None:
        if self.stream is not None:
            self.stream.connection_lost(None)

    def sink_closed(self) -> None:
        self.closed = True
        self.wake_writer()

    def wake_writer(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def shutdown(self) -> None:
        if self.stream is not None:
            self.stream.shutdown()

    def finished(self) -> None:
        """The WebSocket is over and its app returned: release the h2 stream."""
        if self._finished:
            return
        self._finished = True
        if not self._ended and not self.closed:
            self.close()
        self.handler.websocket_done(self.stream_id)


def _lowered(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(bytes(name).lower(), bytes(value)) for name, value in headers]
