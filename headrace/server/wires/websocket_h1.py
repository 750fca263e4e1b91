"""The WebSocket wire over HTTP/1.1: the upgraded socket as a :class:`WebSocketTransport`.

Theory of operation
-------------------
The HTTP/1.1 wire (:mod:`headrace.server.wires.http11`) hands a request with
``Upgrade: websocket`` to :func:`start_websocket` with its complete ASGI websocket scope and the
bytes that followed the request head. The handshake is validated here (an invalid one is
answered ``400``/``426`` in HTTP/1.1 framing and never reaches the application); a valid one
starts the shared :class:`~headrace.server.streams.websocket.WebSocketStream`, which becomes
the connection's handler. :class:`Http11WebSocketTransport` is all this wire adds: the ``101``
head, denial responses, and the socket's reading, writing and half-close.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from headrace._types import Scope
from headrace.server.protocols.http11 import complete_response
from headrace.server.protocols.websocket import (
    HandshakeError,
    accept_response_head,
    validate_request,
)
from headrace.server.streams.admission import open_websocket
from headrace.server.streams.errors import server_answer

if TYPE_CHECKING:
    from headrace.server.connection import Connection
    from headrace.server.handler import ConnectionHandler


def handshake_error_response(error: HandshakeError, server_header: bytes | None = None) -> bytes:
    """The HTTP/1.1 answer to an invalid opening handshake."""
    answer = server_answer(error.status, error.message, tuple(error.headers))
    return complete_response(error.status, answer.headers, answer.body, server_header)


class Http11WebSocketTransport:
    """:class:`WebSocketTransport` over an upgraded HTTP/1.1 :class:`Connection`."""

    __slots__ = ("_connection", "_key", "_server_header", "flow", "write")

    def __init__(self, connection: Connection, key: bytes, server_header: bytes | None) -> None:
        self._connection = connection
        self._key = key
        self._server_header = server_header
        self.write: Callable[[bytes], None] = connection.write
        self.flow: Connection = connection  # its write_paused is a plain attribute

    async def wait_writable(self) -> None:
        await self._connection.drain()

    def send_accept(self, headers: list[tuple[bytes, bytes]]) -> None:
        self._connection.write(accept_response_head(self._key, headers, self._server_header))

    def send_response(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self._connection.write(complete_response(status, headers, body, self._server_header))
        self._connection.close()

    def pause_reading(self) -> None:
        self._connection.pause_reading()

    def resume_reading(self) -> None:
        self._connection.resume_reading()

    def close(self) -> None:
        self._connection.close()

    def write_eof(self) -> None:
        connection = self._connection
        if not connection.closed and connection.transport.can_write_eof():
            connection.transport.write_eof()
        else:
            connection.close()


class _RejectedHandshake:
    """Handler for a socket whose handshake was refused: the response is out, ignore the rest."""

    __slots__ = ()

    def data_received(self, data: bytes) -> None:
        return None

    def eof_received(self) -> None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        return None

    def writing_resumed(self) -> None:
        return None

    def shutdown(self) -> None:
        return None

    def is_idle(self) -> bool:
        return True


def start_websocket(
    connection: Connection, scope: Scope, trailing_data: bytes
) -> ConnectionHandler:
    """The HTTP/1.1 upgrade hook (see ``headrace.server.handler``): validate, then run the app.

    ``scope`` is the complete ASGI websocket scope of a GET request with ``Upgrade: websocket``;
    an invalid handshake is answered 400/426 here and never reaches the app.
    """
    state = connection.state
    settings = state.settings.websocket
    try:
        if scope.get("http_version") == "1.0":
            raise HandshakeError(400, "WebSocket needs HTTP/1.1 (RFC 6455 section 4.1)")
        handshake = validate_request(b"GET", scope["headers"])
    except HandshakeError as error:
        response = handshake_error_response(error, settings.server_header)
        connection.write(response)
        connection.close()
        if state.access_log is not None:
            path = scope.get("path", "")
            state.access_log.http(connection.client, "GET", path, error.status, len(response))
        return _RejectedHandshake()
    assert handshake.key is not None
    scope["subprotocols"] = handshake.subprotocols
    transport = Http11WebSocketTransport(connection, handshake.key, settings.server_header)
    stream = open_websocket(state, transport, scope, handshake)
    if stream is None:
        return _RejectedHandshake()  # refused (503): the answer is out, the connection closes
    if trailing_data:
        stream.data_received(trailing_data)
    return stream
