"""The HTTP/1.1 (and 1.0) connection handler: httptools callbacks → HTTP streams.

Theory of operation
-------------------
``HTTP11Handler`` is the default :class:`~headrace.server.handler.ConnectionHandler`. Bytes
from the socket go straight into an ``httptools.HttpRequestParser`` (llhttp) whose callbacks
build the request: ``on_url``/``on_header`` collect the head (counting its size against
``--max-request-header-size``), ``on_headers_complete`` validates it, builds the ASGI scope and
an :class:`~headrace.server.streams.http.HTTPStream`, ``on_body``/``on_message_complete`` feed
the stream. llhttp itself rejects malformed heads, control bytes, bad chunk sizes,
``Content-Length`` with ``Transfer-Encoding`` and conflicting ``Content-Length`` values; every
rejection is answered ``400`` (or ``413``/``431``) and the connection is closed.

The handler is also the stream's :class:`~headrace.server.streams.http.ResponseSink`: only one
response is produced at a time. Pipelined requests queue in ``_pipeline`` (their bodies keep
buffering into their own stream) and start when the previous response completes; reading
pauses while the queue is long or a stream's body buffer is above its high-water mark. As one
read can hold thousands of tiny requests, the queue is capped (``MAX_QUEUED``): beyond it the
connection takes no more requests and closes after answering the queue.

Closing: ``_close`` half-closes and drains unread input for a moment (a "lingering close"), so
the kernel does not reset the connection and destroy a response the client has not read yet.

Responses: the head is joined with the first body chunk into one ``transport.write``. Without
an app-supplied ``Content-Length`` a complete single-chunk response gets one, a streamed one
is chunked (HTTP/1.1) or close-delimited (HTTP/1.0). HEAD and 204/304 responses carry no body.
Interim heads (``100 Continue``, ``103 Early Hints``) go out at once; HTTP/1.0 gets none.

Timers: a single per-connection deadline (``_deadline``) serves keep-alive idleness and the
slow-header limit; it is re-armed lazily so the hot path only assigns a float.

Upgrades: ``Upgrade: websocket`` builds the websocket scope and calls the WebSocket hook,
``Upgrade: h2c`` and the HTTP/2 preface call the HTTP/2 hook (see ``headrace.server.handler``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable
from typing import Any

import httptools

from headrace._types import Scope
from headrace.server.connection import Connection
from headrace.server.handler import UpgradeRequest
from headrace.server.protocols.http11 import (
    CONNECTION,
    CONTENT_LENGTH,
    CONTINUE_100,
    HTTP2_PREFACE,
    LAST_CHUNK,
    NO_BODY_STATUSES,
    SERVER,
    TRANSFER_ENCODING,
    complete_response,
    date_header_line,
    header_line,
    split_target,
    status_line,
)
from headrace.server.streams.admission import refusal
from headrace.server.streams.errors import server_answer
from headrace.server.streams.http import STREAMING, HTTPStream
from headrace.server.streams.scope import http_scope, websocket_scope
from headrace.server.tls import connection_tls_extension

logger = logging.getLogger("headrace.server.http11")

MAX_PIPELINE = 16  # queued requests at which reading pauses
MAX_QUEUED = 256  # queued requests at which the connection takes no more (one read holds many)
FIRST_REQUEST_GRACE = 1.0  # seconds a fresh connection may still deliver its request at shutdown
LINGER_TIMEOUT = 2.0  # seconds unread input is still drained after the last response (see _close)
JOIN_LIMIT = 16 * 1024  # bodies above this are written with writelines instead of joined
_METHODS = {
    name.encode(): name
    for name in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE")
}
_INTERESTING = frozenset(
    {
        b"host",
        b"expect",
        b"connection",
        b"content-length",
        b"transfer-encoding",
        b"upgrade",
        b"daphne-root-path",
        b"x-forwarded-for",
    }
)


class _RejectRequest(Exception):
    """The server answers this request itself (see :mod:`headrace.server.streams.errors`)."""

    def __init__(self, status: int, detail: str | None = None) -> None:
        super().__init__(detail or "")
        self.status = status
        self.detail = detail


class _PendingUpgrade:
    __slots__ = ("protocol", "request", "scope", "trailing")

    def __init__(self, protocol: str, scope: Scope | None, request: UpgradeRequest | None) -> None:
        self.protocol = protocol
        self.scope = scope
        self.request = request
        self.trailing = b""


class HTTP11Handler:
    """HTTP/1.x protocol handler and response sink (see module docs)."""

    __slots__ = (
        "_active",
        "_body_paused",
        "_chunked",
        "_closing",
        "_deadline",
        "_deadline_kind",
        "_eof",
        "_first_data",
        "_head_incomplete",
        "_head_request",
        "_head_size",
        "_headers",
        "_http10",
        # response state of the active stream
        "_keep_alive",
        "_late_request",
        "_limits",
        "_lingering",
        "_max_head_size",
        "_no_body",
        "_parsing",
        "_pipeline",
        "_proxy_headers",
        "_refusing",
        "_remaining",
        "_server_line",
        "_timer",
        "_upgrade",
        "_url",
        "conn",
        "loop",
        "parser",
        "state",
    )

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.state = conn.state
        self.loop = conn.loop
        self.parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_size = 0
        limits = self._limits = conn.state.settings.limits
        self._max_head_size = limits.max_header_size
        self._proxy_headers = conn.state.settings.proxy.headers
        server = conn.state.settings.server_header
        self._server_line = b"server: " + server + b"\r\n" if server else b""
        self._head_incomplete = False
        self._parsing: HTTPStream | None = None
        self._active: HTTPStream | None = None
        self._pipeline: deque[tuple[HTTPStream, bool] | _PendingUpgrade] = deque()
        self._upgrade: _PendingUpgrade | None = None
        self._first_data = True
        self._late_request = False
        self._lingering = False
        self._refusing = False
        self._eof = False
        self._body_paused = False
        self._closing = conn.state.shutting_down
        self._deadline = 0.0
        self._deadline_kind = ""
        self._timer: asyncio.TimerHandle | None = None
        self._keep_alive = True
        self._http10 = False
        self._head_request = False
        self._chunked = False
        self._no_body = False
        self._remaining = -1
        self._set_deadline("keep-alive", self._limits.keep_alive_timeout)
        if self._closing:
            # Accepted before the drain closed the listener but made after it began (the
            # accept callback ran first): its request is already on its way, as in shutdown().
            self._late_request = True
            self._set_deadline("first-request", FIRST_REQUEST_GRACE)

    # -- deadline (keep-alive and slow headers) ------------------------------------------------

    def _set_deadline(self, kind: str, delay: float) -> None:
        self._deadline_kind = kind
        deadline = self._deadline = self.loop.time() + delay
        timer = self._timer
        if timer is not None and timer.when() > deadline:
            timer.cancel()
            timer = None
        if timer is None:
            self._timer = self.loop.call_at(deadline, self._on_deadline)

    def _clear_deadline(self) -> None:
        self._deadline_kind = ""

    def _stop_timer(self) -> None:
        """The socket leaves HTTP/1.1: no deadline, and no timer keeping this handler alive."""
        self._clear_deadline()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_deadline(self) -> None:
        self._timer = None
        if not self._deadline_kind or self.conn.closed:
            return
        if self.loop.time() < self._deadline:
            self._timer = self.loop.call_at(self._deadline, self._on_deadline)
            return
        logger.debug("closing connection: %s timeout", self._deadline_kind)
        self.conn.close()

    # -- transport events -------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # the last response is out; input is drained until the client closes
        if (self._closing or self._refusing) and self._parsing is None and not self._late_request:
            return  # no new requests once closing; a body in progress is still read
        if self._first_data:
            self._first_data = False
            if data.startswith(HTTP2_PREFACE[:14]) and self._start_http2_preface(data):
                return
        try:
            self.parser.feed_data(data)
            if self._head_incomplete and self._deadline_kind != "request-header":
                self._set_deadline("request-header", self._limits.request_header_timeout)
        except httptools.HttpParserUpgrade as exc:
            self._on_parser_upgrade(data[int(exc.args[0]) :])
        except httptools.HttpParserCallbackError as exc:
            context = exc.__context__
            if isinstance(context, _RejectRequest):
                self._reject(context.status, context.detail)
            else:
                logger.exception("error while handling request head")
                self._reject(500)
        except httptools.HttpParserError as exc:
            self._reject(400, f"Bad Request: {exc}")

    def eof_received(self) -> bool:
        # TCP cannot tell a half-close from a client that left: treat EOF as "gone", so that
        # in-flight apps get http.disconnect (as uvicorn and Daphne do).
        self._closing = True
        self._eof = True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._clear_deadline()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._active is not None:
            self._active.feed_disconnect()
        for item in self._pipeline:
            if isinstance(item, tuple):
                item[0].feed_disconnect()
        if self._parsing is not None:
            self._parsing.feed_disconnect()

    def writing_resumed(self) -> None:
        """Nothing to do: streams wait in ``Connection.drain``."""

    def shutdown(self) -> None:
        self._closing = True
        if self._lingering:
            return  # closes at the client's EOF or the linger deadline
        if self._active is not None or self._pipeline:
            self._keep_alive = False
        elif self._head_incomplete:
            # A request head is arriving: it is in flight, serve it (Connection: close). The
            # request-header deadline already bounds how long it may take.
            self._late_request = True
        elif self._first_data:
            # Accepted but nothing read yet: the client has likely sent its first request
            # already (it is in flight or in the socket buffer). Closing now would drop it,
            # so give it a short window; it is then served with ``Connection: close``.
            self._late_request = True
            self._set_deadline("first-request", FIRST_REQUEST_GRACE)
        else:
            self.conn.close()

    def is_idle(self) -> bool:
        return (
            self._active is None
            and not self._pipeline
            and self._parsing is None
            and not self._head_incomplete
        )

    # -- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._head_size = 0
        self._deadline_kind = ""  # no keep-alive deadline while a request arrives
        self._head_incomplete = True

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)
        if self._head_size > self._max_head_size:
            raise _RejectRequest(431)

    def on_header(self, name: bytes, value: bytes) -> None:
        size = self._head_size = self._head_size + len(name) + len(value) + 4
        if size > self._max_head_size:
            raise _RejectRequest(431)
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self._clear_deadline()
        self._head_incomplete = False
        if (self._closing or self._refusing) and not self._late_request:
            return  # a request after shutdown/EOF/a full queue: not served, the connection closes
        self._late_request = False
        parser = self.parser
        http_version = parser.get_http_version()
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method) or raw_method.decode("ascii")
        host = expect = upgrade = None
        content_length = 0
        chunked = proxied = False
        for name, value in self._headers:
            if name in _INTERESTING:
                if name == b"host":
                    if host is not None:  # RFC 9112 §3.2: exactly one Host field
                        raise _RejectRequest(400, "Bad Request: more than one Host header")
                    host = value
                elif name == b"content-length":
                    content_length = int(value)
                elif name == b"transfer-encoding":
                    chunked = True
                elif name == b"expect":
                    expect = value.lower()
                elif name == b"upgrade":
                    upgrade = _chosen_upgrade(value)
                else:
                    proxied = True
        if host is None and http_version == "1.1":
            raise _RejectRequest(400, "Bad Request: missing Host header")
        if not self._url.isascii():
            raise _RejectRequest(400, "Bad Request: non-ASCII request target")
        if content_length and self._limits.max_body_size:
            status = refusal(self.state, content_length, counted=False)
            if status:
                raise _RejectRequest(status)
        if upgrade == b"websocket" and not (method == "GET" and parser.should_upgrade()):
            # RFC 6455 §4.1: GET plus Connection: upgrade; never hand a broken handshake to the app.
            raise _RejectRequest(400, "Bad Request: WebSocket upgrade needs GET + Connection")
        scope = self._build_scope(method, http_version, proxied or self._proxy_headers)
        if (
            upgrade is not None
            and parser.should_upgrade()
            and self._prepare_upgrade(upgrade, scope, method, http_version)
        ):
            return
        if self._limits.limit_concurrency is not None:
            status = refusal(self.state, None)
            if status:
                raise _RejectRequest(status)
        stream = HTTPStream(
            self.state,
            scope,
            self,
            has_body=chunked or content_length > 0,
            expect_continue=expect == b"100-continue",
        )
        self._parsing = stream
        keep_alive = parser.should_keep_alive()
        if self._active is None and not self._pipeline:
            self._begin(stream, keep_alive)
        else:
            pipeline = self._pipeline
            pipeline.append((stream, keep_alive))
            if len(pipeline) >= MAX_PIPELINE:
                self.conn.pause_reading()
            if len(pipeline) >= MAX_QUEUED:
                # Pausing stops further reads, not the parsing of this one, which may hold
                # thousands of tiny requests: bound the queue. This one is answered with
                # Connection: close; later ones are ignored and retried by the client.
                pipeline[-1] = (stream, False)
                self._refusing = True

    def on_body(self, body: bytes) -> None:
        stream = self._parsing
        if stream is None:
            return
        if self._limits.max_body_size and stream.body_exceeds_limit(len(body)):
            raise _RejectRequest(413)
        stream.feed_body(body)

    def on_message_complete(self) -> None:
        stream = self._parsing
        if stream is not None:
            self._parsing = None
            stream.feed_end()
        if self._active is None and not self._pipeline and not self._closing:
            self._set_deadline("keep-alive", self._limits.keep_alive_timeout)

    # -- scopes ----------------------------------------------------------------------------

    def _build_scope(self, method: str, http_version: str, proxied: bool) -> Scope:
        conn = self.conn
        target = self._url
        if target[:1] == b"/" and b"?" not in target and b"#" not in target:
            raw_path, query = target, b""
        else:
            raw_path, query = split_target(target)
        return http_scope(
            self.state,
            http_version=http_version,
            method=method,
            scheme=conn.scheme,
            raw_path=raw_path,
            query_string=query,
            headers=self._headers,
            client=conn.client,
            server=conn.server,
            extensions=self._extensions(http_version),
            proxied=proxied,
        )

    def _extensions(self, http_version: str) -> dict[str, Any]:
        """``scope["extensions"]``: early hints where the client can take a 1xx, TLS details."""
        extensions: dict[str, Any] = {}
        if http_version == "1.1":
            extensions["http.response.early_hint"] = {}
        if self.conn.is_tls:
            extensions["tls"] = connection_tls_extension(self.conn.transport)
        return extensions

    # -- upgrades --------------------------------------------------------------------------

    def _prepare_upgrade(
        self, upgrade: bytes, scope: Scope, method: str, http_version: str
    ) -> bool:
        if upgrade == b"websocket" and method == "GET":
            ws_scope = websocket_scope(scope)
            self._upgrade = _PendingUpgrade("websocket", ws_scope, None)
            return True
        # h2c is cleartext-only and needs exactly one HTTP2-Settings (RFC 7540 §3.2, §3.2.1);
        # otherwise the request is served as plain HTTP/1.1.
        settings = sum(1 for name, _ in self._headers if name == b"http2-settings")
        h2c_allowed = (
            self.state.settings.http2 is not None and not self.conn.is_tls and settings == 1
        )
        if upgrade == b"h2c" and h2c_allowed and self.conn.wires.http2 is not None:
            request = UpgradeRequest(method, self._url, list(self._headers), http_version, b"")
            self._upgrade = _PendingUpgrade("h2c", None, request)
            return True
        return False

    def _on_parser_upgrade(self, trailing: bytes) -> None:
        pending, self._upgrade = self._upgrade, None
        if pending is None:
            # An upgrade we do not speak was answered as plain HTTP; the parser cannot go on.
            self._keep_alive = False
            self._closing = True
            return
        self._clear_deadline()
        self.conn.pause_reading()
        if self._active is None and not self._pipeline:
            self._run_upgrade(pending, trailing)
        else:
            pending.trailing = trailing
            self._pipeline.append(pending)

    def _run_upgrade(self, pending: _PendingUpgrade, trailing: bytes) -> None:
        self.conn.resume_reading()
        if pending.protocol == "websocket":
            starter = self.conn.wires.websocket
            if starter is None or pending.scope is None:
                self._reject(501, "Not Implemented: WebSocket support is not installed")
                return
            self._closing = True
            self._stop_timer()
            self.conn.switch_handler(starter(self.conn, pending.scope, trailing))
            return
        h2_starter = self.conn.wires.http2
        handler = h2_starter(self.conn, trailing, pending.request) if h2_starter else None
        if handler is None:
            self._reject(501, "Not Implemented: HTTP/2 is not available")
            return
        self._closing = True
        self._clear_deadline()
        self.conn.switch_handler(handler)

    def _start_http2_preface(self, data: bytes) -> bool:
        starter = self.conn.wires.http2
        handler = starter(self.conn, data, None) if starter is not None else None
        if handler is None:
            self._reject(505)
            return True
        self._closing = True
        self._clear_deadline()
        self.conn.switch_handler(handler)
        return True

    # -- request lifecycle -----------------------------------------------------------------

    def _begin(self, stream: HTTPStream, keep_alive: bool) -> None:
        self._active = stream
        scope = stream.scope
        self._http10 = scope["http_version"] == "1.0"
        self._keep_alive = keep_alive and not self._closing
        self._head_request = scope["method"] == "HEAD"
        self._chunked = False
        self._no_body = False
        self._remaining = -1
        stream.start(self.loop)

    def _next(self) -> None:
        while self._pipeline:
            item = self._pipeline.popleft()
            if isinstance(item, tuple):
                if item[0].disconnected:
                    continue
                self._begin(*item)
                self._update_reading()
                return
            self._run_upgrade(item, item.trailing)
            return
        self._update_reading()
        if self._closing:
            self._close()
        elif self._parsing is None:
            self._set_deadline("keep-alive", self._limits.keep_alive_timeout)

    def _update_reading(self) -> None:
        if self._body_paused or len(self._pipeline) >= MAX_PIPELINE:
            self.conn.pause_reading()
        elif self.conn.reading_paused:
            self.conn.resume_reading()

    def _reject(self, status: int, detail: str | None = None) -> None:
        """Answer a request the server refuses itself, then close the connection."""
        answer = server_answer(status, detail)
        logger.info("rejecting request: %s %s", status, answer.body.decode().strip())
        self._closing = True
        self.conn.pause_reading()
        broken, self._parsing = self._parsing, None
        if broken is not None:
            broken.feed_disconnect()  # its app sees http.disconnect; its sends are dropped
        active = self._active
        if active is not None and active is not broken:
            # An earlier response is in flight: finish it, then close (no more requests).
            self._keep_alive = False
            self._pipeline.clear()
            return
        self._active = None
        self._pipeline.clear()
        if active is None or active.response_state < STREAMING:
            method = self._rejected_method(broken)
            head = method == b"HEAD"
            server = self.state.settings.server_header
            self.conn.write(complete_response(status, answer.headers, answer.body, server, head))
            self._log_rejection(method, status, 0 if head else len(answer.body))
        self._close()

    def _log_rejection(self, method: bytes, status: int, size: int) -> None:
        """Access-log a response the server made itself (Daphne logs what it answers too)."""
        access_log = self.state.access_log
        if access_log is not None:
            target = self._url.decode("latin-1") or "-"
            access_log.http(self.conn.client, method.decode("latin-1") or "-", target, status, size)

    def _rejected_method(self, stream: HTTPStream | None) -> bytes:
        """The method of the request being rejected, as far as it was parsed."""
        if stream is not None:
            return str(stream.scope["method"]).encode()
        try:
            return bytes(self.parser.get_method())
        except httptools.HttpParserError:
            return b""

    def _close(self, unread: bool = True) -> None:
        """Close after the last response, without letting unread input destroy it.

        Closing a socket whose receive buffer holds unread bytes (a body the app did not read,
        a rejected upload, pipelined requests) makes the kernel send a reset, and a reset makes
        the client's kernel discard the response the client has not read yet. So unless the
        client already sent EOF: half-close (the response ends with our FIN), keep reading and
        discarding input, and close on the client's EOF or after ``LINGER_TIMEOUT``. TLS cannot
        half-close, and a close-delimited body ends only with the close: there, linger only
        when input is known to be ``unread``.
        """
        conn = self.conn
        if self._eof or conn.closed or not (unread or conn.transport.can_write_eof()):
            conn.close()
            return
        self._closing = self._lingering = True
        self._parsing = None
        transport = conn.transport
        if transport.can_write_eof():
            transport.write_eof()
        conn.resume_reading()
        self._set_deadline("linger", LINGER_TIMEOUT)

    # -- ResponseSink --------------------------------------------------------------------------

    def send_head(
        self, status: int, headers: Iterable[tuple[bytes, bytes]], body: bytes, end: bool
    ) -> None:
        http10 = self._http10
        parts = [status_line(status, http10)]
        keep_alive = self._keep_alive
        if end and keep_alive and not (self._active is None or self._active.request_complete):
            keep_alive = False  # the unread rest of the request body ends this connection
        content_length = -1
        has_server = has_date = False
        for header in headers:
            line, kind = header_line(header)
            if kind:
                if kind == CONTENT_LENGTH:
                    content_length = int(header[1])
                elif kind == CONNECTION:
                    if header[1].lower() == b"close":
                        keep_alive = False
                    continue
                elif kind == TRANSFER_ENCODING:
                    continue
                elif kind == SERVER:
                    has_server = True
                else:
                    has_date = True
            parts.append(line)
        no_body = self._head_request or status in NO_BODY_STATUSES or status < 200
        if content_length < 0 and not (status in NO_BODY_STATUSES or status < 200):
            if end:
                if not self._head_request or body:
                    parts.append(b"content-length: %d\r\n" % len(body))
            elif not http10:
                # A HEAD answer announces the framing a GET would get, but carries no chunks.
                self._chunked = not no_body
                parts.append(b"transfer-encoding: chunked\r\n")
            else:
                keep_alive = False
        if not keep_alive:
            parts.append(b"connection: close\r\n")
        elif http10:
            parts.append(b"connection: keep-alive\r\n")
        if not has_server and self._server_line:
            parts.append(self._server_line)
        if not has_date:
            parts.append(date_header_line())
        parts.append(b"\r\n")
        self._keep_alive = keep_alive
        self._no_body = no_body
        self._remaining = content_length
        if not no_body and body:
            if len(body) > JOIN_LIMIT:
                # Large bodies are not copied into the head: writev via writelines.
                self.conn.writelines([b"".join(parts), *self._frame(body)])
                parts = []
            else:
                parts.extend(self._frame(body))
        if end and self._chunked:
            parts.append(LAST_CHUNK)
        if parts:
            self.conn.write(b"".join(parts))
        if end:
            self._finish_response()

    def _frame(self, body: bytes) -> tuple[bytes, ...]:
        """The wire pieces for one body chunk (chunk-size line and CRLF when chunked)."""
        remaining = self._remaining
        if remaining >= 0:
            if len(body) > remaining:
                raise RuntimeError("response body longer than its Content-Length")
            self._remaining = remaining - len(body)
        if self._chunked:
            return (b"%x\r\n" % len(body), body, b"\r\n")
        return (body,)

    def send_body(self, body: bytes, end: bool) -> None:
        if body and not self._no_body:
            pieces = self._frame(body)
            if end and self._chunked:
                pieces += (LAST_CHUNK,)
                end_written = True
            else:
                end_written = False
            if len(body) > JOIN_LIMIT:
                self.conn.writelines(pieces)
            else:
                self.conn.write(pieces[0] if len(pieces) == 1 else b"".join(pieces))
        else:
            end_written = False
        if end:
            if self._chunked and not end_written:
                self.conn.write(LAST_CHUNK)
            if self._remaining > 0 and not self._no_body:
                logger.error("response ended %d bytes short of its Content-Length", self._remaining)
                self.abort()
                return
            self._finish_response()

    def _finish_response(self) -> None:
        stream = self._active
        self._active = None
        if not self._keep_alive or stream is None or not stream.request_complete:
            unread = stream is None or not stream.request_complete or bool(self._pipeline)
            self._closing = True
            self._pipeline.clear()
            self._close(unread or self._head_incomplete)
            return
        self._next()

    def abort(self) -> None:
        self._active = None
        self._closing = True
        self._pipeline.clear()
        self.conn.close()

    def send_continue(self) -> None:
        if not self._http10:
            self.conn.write(CONTINUE_100)

    def send_informational(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """An interim head (``103 Early Hints``); HTTP/1.0 has no 1xx (RFC 9110 §15.2): dropped.

        The stream layer checked the fields (``protocols.fields.link_field``)."""
        if self._http10:
            return
        lines = [name + b": " + value + b"\r\n" for name, value in headers]
        self.conn.write(b"".join((status_line(status, False), *lines, b"\r\n")))

    def pause_body(self) -> None:
        self._body_paused = True
        self.conn.pause_reading()

    def resume_body(self) -> None:
        self._body_paused = False
        self._update_reading()

    def writable(self) -> bool:
        return not self.conn.write_paused

    async def drain(self) -> None:
        await self.conn.drain()


def _chosen_upgrade(value: bytes) -> bytes:
    """The protocol we take from an ``Upgrade`` list (RFC 9110 §7.8): websocket, then h2c.

    A client may offer several protocols (``websocket, foo``); we pick one we speak, or keep
    the first offer so that an upgrade we do not speak is served as plain HTTP.
    """
    offers = [token.strip() for token in value.lower().split(b",")]
    for known in (b"websocket", b"h2c"):
        if known in offers:
            return known
    return offers[0]
