"""The HTTP/2 connection handler: h2 streams plugged into the shared ASGI stream layer.

Theory of operation
-------------------
:func:`start_http2` is the hook :mod:`headrace.server.handler` documents. The connection calls
it when TLS negotiated ALPN ``h2``; the HTTP/1.1 handler calls it on the prior-knowledge
preface or on ``Upgrade: h2c`` (then the upgrade request becomes stream 1 after a ``101``).

:class:`HTTP2Handler` is the connection's :class:`~headrace.server.handler.ConnectionHandler`
and the :class:`~headrace.server.protocols.http2.H2Listener` of its I/O-free
:class:`~headrace.server.protocols.http2.H2Protocol`. Bytes in → ``receive_data`` → listener
calls → one :class:`H2RequestStream` per request stream. That class *is* the shared
:class:`~headrace.server.streams.http.HTTPStream` (the same request/response logic as
HTTP/1.1); it only adds what the ASGI HTTP/2 extensions need (``http.response.trailers``,
``http.response.early_hint``) and reports each chunk the app reads so the stream's receive
window reopens exactly as the app consumes. Its :class:`H2ResponseSink` turns the stream's
neutral calls into h2 frames; ``send()`` waits on it while the peer's flow-control window or
the socket is full.

Extended CONNECT requests with ``:protocol websocket`` (RFC 8441) run the shared WebSocket
stream layer over the h2 stream (see :mod:`headrace.server.wires.websocket_h2`).

Output is coalesced: everything produced while handling one read is written at its end, and
writes triggered by application tasks are batched into one ``transport.write`` per event-loop
iteration. When the socket's write buffer is full, reading pauses (so a peer that floods
PINGs or SETTINGS without reading our answers cannot grow our buffers).

Server limits apply per stream as over HTTP/1.1: ``--limit-concurrency`` answers ``503``,
``--max-request-body-size`` answers ``413`` (or aborts a started response), header lists above
``--max-request-header-size`` get ``431`` from the protocol layer. A connection without streams
or bytes for ``--timeout-keep-alive`` seconds is closed with ``GOAWAY(NO_ERROR)``.

Graceful shutdown sends ``GOAWAY(NO_ERROR)``, lets the in-flight streams finish, then sends
the final GOAWAY and closes.
"""

from __future__ import annotations

import asyncio
import binascii
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from headrace._types import Message, Scope
from headrace.server.handler import ConnectionHandler, UpgradeRequest
from headrace.server.protocols.chunked import ChunkedBody
from headrace.server.protocols.fields import check_response_field
from headrace.server.protocols.http2 import ErrorCode, H2Protocol, H2Settings, Headers
from headrace.server.protocols.http11 import complete_response, date_header_value
from headrace.server.streams.admission import refusal
from headrace.server.streams.errors import server_answer
from headrace.server.streams.http import PENDING, STREAMING, HTTPStream
from headrace.server.streams.scope import http_scope, websocket_scope
from headrace.server.tls import connection_tls_extension
from headrace.server.wires.websocket_h2 import start_websocket_stream

if TYPE_CHECKING:
    from headrace.server.connection import Connection
    from headrace.server.state import ServerState

logger = logging.getLogger("headrace.server.http2")

HTTP2_EXTENSIONS = ("http.response.trailers", "http.response.early_hint")
UPGRADE_RESPONSE = (
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
)
HOP_BY_HOP = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade")
)
UPGRADE_BODY_LIMIT = 16 * 1024 * 1024
"""Largest ``Upgrade: h2c`` request body buffered before switching (larger: ``501``)."""
PROXY_HEADERS = frozenset((b"daphne-root-path", b"x-forwarded-for"))
UPGRADE_ONLY = HOP_BY_HOP | {b"http2-settings", b"te"}
LINGER_TIMEOUT = 2.0
"""Longest time input is still read and discarded after the last frame (see ``_linger``)."""
LINGER_QUIET = 0.25
"""A lingering connection closes once the peer has sent nothing for this long."""


class H2StreamEnd(Protocol):
    """What the handler feeds for one stream (an HTTP request or a WebSocket)."""

    def feed_body(self, data: bytes) -> None: ...

    def feed_end(self) -> None: ...

    def feed_disconnect(self) -> None: ...

    def sink_closed(self) -> None: ...

    def wake_writer(self) -> None: ...

    def shutdown(self) -> None: ...


