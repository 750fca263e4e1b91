"""Stream multiplexing: many independent consumers over one JSON WebSocket.

Theory of operation
-------------------
:class:`AsyncJsonWebsocketDemultiplexer` is itself a JSON WebSocket consumer (it joins its own
``groups`` and has its own channel name). Its ``applications`` maps a stream name to an ASGI
application, usually ``SomeConsumer.as_asgi()``. When the socket connects, the demultiplexer
accepts it and starts **one instance of every application**, each as its own task with:

* its own scope: a copy of the socket's scope plus ``scope["stream"]`` (the stream name), so
  each instance has its own channel name, groups and state, as on a socket of its own;
* its own ``receive``: a bounded queue fed with ``websocket.connect`` first, then one
  ``websocket.receive`` (``text`` = the JSON of the frame's ``payload``) per client frame for
  that stream, and ``websocket.disconnect`` when the socket closes. A full queue makes the
  demultiplexer wait, so a slow stream slows its socket down instead of losing frames;
* its own ``send``: ``websocket.accept`` is absorbed (the socket is already open),
  ``websocket.send`` text is decoded and sent to the client as ``{"stream", "payload"}``,
  ``websocket.close`` closes **that stream only**: the instance is told
  ``websocket.disconnect`` with the code, and the client gets the control frame
  ``{"stream": name, "payload": {"type": "stream.closed", "code": code}}``. An instance that
  crashes is logged with its traceback (server side only) and closed with 1011 the same way.
  When every stream has closed, the socket is closed with 1000.

Frames from the client must be JSON objects ``{"stream": str, "payload": dict}``. The errors of
Channels 1.x's demultiplexer (which raised inside the consumer) become close codes, with the
reason logged and sent as the close reason (never a traceback):

======  ===================================================================
code    meaning (module constant)
======  ===================================================================
1003    a binary frame (``CLOSE_BINARY_FRAME``)
1007    text that is not JSON (``CLOSE_BAD_JSON``)
4000    not an object with ``stream`` and ``payload`` (``CLOSE_BAD_FRAME``)
4001    ``payload`` is not an object (``CLOSE_PAYLOAD_NOT_DICT``)
4002    ``stream`` names no application (``CLOSE_UNKNOWN_STREAM``)
======  ===================================================================

:func:`read_stream_frame` and :func:`refuse_frame` are shared with
:class:`headrace.binding.BindingConsumer`, which reads the same frames.

A frame for a stream that has already closed is logged and dropped (the client may have sent
it before the control frame reached it). When the socket closes, every open instance gets
``websocket.disconnect`` and is given ``stream_close_timeout`` seconds to finish before it is
cancelled.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any, ClassVar

from headrace._types import ASGIApp, Message
from headrace.exceptions import StopConsumer
from headrace.generic.websocket import AsyncJsonWebsocketConsumer

__all__ = [
    "CLOSE_BAD_FRAME",
    "CLOSE_BAD_JSON",
    "CLOSE_BINARY_FRAME",
    "CLOSE_PAYLOAD_NOT_DICT",
    "CLOSE_UNKNOWN_STREAM",
    "AsyncJsonWebsocketDemultiplexer",
    "StreamError",
    "read_stream_frame",
    "refuse_frame",
]

logger = logging.getLogger("headrace.multiplexer")


class StreamError(ValueError):
    """A client frame the demultiplexer refuses; ``code`` is the close code it answers with."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


CLOSE_BINARY_FRAME = 1003
CLOSE_BAD_JSON = 1007
CLOSE_BAD_FRAME = 4000
CLOSE_PAYLOAD_NOT_DICT = 4001
CLOSE_UNKNOWN_STREAM = 4002


async def read_stream_frame(
    consumer: AsyncJsonWebsocketConsumer, text_data: str | None, streams: Container[str]
) -> tuple[str, dict[str, Any]]:
    """``(stream, payload)`` of a client frame, or :class:`StreamError` with its close code."""
    if text_data is None:
        raise StreamError(CLOSE_BINARY_FRAME, "binary frames cannot be demultiplexed")
    try:
        frame = await consumer.decode_json(text_data)
    except ValueError:
        raise StreamError(CLOSE_BAD_JSON, "frame is not valid JSON") from None
    if not isinstance(frame, dict) or "stream" not in frame or "payload" not in frame:
        raise StreamError(CLOSE_BAD_FRAME, "invalid multiplexed frame (no stream/payload key)")
    name, payload = frame["stream"], frame["payload"]
    if not isinstance(payload, dict):
        raise StreamError(CLOSE_PAYLOAD_NOT_DICT, "multiplexed payload is not a dict")
    if not isinstance(name, str) or name not in streams:
        raise StreamError(CLOSE_UNKNOWN_STREAM, "invalid multiplexed frame (stream not mapped)")
    return name, payload


async def refuse_frame(consumer: AsyncJsonWebsocketConsumer, error: StreamError) -> None:
    """Log why a frame is refused and close the socket with its code and reason."""
    logger.warning(
        "closing multiplexed socket %s with %d: %s",
        consumer.scope.get("path", "?"),
        error.code,
        error.reason,
    )
    await consumer.close(code=error.code, reason=error.reason)


