"""The ASGI WebSocket stream: one WebSocket connection ↔ one ASGI application instance.

Theory of operation
-------------------
A :class:`WebSocketStream` sits between a *transport* and the ASGI app. The transport is
anything implementing :class:`WebSocketTransport`: the HTTP/1.1 socket after an upgrade
(:mod:`headrace.server.wires.websocket_h1`, which writes the ``101`` head) or an HTTP/2 stream
carrying RFC 8441 extended CONNECT (:mod:`headrace.server.wires.websocket_h2`, which answers
``:status 200`` and carries frames in DATA frames). The stream never sees sockets or HTTP
framing; the framing itself is the I/O-free
:class:`headrace.server.protocols.websocket.WebSocketProtocol`.

Life cycle (``phase``)::

    CONNECTING ──accept──▶ OPEN ──close sent──▶ CLOSING ──peer close / timeout──▶ CLOSED
        │                   └──peer close / error / connection lost──────────────▶ CLOSED
        ├──close / app exit / connect timeout──▶ 403 ─▶ CLOSED
        └──websocket.http.response.start──▶ RESPONDING ──last body──▶ CLOSED

``receive()`` returns ``websocket.connect`` first, then received messages from a bounded queue,
then a ``websocket.disconnect`` (repeatedly). When the queue reaches ``receive_queue`` messages
the transport stops reading (TCP back-pressure reaches the client) and resumes once the app has
drained half of it. ``send()`` writes a frame and, while the transport's write buffer is above its
high-water mark, waits for it to drain, so a slow client slows the app instead of growing memory.

Timers (all ``loop.call_later`` handles, none per message): the connect deadline
(``websocket_connect_timeout``, -1 = none), the maximum lifetime (``websocket_timeout``, -1 =
none), keepalive (every ``ping_interval`` seconds: if nothing at all arrived since the last tick a
ping is sent, and if still nothing arrives within ``ping_timeout`` the connection is dropped; any
bytes from the client, pongs included, count as alive), the close handshake deadline, and
``application_close_timeout`` (the app is cancelled if it has not returned that long after the
disconnect).

App errors: an exception before accept answers 500 (or completes the denial response the app had
started), after accept it closes with 1011; both are logged. A normal return before accept is a
403, after accept a 1000 close. ``shutdown()`` (graceful server stop) closes open connections with
1001; the app then gets ``websocket.disconnect`` with that code.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from headrace._types import ASGIApp, Message, Scope
from headrace.server.protocols.websocket import (
    CLOSE_ABNORMAL,
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL_ERROR,
    CLOSE_NO_STATUS,
    CLOSE_NORMAL,
    DeflateParams,
    HandshakeRequest,
    State,
    WebSocketProtocol,
    check_response_fields,
    is_valid_close_code,
    negotiate_deflate,
)
from headrace.server.streams.errors import server_answer

if TYPE_CHECKING:
    from headrace.server.settings import WebSocketSettings

logger = logging.getLogger("headrace.server.websocket")

CONNECTING = 0
RESPONDING = 1
OPEN = 2
CLOSING = 3
CLOSED = 4

_CONNECT_EVENT: Message = {"type": "websocket.connect"}
_EARLY_DATA_LIMIT = 1 << 16  # bytes buffered before accept; then reading pauses


class WebSocketClosed(OSError):
    """``send()`` was called on a WebSocket that is already closed (ASGI spec 2.4)."""


class WriteFlow(Protocol):
    """Whatever knows whether a transport's outgoing buffer is full (read once per send)."""

    @property
    def write_paused(self) -> bool:
        """True while the outgoing buffer is above its high-water mark."""