def start_http2(
    connection: Connection, initial_data: bytes, upgrade: UpgradeRequest | None
) -> ConnectionHandler | None:
    """Take the connection over as HTTP/2 (see :mod:`headrace.server.handler`)."""
    settings = connection.state.settings.http2
    if settings is None:
        return None  # HTTP/2 is off (--no-http2)
    body_length = _upgrade_body_length(upgrade) if upgrade is not None else 0
    if upgrade is not None and (
        body_length is None
        or body_length > UPGRADE_BODY_LIMIT
        or _header(upgrade.headers, b"http2-settings") is None
    ):
        return None
    handler = HTTP2Handler(connection, settings)
    if upgrade is not None:
        assert body_length is not None
        handler.await_upgrade_body(upgrade, body_length)
    else:
        handler.start()
    if initial_data or upgrade is not None:
        # An upgrade whose body is already complete (a body-less GET, as curl sends) must be
        # answered now: the client waits for the 101 before it sends anything more.
        handler.data_received(initial_data)
    else:
        handler.flush()
    return handler


class HTTP2Handler:
    """One HTTP/2 connection (see the module docstring)."""

    def __init__(self, connection: Connection, settings: H2Settings) -> None:
        self.connection = connection
        self.state: ServerState = connection.state
        self.loop = connection.loop
        self.protocol = H2Protocol(self, settings)
        self.streams: dict[int, H2StreamEnd] = {}
        self._flush_scheduled = False
        self._tls_extension: dict[str, Any] | None = self._build_tls_extension()
        limits = self.state.settings.limits
        self._proxy_headers_enabled = self.state.settings.proxy.headers
        self._max_body: int = limits.max_body_size
        self._idle_timeout: float = limits.keep_alive_timeout
        self._limited = bool(limits.max_body_size) or limits.limit_concurrency is not None
        self._last_activity = self.loop.time()
        self._idle_timer: asyncio.TimerHandle | None = None
        self._upgrade: UpgradeRequest | None = None
        self._upgrade_body = bytearray()
        self._upgrade_remaining = 0
        self._upgrade_chunks: ChunkedBody | None = None
        self._lingering = False
        self._linger_deadline = 0.0

    # -- start ---------------------------------------------------------------------------

    def start(self) -> None:
        self.protocol.initiate()
        self._arm_idle_timer(self._idle_timeout)

    def _arm_idle_timer(self, delay: float) -> None:
        self._idle_timer = self.loop.call_later(delay, self._check_idle)

    def _check_idle(self) -> None:
        """Close a connection that had no stream and no bytes for the keep-alive timeout."""
        self._idle_timer = None
        if self.protocol.terminated or self.connection.closed:
            return
        quiet = self.loop.time() - self._last_activity
        if self.protocol.is_idle() and quiet >= self._idle_timeout:
            self.protocol.close(0, "idle")
            self.flush()
            return
        self._arm_idle_timer(max(self._idle_timeout - quiet, 0.5))

    def await_upgrade_body(self, upgrade: UpgradeRequest, body_length: int) -> None:
        """``Upgrade: h2c``: the request body (in HTTP/1.1 framing) precedes the HTTP/2 bytes.

        ``body_length`` is the Content-Length, or -1 for a chunked body.
        """
        self._upgrade = upgrade
        if body_length < 0:
            self._upgrade_chunks = ChunkedBody(UPGRADE_BODY_LIMIT)
        self._upgrade_body = bytearray(upgrade.body)
        self._upgrade_remaining = max(body_length - len(upgrade.body), 0)

    def _receive_upgrade_body(self, data: bytes) -> bytes:
        """Collect the upgrade request's body; return the bytes that follow it."""
        chunks = self._upgrade_chunks
        if chunks is not None:
            try:
                rest = chunks.feed(data)
            except ValueError:
                answer = server_answer(400, "Bad Request: invalid chunked body")
                server = self.state.settings.server_header
                self.connection.write(complete_response(400, answer.headers, answer.body, server))
                self.connection.close()
                self._upgrade = None
                return b""
            if rest is None:
                return b""
            self._upgrade_body, data = chunks.body, rest
            self._upgrade_chunks = None
            take = 0
        else:
            take = min(self._upgrade_remaining, len(data))
            self._upgrade_body += data[:take]
            self._upgrade_remaining -= take
        if self._upgrade_remaining == 0 and self._upgrade is not None:
            upgrade, self._upgrade = self._upgrade, None
            upgrade.body = bytes(self._upgrade_body)
            self._upgrade_body = bytearray()
            self.start_upgrade(upgrade)
        return data[take:]

    def start_upgrade(self, upgrade: UpgradeRequest) -> None:
        """Answer ``Upgrade: h2c`` with 101 and serve the request as stream 1."""
        settings = _header(upgrade.headers, b"http2-settings") or b""
        self.connection.write(UPGRADE_RESPONSE)
        self._arm_idle_timer(self._idle_timeout)
        try:
            self.protocol.initiate_upgrade(settings, _upgrade_headers(upgrade), upgrade.body)
        except (ValueError, binascii.Error):
            self.protocol.close(int(ErrorCode.PROTOCOL_ERROR), "invalid HTTP2-Settings")

    def _build_tls_extension(self) -> dict[str, Any] | None:
        if not self.connection.is_tls:
            return None
        return connection_tls_extension(self.connection.transport)

    # -- ConnectionHandler ---------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._last_activity = self.loop.time()
        if self._lingering:
            return  # the last frame is out: input is read only so that it cannot reset it
        if self._upgrade is not None:
            data = self._receive_upgrade_body(data)
        if data:
            try:
                self.protocol.receive_data(data)
            except Exception:  # a bug, never the peer's doing: log it, end the connection cleanly
                logger.exception("error while handling HTTP/2 frames")
                self.protocol.close(int(ErrorCode.INTERNAL_ERROR), "internal error")
        self.flush()

    def eof_received(self) -> None:
        """The peer half-closed (while lingering: the peer read our last frame); close."""
        for stream in list(self.streams.values()):
            stream.feed_disconnect()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lingering = True  # nothing more is written
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        streams = list(self.streams.values())
        self.streams.clear()
        for stream in streams:
            stream.feed_disconnect()
            stream.sink_closed()

    def writing_resumed(self) -> None:
        self.connection.resume_reading()
        for stream in list(self.streams.values()):
            stream.wake_writer()

    def shutdown(self) -> None:
        for stream in list(self.streams.values()):
            stream.shutdown()
        self.protocol.begin_graceful_shutdown()
        self.flush()
        self._close_if_drained()

    def is_idle(self) -> bool:
        return self.protocol.is_idle()

    # -- output --------------------------------------------------------------------------

    def flush(self) -> None:
        """Write everything the protocol has queued; close once the connection is over."""
        self._flush_scheduled = False
        if self._lingering:
            return
        data = self.protocol.data_to_send()
        connection = self.connection
        if data:
            connection.write(data)
            if connection.write_paused:
                connection.pause_reading()
        if self.protocol.terminated and not connection.closed:
            self._linger()

    def _linger(self) -> None:
        """Close after the final GOAWAY without letting unread input reset the connection.

        Closing a socket whose receive buffer holds unread bytes (frames the peer sent before
        it saw our GOAWAY) makes the kernel answer with a reset, and the reset makes the peer's
        kernel discard the GOAWAY before the peer has read it. So: stop writing, half-close
        where the transport can (h2c; TLS cannot), keep reading and discarding, and close on
        the peer's EOF, once it has been quiet for ``LINGER_QUIET``, or after ``LINGER_TIMEOUT``.
        The streams still open learn at once that their client is gone.
        """
        self._lingering = True
        connection = self.connection
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        streams = list(self.streams.values())
        self.streams.clear()
        for stream in streams:
            stream.feed_disconnect()
            stream.sink_closed()
        transport = connection.transport
        if transport.can_write_eof():
            transport.write_eof()
        connection.resume_reading()
        now = self.loop.time()
        self._last_activity = now
        self._linger_deadline = now + LINGER_TIMEOUT
        self._idle_timer = self.loop.call_later(LINGER_QUIET, self._check_linger)

    def _check_linger(self) -> None:
        now = self.loop.time()
        quiet_until = self._last_activity + LINGER_QUIET
        if now >= quiet_until or now >= self._linger_deadline:
            self._idle_timer = None
            self.connection.close()
            return
        delay = min(quiet_until, self._linger_deadline) - now
        self._idle_timer = self.loop.call_later(delay, self._check_linger)

    def schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self.flush)

    def _close_if_drained(self) -> None:
        if self.protocol.draining_after is not None and self.protocol.is_idle():
            self.protocol.close()
            self.flush()

    # -- H2Listener ----------------------------------------------------------------------

    def on_request(
        self, stream_id: int, pseudo: dict[bytes, bytes], regular: Headers, end_stream: bool
    ) -> None:
        if pseudo.get(b":method") == b"CONNECT":
            self._start_connect(stream_id, pseudo, regular, end_stream)
            return
        scope = self._http_scope(pseudo, regular)
        sink = H2ResponseSink(self, stream_id, head_only=scope["method"] == "HEAD")
        stream = H2RequestStream(self.state, scope, sink, has_body=not end_stream)
        if self._limited:
            declared = _content_length(regular) if self._max_body and not end_stream else None
            status = refusal(self.state, declared)
            if status:
                stream.send_error(status)
                self.protocol.stream_finished(stream_id)
                return
        self.streams[stream_id] = stream
        stream.start(self.loop)

    def _start_connect(
        self, stream_id: int, pseudo: dict[bytes, bytes], regular: Headers, end_stream: bool
    ) -> None:
        protocol = pseudo.get(b":protocol")
        if protocol is None or protocol.lower() != b"websocket" or end_stream:
            # Plain CONNECT (no tunnels here), another protocol, or a WebSocket with no stream.
            self._reject(stream_id, 405 if protocol is None else 400 if end_stream else 501)
            return
        scope = websocket_scope(self._http_scope(pseudo, regular))
        channel = start_websocket_stream(self, stream_id, scope)
        if not channel.done:  # a refused handshake is over already: nothing to track
            self.streams[stream_id] = channel

    def _reject(self, stream_id: int, status: int) -> None:
        """Answer a CONNECT the server does not serve (no stream, no app)."""
        answer = server_answer(status)
        H2ResponseSink(self, stream_id).send_head(status, answer.headers, answer.body, True)
        self.protocol.stream_finished(stream_id)

    def on_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        stream = self.streams.get(stream_id)
        if stream is None:
            self.protocol.data_consumed(stream_id, len(data))
            return
        if data:
            stream.feed_body(data)
            if (
                self._max_body
                and isinstance(stream, H2RequestStream)
                and stream.body_exceeds_limit(len(data))
            ):
                stream.refuse_body()
                return
        if end_stream:
            stream.feed_end()

    def on_reset(self, stream_id: int, error_code: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.feed_disconnect()
            stream.sink_closed()

    def on_writable(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.wake_writer()

    def on_terminated(self, error_code: int, reason: str) -> None:
        if error_code:
            logger.info("HTTP/2 connection closed: %s (error code %d)", reason, error_code)
        self.schedule_flush()

    def stream_done(self, stream_id: int) -> None:
        """A stream's application finished: forget it, release its flow-control window."""
        self.streams.pop(stream_id, None)
        self.protocol.stream_finished(stream_id)
        self.schedule_flush()
        if self.protocol.draining_after is not None:
            self._close_if_drained()

    def websocket_done(self, stream_id: int) -> None:
        """Called by the WebSocket-over-HTTP/2 stream when its application finished."""
        self.stream_done(stream_id)

    # -- scopes --------------------------------------------------------------------------

    def _http_scope(self, pseudo: dict[bytes, bytes], regular: Headers) -> Scope:
        raw_path, _, query = pseudo.get(b":path", b"/").partition(b"?")
        extensions: dict[str, Any] = {name: {} for name in HTTP2_EXTENSIONS}
        if self._tls_extension is not None:
            extensions["tls"] = self._tls_extension
        connection = self.connection
        return http_scope(
            self.state,
            http_version="2",
            method=pseudo[b":method"].decode("latin-1"),
            scheme=connection.scheme,
            raw_path=raw_path,
            query_string=query,
            headers=regular,
            client=connection.client,
            server=connection.server,
            extensions=extensions,
            proxied=self._proxy_headers_enabled or _has_proxy_header(regular),
        )


class H2ResponseSink:
    """The :class:`~headrace.server.streams.http.ResponseSink` of one h2 request stream."""

    __slots__ = ("_waiter", "closed", "handler", "head_only", "stream_id")

    def __init__(self, handler: HTTP2Handler, stream_id: int, head_only: bool = False) -> None:
        self.handler = handler
        self.stream_id = stream_id
        self.head_only = head_only
        self.closed = False
        self._waiter: asyncio.Future[None] | None = None

    def send_head(
        self, status: int, headers: Iterable[tuple[bytes, bytes]], body: bytes, end: bool
    ) -> None:
        if self.closed:
            return
        protocol = self.handler.protocol
        block = _response_headers(headers, self.handler.state.settings.server_header)
        if self.head_only:
            body = b""
        protocol.send_headers(self.stream_id, status, block, end and not body)
        if body:
            protocol.send_data(self.stream_id, body, end)
        self.handler.schedule_flush()

    def send_body(self, body: bytes, end: bool) -> None:
        if self.closed:
            return
        if self.head_only:
            body = b""
        if body or end:
            self.handler.protocol.send_data(self.stream_id, body, end)
            self.handler.schedule_flush()

    def send_trailers(self, headers: Headers) -> None:
        if self.closed:
            return
        self.handler.protocol.send_trailers(self.stream_id, headers)
        self.handler.schedule_flush()

    def send_informational(self, status: int, headers: Headers) -> None:
        if self.closed:
            return
        self.handler.protocol.send_informational(self.stream_id, status, headers)
        self.handler.schedule_flush()

    def abort(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.handler.protocol.reset_stream(self.stream_id, int(ErrorCode.INTERNAL_ERROR))
        self.handler.schedule_flush()
        self.wake()

    def send_continue(self) -> None:
        self.send_informational(100, [])

    def pause_body(self) -> None:
        """Nothing to do: the receive window only reopens as the app reads."""

    def resume_body(self) -> None:
        """Nothing to do: see :meth:`pause_body`."""

    def consumed(self, length: int) -> None:
        self.handler.protocol.data_consumed(self.stream_id, length)
        self.handler.schedule_flush()

    def writable(self) -> bool:
        if self.closed:
            return True
        queued = self.handler.protocol.queued_bytes(self.stream_id)
        return queued == 0 and not self.handler.connection.write_paused

    async def drain(self) -> None:
        while not self.writable():
            if self.handler.connection.closed:
                return
            if self.handler.protocol.queued_bytes(self.stream_id):
                self._waiter = self.handler.loop.create_future()
                await self._waiter
            else:
                await self.handler.connection.drain()

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)


class H2RequestStream(HTTPStream):
    """The shared HTTP stream, plus the ASGI extensions only HTTP/2 offers here."""

    __slots__ = ("_trailers", "_trailers_expected")

    sink: H2ResponseSink

    def __init__(
        self, state: ServerState, scope: Scope, sink: H2ResponseSink, has_body: bool
    ) -> None:
        super().__init__(state, scope, sink, has_body)
        self._trailers_expected = False
        self._trailers: Headers = []

    async def run(self) -> None:
        """Run the app; then release the h2 stream (no done-callback round trip)."""
        try:
            await super().run()
        finally:
            self.sink.handler.stream_done(self.sink.stream_id)

    def _next_body_message(self) -> Message:
        message = super()._next_body_message()
        self.sink.consumed(len(message["body"]))
        return message

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self._trailers_expected = bool(message.get("trailers", False))
        elif kind == "http.response.body" and self._trailers_expected:
            if not message.get("more_body", False):
                message = {**message, "more_body": True}
        elif kind == "http.response.trailers":
            self._send_trailers(message)
            return
        await super().send(message)

    def _send_trailers(self, message: Message) -> None:
        if not self._trailers_expected or self.response_state not in (PENDING, STREAMING):
            raise RuntimeError("'http.response.trailers' needs 'trailers': True and a response")
        if self.disconnected:
            return
        fields = _trailer_fields(message.get("headers", ()))
        if self.response_state == PENDING:  # the head is still held back: send it alone
            self.sink.send_head(self._status, self._headers, b"", False)
            self.response_state = STREAMING
        self._trailers.extend(fields)
        if not message.get("more_trailers", False):
            trailers, self._trailers = self._trailers, []
            self.sink.send_trailers(trailers)
            self._trailers_expected = False
            self._complete()

    def wake_writer(self) -> None:
        self.sink.wake()

    def shutdown(self) -> None:
        """In-flight requests finish on graceful shutdown: nothing to do."""

    def sink_closed(self) -> None:
        self.sink.closed = True
        self.sink.wake()


_VALID_FIELDS: dict[tuple[bytes, bytes], tuple[bytes, bytes] | None] = {}
"""Response fields already checked: (name, value) as sent by the app → what goes out."""


def _check_response_field(name: bytes, value: bytes) -> tuple[bytes, bytes] | None:
    """The field lower-cased and validated; None for a hop-by-hop field (ValueError if bad)."""
    cacheable = type(name) is bytes and type(value) is bytes
    if cacheable and (name, value) in _VALID_FIELDS:
        return _VALID_FIELDS[(name, value)]
    lowered = bytes(name).lower()
    checked_value = bytes(value).strip(b" \t")  # RFC 9113 §8.2.1: no surrounding whitespace
    field: tuple[bytes, bytes] | None = None
    if lowered not in HOP_BY_HOP:
        check_response_field(lowered, checked_value)
        field = (lowered, checked_value)
    if cacheable and len(_VALID_FIELDS) < 4096 and len(name) + len(value) <= 256:
        _VALID_FIELDS[(name, value)] = field
    return field


def _response_headers(
    headers: Iterable[tuple[bytes, bytes]], server_header: bytes | None
) -> Headers:
    """The app's response fields for HTTP/2: lower-case, validated, no hop-by-hop fields.

    Raises ValueError for a field that cannot be sent (the stream layer answers 500).
    """
    block: Headers = []
    has_server = has_date = False
    for name, value in headers:
        field = _check_response_field(name, value)
        if field is None:
            continue
        if field[0] == b"server":
            has_server = True
        elif field[0] == b"date":
            has_date = True
        block.append(field)
    if server_header and not has_server:
        block.append((b"server", server_header))
    if not has_date:
        block.append((b"date", date_header_value()))
    return block


def _trailer_fields(headers: Iterable[tuple[bytes, bytes]]) -> Headers:
    """The app's trailer fields, checked like response fields (ValueError if one is bad)."""
    fields: Headers = []
    for name, value in headers:
        field = _check_response_field(name, value)
        if field is not None:
            fields.append(field)
    return fields


def _has_proxy_header(headers: Headers) -> bool:
    return any(name in PROXY_HEADERS for name, _ in headers)


def _header(headers: Iterable[tuple[bytes, bytes]], wanted: bytes) -> bytes | None:
    for name, value in headers:
        if name.lower() == wanted:
            return value
    return None


def _content_length(headers: Headers) -> int | None:
    """The declared body size (the protocol layer already checked the field)."""
    for name, value in headers:
        if name == b"content-length":
            return int(value)
    return None


def _upgrade_body_length(upgrade: UpgradeRequest) -> int | None:
    """Content-Length of an ``Upgrade: h2c`` request (0 without one, -1 if chunked)."""
    encoding = _header(upgrade.headers, b"transfer-encoding")
    if encoding is not None:
        return -1 if encoding.strip().lower() == b"chunked" else None
    value = _header(upgrade.headers, b"content-length")
    if value is None:
        return 0
    try:
        length = int(value)
    except ValueError:
        return None
    return length if length >= 0 else None


def _upgrade_headers(upgrade: UpgradeRequest) -> Headers:
    authority = _header(upgrade.headers, b"host") or b""
    headers: Headers = [
        (b":method", upgrade.method.encode("ascii")),
        (b":scheme", b"http"),
        (b":authority", authority),
        (b":path", upgrade.target),
    ]
    for name, value in upgrade.headers:
        lowered = name.lower()
        if lowered not in UPGRADE_ONLY:
            headers.append((lowered, value))
    return headers
