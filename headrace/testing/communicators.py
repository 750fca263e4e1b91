"""Communicators: drive one ASGI application instance from a test, without a server.

Theory of operation
-------------------
:class:`ApplicationCommunicator` starts the application as a task (in a fresh context, like a
server would) with two queues as its ``receive`` and ``send``. ``send_input`` feeds the input
queue, ``receive_output`` reads the output queue within a timeout. Whenever the application has
crashed, its exception is raised from the next call, so a test sees the real error instead of a
timeout. ``receive_nothing`` waits on an event set by the application's ``send`` (no polling).

While an application runs under a communicator, consumers do not close Django database
connections around handlers (the :data:`headrace.db.db_cleanup_enabled` context variable),
so Django's ``TestCase`` transactions survive, as with Channels' communicators.

:class:`HttpCommunicator` and :class:`WebsocketCommunicator` build the scope and add protocol
shortcuts with the same names and return values as Channels 4.3.
"""

# The communicators take ``timeout=`` arguments because Channels' API does (ASYNC109).
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
from typing import Any
from urllib.parse import unquote, urlparse

from asgiref.compatibility import guarantee_single_callable

from headrace._types import ASGIApp, Message, Scope
from headrace.db import db_cleanup_enabled

__all__ = ["ApplicationCommunicator", "HttpCommunicator", "WebsocketCommunicator"]

HeaderList = list[tuple[bytes, bytes]]


class ApplicationCommunicator:
    """Runs ``application(scope, receive, send)`` as a task fed and drained by the test."""

    def __init__(self, application: ASGIApp, scope: Scope) -> None:
        # ASGI 2 ("double callable") applications are adapted, as asgiref's communicator does.
        self.application: ASGIApp = guarantee_single_callable(application)  # type: ignore[no-untyped-call]
        self.scope = scope
        self._input: asyncio.Queue[Message] | None = None
        self._output: asyncio.Queue[Message] | None = None
        self._output_arrived: asyncio.Event | None = None
        self._future: asyncio.Task[None] | None = None

    @property
    def input_queue(self) -> asyncio.Queue[Message]:
        if self._input is None:
            self._input = asyncio.Queue()
        return self._input

    @property
    def output_queue(self) -> asyncio.Queue[Message]:
        if self._output is None:
            self._output = asyncio.Queue()
        return self._output

    @property
    def output_arrived(self) -> asyncio.Event:
        if self._output_arrived is None:
            self._output_arrived = asyncio.Event()
        return self._output_arrived

    async def _app_send(self, message: Message) -> None:
        self.output_queue.put_nowait(message)
        self.output_arrived.set()

    @property
    def future(self) -> asyncio.Task[None]:
        """The application task, started on first use."""
        if self._future is None:
            context = contextvars.Context()
            context.run(db_cleanup_enabled.set, False)
            self._future = asyncio.get_running_loop().create_task(
                self._run_application(), context=context
            )
        return self._future

    async def _run_application(self) -> None:
        await self.application(self.scope, self.input_queue.get, self._app_send)

    def _raise_if_crashed(self) -> None:
        if self.future.done() and not self.future.cancelled():
            self.future.result()

    def _raise_if_done(self) -> None:
        """Its exception if the application failed, ``CancelledError`` if it was cancelled
        (by an earlier ``receive_output`` timeout), as asgiref's communicator does."""
        if self.future.done():
            self.future.result()

    async def send_input(self, message: Message) -> None:
        """Give ``message`` to the application's ``receive``."""
        self._raise_if_done()
        await self.input_queue.put(message)

    async def receive_output(self, timeout: float = 1) -> Message:
        """The next message the application sent; ``TimeoutError`` after ``timeout`` seconds
        (the application is then cancelled). If the application fails meanwhile, its
        exception is raised at once instead of waiting for the timeout; once the application
        was cancelled, every later call raises ``CancelledError``."""
        self._raise_if_done()
        if not self.output_queue.empty():
            return self.output_queue.get_nowait()
        getter = asyncio.ensure_future(self.output_queue.get())
        try:
            await asyncio.wait(
                {getter, self.future}, timeout=timeout, return_when="FIRST_COMPLETED"
            )
        finally:
            if not getter.done():
                getter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await getter
        if getter.done() and not getter.cancelled():
            return getter.result()
        if not self.output_queue.empty():
            return self.output_queue.get_nowait()
        self._raise_if_crashed()
        await self._cancel()
        raise TimeoutError(f"the application sent nothing within {timeout} s")

    async def receive_nothing(self, timeout: float = 0.1, interval: float = 0.01) -> bool:
        """True if the application sends nothing within ``timeout`` seconds. ``interval`` is
        accepted for Channels compatibility; arrival is awaited, not polled."""
        self._raise_if_crashed()
        if not self.output_queue.empty():
            return False
        self.output_arrived.clear()
        try:
            async with asyncio.timeout(timeout):
                await self.output_arrived.wait()
        except TimeoutError:
            self._raise_if_crashed()
            return self.output_queue.empty()
        return False

    async def wait(self, timeout: float = 1) -> None:
        """Wait for the application to finish; raise its exception if it failed."""
        try:
            async with asyncio.timeout(timeout):
                with contextlib.suppress(asyncio.CancelledError):
                    await self.future
        finally:
            await self._cancel()

    async def _cancel(self) -> None:
        future = self.future
        if not future.done():
            future.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await future

    def stop(self, exceptions: bool = True) -> None:
        """Cancel the application; with ``exceptions`` re-raise its error if it failed."""
        future = self._future
        if future is None:
            return
        if not future.done():
            future.cancel()
        elif exceptions and not future.cancelled():
            future.result()