class WebSocketTransport(Protocol):
    """What a stream needs from the wire below it (an upgraded socket or an HTTP/2 stream).

    Optionally a transport has ``write_eof()`` (half-close, as TCP): when the connection is
    failed the server then stops writing but keeps reading until the client closes, so bytes
    still in flight from the client cannot turn into a TCP reset that destroys our close frame.
    Transports without it are simply closed.
    """

    @property
    def flow(self) -> WriteFlow:
        """Where ``write_paused`` is read: the connection itself when it keeps the flag as a
        plain attribute (HTTP/1.1), so a send costs no extra Python call to check it."""

    async def wait_writable(self) -> None:
        """Return once the outgoing buffer drained (or the transport closed)."""

    def send_accept(self, headers: list[tuple[bytes, bytes]]) -> None:
        """Complete the opening handshake with these extra response headers."""

    def send_response(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """Answer the handshake with a plain HTTP response (denial); then close."""

    def write(self, data: bytes) -> None:
        """Send WebSocket frame bytes."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def close(self) -> None:
        """Flush what was written, then close the connection (or end the HTTP/2 stream)."""

    def write_eof(self) -> None:
        """Stop writing but keep reading until the peer closes (a failed connection)."""


class AccessLog(Protocol):
    def websocket(
        self, action: str, client: tuple[str, int] | list[object] | None, path: str
    ) -> None: ...


class WebSocketStream:
    """One WebSocket connection driven by one ASGI application instance."""

    __slots__ = (
        "_alive",
        "_app",
        "_app_task",
        "_close_sent_code",
        "_connect_delivered",
        "_denial_body",
        "_denial_headers",
        "_denial_status",
        "_disconnect",
        "_early_data",
        "_encode",
        "_flow",
        "_handshake",
        "_log",
        "_loop",
        "_on_finished",
        "_ping_deadline",
        "_protocol",
        "_queue",
        "_reading_paused",
        "_scope",
        "_settings",
        "_shutting_down",
        "_timers",
        "_transport",
        "_waiter",
        "_write",
        "phase",
    )

    def __init__(
        self,
        transport: WebSocketTransport,
        scope: Scope,
        app: ASGIApp,
        handshake: HandshakeRequest,
        settings: WebSocketSettings,
        access_log: AccessLog | None = None,
        on_finished: Callable[[WebSocketStream], None] | None = None,
    ) -> None:
        self._transport = transport
        self._write = transport.write
        self._flow = transport.flow
        self._encode: Callable[[str | bytes], bytes] = _not_open
        self._scope = scope
        self._app = app
        self._handshake = handshake
        self._settings = settings
        self._log = access_log
        self._on_finished = on_finished
        self._loop = asyncio.get_running_loop()
        self._protocol: WebSocketProtocol | None = None
        self._queue: deque[str | bytes] | None = None  # created by the first message
        self._waiter: asyncio.Future[None] | None = None
        self._disconnect: Message | None = None
        self._connect_delivered = False
        self._reading_paused = False
        self._early_data = bytearray()
        self._denial_status = 0
        self._denial_headers: list[tuple[bytes, bytes]] = []
        self._denial_body: list[bytes] = []
        self._alive = True
        self._ping_deadline = 0.0
        self._close_sent_code = 0
        self._shutting_down = False
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._app_task: asyncio.Task[None] | None = None
        self.phase = CONNECTING

    # -- start and app task -----------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Run the app; arm the connect deadline."""
        self._access("connecting")
        if self._settings.connect_timeout >= 0:
            self._arm("connect", self._settings.connect_timeout, self._on_connect_timeout)
        task = self._loop.create_task(self._run_app())
        self._app_task = task
        return task

    async def _run_app(self) -> None:
        try:
            await self._app(self._scope, self.receive, self.send)
        except asyncio.CancelledError:
            self._after_app(None, cancelled=True)
            raise
        except Exception as exc:
            self._after_app(exc)
        else:
            self._after_app(None)

    def _after_app(self, error: Exception | None, cancelled: bool = False) -> None:
        if isinstance(error, WebSocketClosed) and self.phase == CLOSED:
            logger.debug("WebSocket application sent after the connection closed")
        elif error is not None:
            logger.error("Exception inside WebSocket application", exc_info=error)
        if self.phase == CONNECTING:
            self._deny(500 if error is not None else 403)
        elif self.phase == RESPONDING:
            self._finish_denial()
        elif self.phase == OPEN:
            self._start_close(CLOSE_INTERNAL_ERROR if error or cancelled else CLOSE_NORMAL, "")
        self._cancel_timer("app_close")
        self._cancel_timer("connect")
        if self.phase == CLOSED:
            self._finished()

    def _finished(self) -> None:
        for name in [name for name in self._timers if name != "close"]:
            self._cancel_timer(name)  # "close" still bounds the wait for the client's close
        if self._on_finished is not None:
            callback, self._on_finished = self._on_finished, None
            callback(self)

    # -- ASGI receive -----------------------------------------------------------------------

    async def receive(self) -> Message:
        if not self._connect_delivered:
            self._connect_delivered = True
            return dict(_CONNECT_EVENT)
        while True:
            queue = self._queue
            if queue:
                message = queue.popleft()
                if self._reading_paused and len(queue) <= self._settings.receive_queue // 2:
                    self._reading_paused = False
                    self._transport.resume_reading()
                if isinstance(message, str):
                    return {"type": "websocket.receive", "text": message}
                return {"type": "websocket.receive", "bytes": message}
            if self._disconnect is not None:
                return dict(self._disconnect)
            waiter = self._loop.create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- ASGI send --------------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if self.phase == OPEN:
            if kind == "websocket.send":
                text = message.get("text")
                payload = text if text is not None else message.get("bytes")
                if payload is None:
                    raise ValueError("websocket.send needs 'text' or 'bytes'")
                self._write(self._encode(payload))
                if self._flow.write_paused:
                    await self._transport.wait_writable()
            elif kind == "websocket.close":
                self._start_close(_close_code(message), _reason(message))
            else:
                raise RuntimeError(f"Unexpected ASGI message {kind!r} on an open WebSocket")
        elif self.phase == CONNECTING:
            self._send_connecting(kind, message)
        elif self.phase == RESPONDING:
            self._send_denial_body(kind, message)
        else:
            raise WebSocketClosed(f"Cannot send {kind!r}: the WebSocket is closed")

    def _send_connecting(self, kind: str, message: Message) -> None:
        if kind == "websocket.accept":
            self._accept(message)
        elif kind == "websocket.close":
            self._deny(403)
        elif kind == "websocket.http.response.start":
            headers = [(bytes(name), bytes(value)) for name, value in message.get("headers", [])]
            check_response_fields(headers)
            self._denial_status = int(message["status"])
            self._denial_headers = headers
            self.phase = RESPONDING
        else:
            raise RuntimeError(f"Unexpected ASGI message {kind!r} before websocket.accept")

    def _send_denial_body(self, kind: str, message: Message) -> None:
        if kind != "websocket.http.response.body":
            raise RuntimeError(f"Expected websocket.http.response.body, got {kind!r}")
        self._denial_body.append(bytes(message.get("body", b"")))
        if not message.get("more_body", False):
            self._finish_denial()

    # -- handshake outcomes -----------------------------------------------------------------

    def _accept(self, message: Message) -> None:
        headers = [(bytes(name), bytes(value)) for name, value in message.get("headers") or []]
        subprotocol = message.get("subprotocol")
        if subprotocol:
            headers.insert(0, (b"sec-websocket-protocol", subprotocol.encode("latin-1")))
        check_response_fields(headers)
        deflate = negotiate_deflate(self._handshake.extension_offers, self._settings.deflate)
        if deflate is not None:
            headers.append((b"sec-websocket-extensions", deflate.response_value))
        self._open(headers, deflate)

    def _open(self, headers: list[tuple[bytes, bytes]], deflate: DeflateParams | None) -> None:
        settings = self._settings
        self._protocol = WebSocketProtocol(
            max_message_size=settings.max_message_size,
            max_frame_size=settings.max_frame_size,
            deflate=deflate,
        )
        self._encode = self._protocol.encode_message
        self._cancel_timer("connect")
        self._transport.send_accept(headers)
        self.phase = OPEN
        self._access("connected")
        if settings.websocket_timeout >= 0:
            self._arm("lifetime", settings.websocket_timeout, self._on_lifetime_over)
        if settings.ping_interval > 0:
            self._arm("ping", settings.ping_interval, self._on_ping_timer)
        if self._early_data:
            early, self._early_data = bytes(self._early_data), bytearray()
            self.data_received(early)
            if self._reading_paused and len(self._queue or ()) < settings.receive_queue:
                self._reading_paused = False
                self._transport.resume_reading()
        if self._shutting_down and self.phase == OPEN:
            self._start_close(CLOSE_GOING_AWAY, "server shutdown")

    def _deny(self, status: int) -> None:
        """Refuse the handshake with the server's own answer (:mod:`.errors`)."""
        answer = server_answer(status)
        self._denial_status = status
        self._denial_headers = answer.headers
        self._denial_body = [answer.body]
        self._finish_denial()

    def _finish_denial(self) -> None:
        self._cancel_timer("connect")
        body = b"".join(self._denial_body)
        headers = self._denial_headers
        if not any(name.lower() == b"content-type" for name, _ in headers) and body:
            headers.append((b"content-type", b"text/plain; charset=utf-8"))
        self._transport.send_response(self._denial_status or 403, headers, body)
        self.phase = CLOSED
        self._access("rejected")
        self._set_disconnect(CLOSE_ABNORMAL, "")

    # -- transport events -------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        protocol = self._protocol
        if protocol is None:
            if self.phase == CONNECTING:
                self._buffer_early(data)
            return
        self._alive = True
        if protocol.state == State.FAILED:
            # Most likely the client's close reply; it has been read, so closing cannot reset.
            self._transport.close()
            return
        replies = protocol.receive_data(data)
        messages = protocol.messages
        if messages:
            if self.phase == OPEN:
                self._enqueue(messages)
            messages.clear()
        if replies:
            self._transport.write(protocol.data_to_send())
        if protocol.state >= State.CLOSED:
            self._on_protocol_closed(protocol)

    def _buffer_early(self, data: bytes) -> None:
        """Frames sent before the app accepted: keep them, but stop reading past a bound."""
        self._early_data += data
        if not self._reading_paused and len(self._early_data) > _EARLY_DATA_LIMIT:
            self._reading_paused = True
            self._transport.pause_reading()

    def _enqueue(self, messages: list[str | bytes]) -> None:
        queue = self._queue
        if queue is None:
            queue = self._queue = deque(messages)
        else:
            queue.extend(messages)
        waiter = self._waiter  # self._wake(), inline: this runs for every received message
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if not self._reading_paused and len(queue) >= self._settings.receive_queue:
            self._reading_paused = True
            self._transport.pause_reading()

    def _on_protocol_closed(self, protocol: WebSocketProtocol) -> None:
        code = protocol.close_code or CLOSE_ABNORMAL
        if protocol.state == State.FAILED:
            logger.info("WebSocket protocol error: %s (%d)", protocol.close_reason, code)
            # Fail the connection (RFC 6455 §7.1.7): our close frame is out; half-close now and
            # let the client close its side (no RST for bytes in flight), bounded in time.
            self._half_close()
            self._arm("close", self._settings.close_timeout, self._transport.close)
            self._close_phase(code, protocol.close_reason)
            return
        self._transport.close()
        self._close_phase(code, protocol.close_reason)

    def _half_close(self) -> None:
        """Fail the connection: stop writing, read until the client closes (see transport)."""
        self._transport.write_eof()

    def eof_received(self) -> None:
        self.connection_lost(None)

    def connection_lost(self, exc: Exception | None) -> None:
        """The socket (or HTTP/2 stream) is gone."""
        if self.phase == CLOSED:
            return
        protocol = self._protocol
        code = CLOSE_ABNORMAL
        reason = ""
        if protocol is not None and protocol.close_code is not None:
            code, reason = protocol.close_code, protocol.close_reason
        self._close_phase(code, reason)

    def _close_phase(self, code: int, reason: str) -> None:
        if self.phase == CLOSED:
            return
        if self.phase in (OPEN, CLOSING):
            self._access("disconnected")
        self.phase = CLOSED
        for name in ("ping", "lifetime", "connect"):
            self._cancel_timer(name)
        self._set_disconnect(code, reason)

    def _set_disconnect(self, code: int, reason: str) -> None:
        if self._disconnect is None:
            self._disconnect = {"type": "websocket.disconnect", "code": code, "reason": reason}
        self._wake()
        if self._reading_paused:
            self._reading_paused = False
            self._transport.resume_reading()
        task = self._app_task
        if task is None or task.done():
            self._finished()
            return
        timeout = self._settings.application_close_timeout
        self._arm("app_close", timeout, task.cancel)

    def writing_resumed(self) -> None:
        """Nothing to do: the transport wakes ``wait_writable`` itself."""

    def shutdown(self) -> None:
        """Graceful server shutdown: close with 1001 (pending messages still reach the app)."""
        self._shutting_down = True
        if self.phase == OPEN:
            self._start_close(CLOSE_GOING_AWAY, "server shutdown")

    def is_idle(self) -> bool:
        return self.phase == CLOSED

    # -- closing ----------------------------------------------------------------------------

    def _start_close(self, code: int, reason: str) -> None:
        protocol = self._protocol
        if self.phase != OPEN or protocol is None:
            return
        self._transport.write(protocol.encode_close(code, reason))
        self._close_sent_code = code
        if protocol.state == State.CLOSED:
            self._transport.close()
            self._close_phase(code, reason)
            return
        self.phase = CLOSING
        self._cancel_timer("ping")
        self._cancel_timer("lifetime")
        self._arm("close", self._settings.close_timeout, self._on_close_timeout)

    def _on_close_timeout(self) -> None:
        self._transport.close()
        self._close_phase(self._close_sent_code or CLOSE_ABNORMAL, "")

    # -- timers -----------------------------------------------------------------------------

    def _arm(self, name: str, delay: float, callback: Callable[[], Any]) -> None:
        self._cancel_timer(name)
        self._timers[name] = self._loop.call_later(delay, callback)

    def _cancel_timer(self, name: str) -> None:
        handle = self._timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    def _on_connect_timeout(self) -> None:
        self._timers.pop("connect", None)
        if self.phase == CONNECTING:
            logger.warning("WebSocket connect timeout: the application did not accept in time")
            self._deny(403)
        elif self.phase == RESPONDING:
            self._finish_denial()

    def _on_lifetime_over(self) -> None:
        self._timers.pop("lifetime", None)
        self._start_close(CLOSE_NORMAL, "")

    def _on_ping_timer(self) -> None:
        """Keepalive tick, every ``ping_interval``: ping a silent peer, drop a dead one."""
        self._timers.pop("ping", None)
        protocol = self._protocol
        if self.phase != OPEN or protocol is None:
            return
        settings = self._settings
        now = self._loop.time()
        delay = settings.ping_interval
        if self._alive or self._reading_paused:
            # Something arrived since the last tick, or we are the ones not reading (the app
            # is behind): a pong could not be seen, so the client is not judged now.
            self._alive = False
            self._ping_deadline = 0.0
        elif not self._ping_deadline:
            self._transport.write(protocol.encode_ping(b"headrace"))
            timeout = settings.ping_timeout
            self._ping_deadline = now + timeout if timeout > 0 else float("inf")
            delay = min(delay, timeout) if timeout > 0 else delay
        elif now >= self._ping_deadline:
            logger.info("WebSocket keepalive: no answer to ping, dropping the connection")
            self._transport.close()
            self._close_phase(CLOSE_ABNORMAL, "keepalive ping timeout")
            return
        else:
            delay = min(delay, self._ping_deadline - now)
        self._arm("ping", delay, self._on_ping_timer)

    # -- logging ----------------------------------------------------------------------------

    def _access(self, action: str) -> None:
        if self._log is not None:
            self._log.websocket(action, self._scope.get("client"), self._scope.get("path", ""))


def _not_open(message: str | bytes) -> bytes:
    raise RuntimeError("the WebSocket is not open")


def _close_code(message: Message) -> int:
    """The app's close code; one that must not go on the wire (1006, 999, 2000...) is an error."""
    code = int(message.get("code") or CLOSE_NORMAL)
    if code != CLOSE_NO_STATUS and not is_valid_close_code(code):
        raise ValueError(f"websocket.close code {code} cannot be sent (RFC 6455 section 7.4)")
    return code


def _reason(message: Message) -> str:
    reason = message.get("reason")
    return str(reason) if reason else ""
