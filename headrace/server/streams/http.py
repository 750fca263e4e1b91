"""The ASGI HTTP stream: one request's ``receive``/``send`` logic, shared by HTTP/1.1 and HTTP/2.

Theory of operation
-------------------
An :class:`HTTPStream` sits between a wire protocol and the app for ONE request. The wire side
pushes the request body with :meth:`feed_body` / :meth:`feed_end` and reports a vanished client
with :meth:`feed_disconnect`. The app side is :meth:`receive` and :meth:`send`. Output goes to a
:class:`ResponseSink`, which the wire protocol implements (HTTP/1.1: the connection handler
itself, framing Content-Length/chunked; HTTP/2: an h2 stream with flow control). The stream
never sees bytes of framing, so both protocols share exactly this code.

Interim answers: ``http.response.early_hint`` (offered in ``scope["extensions"]`` by the wires
that can deliver it) becomes ``103 Early Hints`` through ``sink.send_informational`` before the
response starts; its links pass :func:`~headrace.server.protocols.fields.link_field` for every
wire. ``100 Continue`` is answered lazily (below).

Response states: ``START`` → (``http.response.start``) ``PENDING`` → (first body) ``STREAMING``
→ (``more_body`` false) ``COMPLETE``. The head is held back until the first body message so
that a small response leaves in one ``transport.write`` (head + body). Messages out of order
or of the wrong type raise ``RuntimeError`` inside the app; :meth:`run` turns any app error into
a 500 when nothing is on the wire yet, or aborts the response (close / RST_STREAM) otherwise.
An app that returns without a response gets a 500.

Request body flow control: chunks are queued; above ``HIGH_WATER`` queued bytes the stream
calls ``sink.pause_body()`` (stop reading the socket / stop opening the HTTP/2 window) and
``sink.resume_body()`` once ``receive()`` drained the queue. ``Expect: 100-continue`` is
answered lazily, on the app's first ``receive()``, and never once a final response started.
After the response completes, or the client left, ``receive()`` returns ``http.disconnect``.

Server limits are decided in the stream layer for every wire, from ``state.settings.limits``:
a request the server answers itself before any app runs
(:func:`headrace.server.streams.admission.refusal`: ``413`` for a declared body above
``--max-request-body-size``, ``503`` beyond ``--limit-concurrency``, which counts the requests
between :meth:`HTTPStream.start` and the app's return), and a body that grows past the limit
while it streams (:meth:`HTTPStream.body_exceeds_limit`, then :meth:`HTTPStream.refuse_body`).
The wire only frames the answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any, Protocol

from headrace._types import Message, Scope
from headrace.server.protocols.fields import link_field
from headrace.server.state import ServerState
from headrace.server.streams.errors import server_answer

logger = logging.getLogger("headrace.server.http")

HIGH_WATER = 256 * 1024

START, PENDING, STREAMING, COMPLETE = 0, 1, 2, 3

_DISCONNECT: dict[str, Any] = {"type": "http.disconnect"}


class ResponseSink(Protocol):
    """What a wire protocol offers one HTTP stream."""

    def send_head(
        self, status: int, headers: Iterable[tuple[bytes, bytes]], body: bytes, end: bool
    ) -> None:
        """Write the response head together with the first body chunk (may raise ValueError)."""

    def send_body(self, body: bytes, end: bool) -> None:
        """Write one more body chunk; ``end`` finishes the response."""

    def abort(self) -> None:
        """The response cannot be completed: cut it off (close / RST_STREAM)."""

    def send_continue(self) -> None:
        """Send ``100 Continue`` (the client waits for it before sending the body)."""

    def send_informational(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """Send an interim ``1xx`` head (``103 Early Hints``); a wire that cannot (an HTTP/1.0
        client, RFC 9110 §15.2) drops it."""

    def pause_body(self) -> None:
        """Stop receiving request body: the app fell behind."""

    def resume_body(self) -> None:
        """Receive request body again."""

    def writable(self) -> bool:
        """False while the peer is not keeping up with the response."""

    async def drain(self) -> None:
        """Wait until ``writable()`` or the peer is gone."""


class HTTPStream:
    """One request/response exchange as seen by the app (see module docs)."""

    __slots__ = (
        "_body",
        "_body_paused",
        "_body_received",
        "_body_size",
        "_close_timer",
        "_final_delivered",
        "_headers",
        "_size",
        "_status",
        "_timer",
        "_waiter",
        "disconnected",
        "expect_continue",
        "request_complete",
        "response_state",
        "scope",
        "sink",
        "state",
        "task",
    )

    def __init__(
        self,
        state: ServerState,
        scope: Scope,
        sink: ResponseSink,
        has_body: bool,
        expect_continue: bool = False,
    ) -> None:
        self.scope = scope
        self.sink = sink
        self.state = state
        self.task: asyncio.Task[None] | None = None
        self.response_state = START
        self.disconnected = False
        self.request_complete = not has_body
        self.expect_continue = expect_continue
        self._body: list[bytes] = []
        self._body_size = 0
        self._body_received = 0
        self._body_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._final_delivered = False
        self._status = 0
        self._headers: Iterable[tuple[bytes, bytes]] = ()
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None

    # -- wire side ------------------------------------------------------------------------

    def feed_body(self, data: bytes) -> None:
        self._body.append(data)
        self._body_size += len(data)
        if self._body_size > HIGH_WATER and not self._body_paused:
            self._body_paused = True
            self.sink.pause_body()
        self._wake()

    def body_exceeds_limit(self, length: int) -> bool:
        """Count ``length`` more received body bytes; True once past ``--max-request-body-size``.

        Called by the wire only when a limit is set (no cost otherwise)."""
        self._body_received += length
        return self._body_received > self.state.settings.limits.max_body_size

    def refuse_body(self) -> None:
        """The body outgrew the limit: answer ``413`` (or cut a started response off) and stop
        listening to the client; the app sees ``http.disconnect``."""
        if self.response_state == START:
            self.send_error(413)
        elif self.response_state != COMPLETE:
            self.response_state = COMPLETE
            self.sink.abort()
        self.feed_disconnect()

    def feed_end(self) -> None:
        self.request_complete = True
        self._wake()

    def feed_disconnect(self) -> None:
        """The client went away: wake ``receive()`` and bound the app's remaining life."""
        if self.disconnected:
            return
        self.disconnected = True
        self._wake()
        task = self.task
        if task is not None and not task.done() and self._close_timer is None:
            timeout = self.state.settings.limits.application_close_timeout
            loop = task.get_loop()
            self._close_timer = loop.call_later(timeout, self._kill_app)

    def start(self, loop: asyncio.AbstractEventLoop) -> asyncio.Task[None]:
        """Run the app for this request as a task tracked by the server."""
        self.state.active_requests += 1
        task = loop.create_task(self.run())
        self.task = task
        self.state.tasks.add(task)  # run() removes it in its finally
        http_timeout = self.state.settings.limits.http_timeout
        if http_timeout is not None:
            self._timer = loop.call_later(http_timeout, self._on_http_timeout)
        return task

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- app side ---------------------------------------------------------------------------

    async def receive(self) -> Message:
        while True:
            if self.disconnected or self.response_state == COMPLETE:
                return dict(_DISCONNECT)
            if self.expect_continue:
                self.expect_continue = False
                if self.response_state == START:
                    self.sink.send_continue()
            if self._body or (self.request_complete and not self._final_delivered):
                return self._next_body_message()
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter

    def _next_body_message(self) -> Message:
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self._body.clear()
        self._body_size = 0
        if self._body_paused:
            self._body_paused = False
            self.sink.resume_body()
        more = not self.request_complete
        if not more:
            self._final_delivered = True
        return {"type": "http.request", "body": body, "more_body": more}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            if self._write_body(message):
                await self.sink.drain()
        elif kind == "http.response.start":
            self._start_response(message)
        elif kind == "http.response.early_hint":
            self._send_early_hint(message)
        else:
            raise RuntimeError(f"unexpected ASGI message type {kind!r} on an HTTP connection")

    def _start_response(self, message: Message) -> None:
        if self.response_state != START:
            raise RuntimeError("'http.response.start' sent twice")
        status = message["status"]
        if type(status) is not int or not 200 <= status <= 999:
            # 1xx are interim answers: a client would wait forever for the final one.
            raise RuntimeError(f"invalid HTTP status {status!r}")
        self._status = status
        self._headers = message.get("headers", ())
        self.response_state = PENDING

    def _send_early_hint(self, message: Message) -> None:
        """``103 Early Hints`` with one ``link`` field per entry of ``links``; only before the
        response starts (afterwards, or once the client left, the hint is dropped)."""
        fields = [link_field(link) for link in message.get("links", ())]
        if fields and self.response_state == START and not self.disconnected:
            self.sink.send_informational(103, fields)

    def _write_body(self, message: Message) -> bool:
        """Hand one body message to the sink; True when the app should wait for ``drain``."""
        state = self.response_state
        if state == START:
            raise RuntimeError("'http.response.body' sent before 'http.response.start'")
        if state == COMPLETE:
            if self.disconnected:
                return False
            raise RuntimeError("'http.response.body' sent after the response completed")
        body = message.get("body", b"")
        if type(body) is not bytes:
            if not isinstance(body, bytes | bytearray | memoryview):
                raise RuntimeError("'body' must be bytes")
            body = bytes(body)
        more = message.get("more_body", False)
        if self.disconnected:
            if not more:
                self._complete()
            return False
        self._size += len(body)
        if state == PENDING:
            self.sink.send_head(self._status, self._headers, body, not more)
            self.response_state = STREAMING
        else:
            self.sink.send_body(body, not more)
        if not more:
            self._complete()
            return False
        return not self.sink.writable()

    def _complete(self) -> None:
        self.response_state = COMPLETE
        self._cancel_timer()
        self._wake()
        access_log = self.state.access_log
        if access_log is not None and not self.disconnected:
            self._log_access(access_log, self._status)

    def _log_access(self, access_log: Any, status: int) -> None:
        scope = self.scope
        uri = scope["path"]
        if scope["query_string"]:
            uri += "?" + scope["query_string"].decode("latin-1")
        access_log.http(scope["client"], scope["method"], uri, status, self._size)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- running the app --------------------------------------------------------------------

    async def run(self) -> None:
        """Call the app and turn errors / missing responses into 500 or an aborted response."""
        try:
            await self.state.app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            self._fail_quietly()
            raise
        except Exception:
            logger.exception("Exception in ASGI application")
            self._fail()
        else:
            if self.response_state in (START, PENDING) and not self.disconnected:
                logger.error("ASGI application returned without sending a response")
                self._fail()
            elif self.response_state == STREAMING and not self.disconnected:
                logger.error("ASGI application returned without completing the response")
                self._fail()
        finally:
            state = self.state
            state.active_requests -= 1
            if self.task is not None:
                state.task_finished(self.task)
            if self._close_timer is not None:
                self._close_timer.cancel()
                self._close_timer = None
            self._cancel_timer()

    def _fail(self) -> None:
        if self.response_state == COMPLETE or self.disconnected:
            return
        if self.response_state in (START, PENDING):
            self.send_error(500)
        else:
            self.response_state = COMPLETE
            self.sink.abort()

    def _fail_quietly(self) -> None:
        if self.response_state != COMPLETE and not self.disconnected:
            self.response_state = COMPLETE
            self.sink.abort()

    def send_error(self, status: int) -> None:
        """Answer with the server's own plain-text answer (:mod:`.errors`), framed by the
        sink like any response (only while nothing of the response is on the wire)."""
        answer = server_answer(status)
        self.response_state = STREAMING
        self._status = status
        self._size = len(answer.body)
        self.sink.send_head(status, answer.headers, answer.body, True)
        self._complete()

    def _on_http_timeout(self) -> None:
        self._timer = None
        if self.response_state == COMPLETE or self.disconnected:
            return
        if self.response_state in (START, PENDING):
            logger.warning("HTTP timeout: application did not respond in time; sending 503")
            self.send_error(503)
        else:
            logger.warning("HTTP timeout: response not completed in time; closing")
            self.response_state = COMPLETE
            self.sink.abort()
        self._kill_app()

    def _kill_app(self) -> None:
        self._close_timer = None
        task = self.task
        if task is not None and not task.done():
            task.cancel()