class HttpCommunicator(ApplicationCommunicator):
    """Sends one HTTP request (whole body at once) and collects the response."""

    def __init__(
        self,
        application: ASGIApp,
        method: str,
        path: str,
        body: bytes = b"",
        headers: HeaderList | None = None,
    ) -> None:
        if not isinstance(body, bytes):
            raise TypeError(f"body must be bytes, not {type(body).__name__}")
        parsed = urlparse(path)
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method.upper(),
            "scheme": "http",
            "path": unquote(parsed.path),
            "raw_path": parsed.path.encode("latin-1"),
            "query_string": parsed.query.encode("utf-8"),
            "root_path": "",
            "headers": headers or [],
        }
        super().__init__(application, scope)
        self.body = body
        self.sent_request = False

    async def get_response(self, timeout: float = 1) -> dict[str, Any]:
        """``{"status", "headers", "body"}`` of the response, body chunks joined."""
        if not self.sent_request:
            self.sent_request = True
            await self.send_input({"type": "http.request", "body": self.body})
        start = await self.receive_output(timeout)
        if start["type"] != "http.response.start":
            raise AssertionError(f"expected http.response.start, got {start['type']!r}")
        chunks: list[bytes] = []
        while True:
            chunk = await self.receive_output(timeout)
            if chunk["type"] != "http.response.body":
                raise AssertionError(f"expected http.response.body, got {chunk['type']!r}")
            chunks.append(chunk.get("body", b""))
            if not chunk.get("more_body", False):
                break
        return {
            "status": start["status"],
            "headers": start.get("headers", []),
            "body": b"".join(chunks),
        }


class WebsocketCommunicator(ApplicationCommunicator):
    """Opens one WebSocket to the application and exchanges frames with it."""

    def __init__(
        self,
        application: ASGIApp,
        path: str,
        headers: HeaderList | None = None,
        subprotocols: list[str] | None = None,
        spec_version: str | None = None,
    ) -> None:
        if not isinstance(path, str):
            raise TypeError(f"Expected str, got {type(path)}")
        parsed = urlparse(path)
        scope: Scope = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "scheme": "ws",
            "path": unquote(parsed.path),
            "raw_path": parsed.path.encode("latin-1"),
            "query_string": parsed.query.encode("utf-8"),
            "root_path": "",
            "headers": headers or [],
            "subprotocols": subprotocols or [],
        }
        if spec_version:
            scope["spec_version"] = spec_version
        super().__init__(application, scope)
        self.response_headers: list[Any] | None = None

    async def connect(self, timeout: float = 1) -> tuple[bool, Any]:
        """Open the socket: ``(True, subprotocol)`` if accepted, ``(False, close code)`` if
        not."""
        await self.send_input({"type": "websocket.connect"})
        response = await self.receive_output(timeout)
        if response["type"] == "websocket.close":
            return (False, response.get("code", 1000))
        if response["type"] == "websocket.http.response.start":
            return (False, response.get("status"))
        if response["type"] != "websocket.accept":
            raise AssertionError(f"expected websocket.accept, got {response['type']!r}")
        # As sent by the application (Channels keeps asgiref's message as it is).
        self.response_headers = response.get("headers", [])
        return (True, response.get("subprotocol"))

    async def send_to(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Send one frame; exactly one of ``text_data`` / ``bytes_data``."""
        if (text_data is None) == (bytes_data is None):
            raise ValueError("You must supply exactly one of text_data or bytes_data")
        if text_data is not None:
            if not isinstance(text_data, str):
                raise TypeError("The text_data argument must be a str")
            await self.send_input({"type": "websocket.receive", "text": text_data})
        else:
            if not isinstance(bytes_data, bytes):
                raise TypeError("The bytes_data argument must be bytes")
            await self.send_input({"type": "websocket.receive", "bytes": bytes_data})

    async def send_json_to(self, data: Any) -> None:
        """Send ``data`` as a JSON text frame."""
        await self.send_to(text_data=json.dumps(data))

    async def receive_from(self, timeout: float = 1) -> str | bytes:
        """The payload of the next frame the application sends (str or bytes)."""
        response = await self.receive_output(timeout)
        if response["type"] != "websocket.send":
            raise AssertionError(f"Expected type 'websocket.send', but was {response['type']!r}")
        text, data = response.get("text"), response.get("bytes")
        if (text is None) == (data is None):
            raise AssertionError("The response needs exactly one of 'text' or 'bytes'")
        if text is not None:
            if not isinstance(text, str):
                raise AssertionError(f"Text frame payload is not str, it is {type(text)}")
            return text
        if not isinstance(data, bytes):
            raise AssertionError(f"Binary frame payload is not bytes, it is {type(data)}")
        return data

    async def receive_json_from(self, timeout: float = 1) -> Any:
        """The next frame, which must be text, decoded as JSON."""
        payload = await self.receive_from(timeout)
        if not isinstance(payload, str):
            raise AssertionError(f"JSON data is not a text frame, it is {type(payload)}")
        return json.loads(payload)

    async def disconnect(self, code: int = 1000, timeout: float = 1) -> None:
        """Tell the application the socket closed and wait for it to finish."""
        await self.send_input({"type": "websocket.disconnect", "code": code})
        await self.wait(timeout)