@dataclass
class _Stream:
    """One running application instance behind a stream name."""

    name: str
    inbox: asyncio.Queue[Message]
    task: asyncio.Task[None] | None = None
    open: bool = True
    done: asyncio.Event = field(default_factory=asyncio.Event)


class AsyncJsonWebsocketDemultiplexer(AsyncJsonWebsocketConsumer):
    """One JSON WebSocket carrying ``{"stream", "payload"}`` frames for independent consumers.

    ``applications = {"chat": ChatConsumer.as_asgi(), "items": BindingConsumer.as_asgi()}``."""

    applications: ClassVar[dict[str, ASGIApp]] = {}
    stream_queue_size: ClassVar[int] = 64
    stream_close_timeout: ClassVar[float] = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._streams: dict[str, _Stream] = {}
        self._closing = False
        self._background: set[asyncio.Future[None]] = set()

    # ------------------------------------------------------------------ the socket

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        if not self.applications:
            raise ValueError(f"{type(self).__name__}.applications is empty")
        await super().websocket_connect(message)

    async def connect(self) -> None:
        """Accept the socket and start every stream; override to authenticate first."""
        await self.accept()
        await self.start_streams()

    async def start_streams(self) -> None:
        """Start one instance per application and tell each ``websocket.connect``."""
        for name, application in self.applications.items():
            stream = _Stream(name, asyncio.Queue(self.stream_queue_size))
            self._streams[name] = stream
            await stream.inbox.put({"type": "websocket.connect"})
            stream.task = asyncio.create_task(self._run_stream(stream, application))

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        try:
            name, payload = await read_stream_frame(self, text_data, self.applications)
        except StreamError as error:
            if not self._closing:
                self._closing = True
                await refuse_frame(self, error)
            return
        await self.send_to_stream(name, payload)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        await self._stop_streams(message.get("code", 1005))
        await super().websocket_disconnect(message)

    # ------------------------------------------------------------------ client → streams

    async def send_to_stream(self, name: str, payload: dict[str, Any]) -> None:
        """Deliver ``payload`` to stream ``name`` as a ``websocket.receive``."""
        stream = self._streams.get(name)
        if stream is None or not stream.open:
            logger.warning("frame for closed stream %r dropped", name)
            return
        text = await self.encode_json(payload)
        await stream.inbox.put({"type": "websocket.receive", "text": text})

    # ------------------------------------------------------------------ streams → client

    async def _run_stream(self, stream: _Stream, application: ASGIApp) -> None:
        scope = {**self.scope, "stream": stream.name}

        async def send(message: Message) -> None:
            await self._from_stream(stream, message)

        try:
            await application(scope, stream.inbox.get, send)
        except (StopConsumer, asyncio.CancelledError):
            pass
        except Exception:
            logger.exception("stream %r crashed; closing that stream with 1011", stream.name)
            await self._close_stream(stream, 1011)
        finally:
            stream.open = False
            stream.done.set()

    async def _from_stream(self, stream: _Stream, message: Message) -> None:
        kind = message.get("type")
        if kind == "websocket.accept" or not stream.open:
            return
        if kind == "websocket.close":
            await self._close_stream(stream, message.get("code", 1000))
        elif kind == "websocket.send":
            await self._forward(stream, message)
        else:
            raise ValueError(f"stream {stream.name!r} sent an unsupported message {kind!r}")

    async def _forward(self, stream: _Stream, message: Message) -> None:
        text = message.get("text")
        if text is None:
            raise ValueError(f"stream {stream.name!r} sent a binary frame; streams carry JSON")
        payload = json.loads(text)
        await self.send_stream_frame(stream.name, payload)

    async def send_stream_frame(self, name: str, payload: Any) -> None:
        """Send ``{"stream": name, "payload": payload}`` to the client."""
        if not self._closing:
            await self.send_json({"stream": name, "payload": payload})

    async def _close_stream(self, stream: _Stream, code: int) -> None:
        if not stream.open:
            return
        stream.open = False
        self._background.add(
            asyncio.ensure_future(
                self._put_before(stream, {"type": "websocket.disconnect", "code": code})
            )
        )
        await self.send_stream_frame(stream.name, {"type": "stream.closed", "code": code})
        if not self._closing and not any(other.open for other in self._streams.values()):
            self._closing = True
            await self.close(code=1000)

    async def _stop_streams(self, code: int) -> None:
        self._closing = True
        for stream in self._streams.values():
            if stream.open:
                stream.open = False
                await self._put_before(stream, {"type": "websocket.disconnect", "code": code})
        tasks = [s.task for s in self._streams.values() if s.task is not None]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=self.stream_close_timeout)
        for task in pending:
            logger.warning("a stream did not stop within %ss; cancelled", self.stream_close_timeout)
            task.cancel()
        await asyncio.gather(*tasks, *self._background, return_exceptions=True)

    async def _put_before(self, stream: _Stream, message: Message) -> None:
        """Queue ``message`` unless the instance has finished (it would never read it)."""
        if stream.done.is_set():
            return
        put = asyncio.ensure_future(stream.inbox.put(message))
        finished = asyncio.ensure_future(stream.done.wait())
        await asyncio.wait([put, finished], return_when=asyncio.FIRST_COMPLETED)
        finished.cancel()
        if not put.done():
            put.cancel()
