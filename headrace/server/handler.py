"""The per-connection protocol handler interface, and the hand-off hooks between protocols.

Theory of operation
-------------------
One :class:`headrace.server.connection.Connection` (an ``asyncio.Protocol``) exists per
accepted socket. It owns the transport, write back-pressure, pause/resume of reading and
closing, and forwards every transport event to exactly one *handler* at a time: an object
implementing :class:`ConnectionHandler`. The handler speaks one wire protocol (HTTP/1.1,
HTTP/2, WebSocket). A handler replaces itself with :meth:`Connection.switch_handler`:

- the HTTP/1.1 handler sees ``Upgrade: websocket`` and calls :func:`start_websocket`;
- it sees the HTTP/2 prior-knowledge preface or ``Upgrade: h2c`` and calls :func:`start_http2`;
- the connection selects HTTP/2 directly when TLS negotiated ALPN ``h2``.

The hooks below import the implementing module lazily, so the server core depends on no
particular WebSocket or HTTP/2 implementation. Their contracts:

``headrace.server.streams.websocket.start_websocket(connection, scope, trailing_data)``
    ``connection`` is the :class:`Connection`; ``scope`` the complete ASGI websocket scope;
    ``trailing_data`` the bytes received after the upgrade request's head. It returns the
    :class:`ConnectionHandler` that takes over the socket (it writes the 101 or a denial
    itself). If the module or function does not exist, the client gets ``501``.

``headrace.server.http2_handler.start_http2(connection, initial_data, upgrade)``
    ``initial_data`` is every byte not consumed by HTTP/1.1 (for prior knowledge: starting with
    the preface); ``upgrade`` is the :class:`UpgradeRequest` for ``Upgrade: h2c`` (the handler
    sends the 101 and answers it as stream 1) or ``None``. Returns the new handler, or ``None``
    when HTTP/2 is disabled (then HTTP/1.1 carries on / answers 505 to the preface).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from headrace._types import Scope

if TYPE_CHECKING:
    from headrace.server.connection import Connection


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


WebSocketStarter = Callable[["Connection", Scope, bytes], ConnectionHandler]
Http2Starter = Callable[["Connection", bytes, UpgradeRequest | None], ConnectionHandler | None]


def _load_hook(module_name: str, function_name: str) -> Any:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        return None
    return getattr(module, function_name, None)


def websocket_starter() -> WebSocketStarter | None:
    """The WebSocket implementation's ``start_websocket``, or None if not installed."""
    starter: WebSocketStarter | None = _load_hook(
        "headrace.server.streams.websocket", "start_websocket"
    )
    return starter


def http2_starter() -> Http2Starter | None:
    """The HTTP/2 implementation's ``start_http2``, or None if not installed."""
    starter: Http2Starter | None = _load_hook("headrace.server.http2_handler", "start_http2")
    return starter
