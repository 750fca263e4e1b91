"""The per-connection protocol handler interface, and the hand-off hooks between protocols.

Theory of operation
-------------------
One :class:`headrace.server.connection.Connection` (an ``asyncio.Protocol``) exists per
accepted socket. It owns the transport, write back-pressure, pause/resume of reading and
closing, and forwards every transport event to exactly one *handler* at a time: an object
implementing :class:`ConnectionHandler`. A handler is the adapter of one wire
(:mod:`headrace.server.wires`: HTTP/1.1, HTTP/2, WebSocket over either) and replaces itself
with :meth:`Connection.switch_handler`:

- the HTTP/1.1 wire sees ``Upgrade: websocket`` and calls the connection's WebSocket starter;
- it sees the HTTP/2 prior-knowledge preface or ``Upgrade: h2c`` and calls the HTTP/2 starter;
- the connection selects HTTP/2 directly when TLS negotiated ALPN ``h2``.

Nothing is looked up by module name: :class:`headrace.server.server.Server` builds one
:class:`~headrace.server.connection.Wires` (the HTTP/1.1 handler class and the starters) and
every connection carries it. The starters' contracts:

``websocket(connection, scope, trailing_data)``
    ``scope`` is the complete ASGI websocket scope; ``trailing_data`` the bytes received after
    the upgrade request's head. Returns the :class:`ConnectionHandler` that takes over the
    socket (it writes the 101 or a denial itself). Without one the client gets ``501``.

``http2(connection, initial_data, upgrade)``
    ``initial_data`` is every byte not consumed by HTTP/1.1 (for prior knowledge: starting with
    the preface); ``upgrade`` is the :class:`UpgradeRequest` for ``Upgrade: h2c`` (the handler
    sends the 101 and answers it as stream 1) or ``None``. Returns the new handler, or ``None``
    when HTTP/2 is disabled (then HTTP/1.1 carries on / answers 505 to the preface).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class ConnectionHandler(Protocol):
    """What a :class:`Connection` forwards transport events to."""

    def data_received(self, data: bytes) -> None:
        """Bytes arrived from the peer."""

    def eof_received(self) -> bool | None:
        """The peer half-closed; return True to keep the transport open for writing."""

    def connection_lost(self, exc: Exception | None) -> None:
        """The transport is gone: cancel or disconnect everything in flight."""

    def writing_resumed(self) -> None:
        """The transport's write buffer drained below the low-water mark."""

    def shutdown(self) -> None:
        """Graceful server shutdown: close when idle, let in-flight work finish."""

    def is_idle(self) -> bool:
        """True when no request/stream is in flight (closing now loses nothing)."""


@dataclass(slots=True)
class UpgradeRequest:
    """An HTTP/1.1 request that asked to switch protocols (``Upgrade: h2c``)."""

    method: str
    target: bytes
    headers: list[tuple[bytes, bytes]]
    http_version: str
    body: bytes
