"""One HTTP request through the channel layer, in Channels 1.x formats.

Theory of operation
-------------------
:class:`HttpBridge` handles one request (one ASGI instance):

1. ``new_channel("http.response")`` gives the reply channel (``http.response.<id>!<random>``).
2. The request body is read up to ``body_chunk_size`` bytes. If it ends by then, ONE
   ``http.request`` message carries it. Otherwise the message carries the first part as
   ``body`` plus ``body_channel`` (``http.request.body?<random>``), and the rest is streamed
   there as ``{content, closed, more_content}`` chunks while the worker reads them; a client
   that leaves mid-body gets a ``closed: True`` chunk. A full body channel is retried with
   back-off (the worker drains it); a full ``http.request`` channel answers 503 at once.
3. The bridge then waits on its reply channel: the first reply ``{status, headers, content,
   more_content}`` starts the response, chunks ``{content, more_content}`` continue it, and
   ``more_content`` false (the default) ends it. Each reply becomes ASGI events at once, so
   streamed chunks reach the client as they come.

A *client task* runs beside the wait: it feeds the body channel, then watches ``receive()``
for ``http.disconnect``. If the client leaves before the response ended it cancels the wait
(the backends never lose a message to a cancelled receive), and the bridge sends
``http.disconnect {reply_channel, path}`` so a worker can forget a stored reply channel
(long-poll). The same message goes out whenever the bridge gives up on a response the worker
did not finish: the ``http_timeout`` (503 if nothing was sent yet, else the response is cut
off), a bad reply (500 or cut off, logged) and the server cancelling the app (its own
``--http-timeout``, shutdown). Replies that arrive later sit unread in the layer until they
expire: dropped, never an error.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from headrace._types import Receive, Scope, Send
from headrace.exceptions import ChannelFull
from headrace.interface.messages import (
    BadReply,
    BridgeOwner,
    body_channel_names,
    check_keys,
    content_of,
    describe,
    http_request_message,
    response_headers,
)

__all__ = ["HttpBridge"]

logger = logging.getLogger("headrace.interface.http")

RESPONSE_KEYS = frozenset({"status", "headers", "content", "more_content"})
CHUNK_KEYS = frozenset({"content", "more_content"})
BODY_RETRY_FIRST = 0.005
BODY_RETRY_MAX = 0.5
_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]


class HttpBridge:
    """One request ↔ ``http.request`` / ``http.response`` messages (see module docs)."""

    __slots__ = (
        "app",
        "backend",
        "finished",
        "interrupted",
        "main",
        "receive",
        "reply_channel",
        "reported",
        "scope",
        "send",
        "started",
    )

    def __init__(self, app: BridgeOwner, scope: Scope, receive: Receive, send: Send):
        self.app = app
        self.backend = app.backend
        self.scope = scope
        self.receive = receive
        self.send = send
        self.reply_channel = ""
        self.started = False
        self.finished = False
        self.interrupted: str | None = None
        """Why the client task cancelled the wait: ``"gone"`` (client left) or ``"layer"``."""
        self.reported = False
        self.main: asyncio.Task[Any] | None = None

    async def run(self) -> None:
        try:
            self.reply_channel = await self.backend.new_channel("http.response")
        except Exception:  # a layer that is down raises its client's errors (redis-py's...)
            logger.exception("Cannot make a reply channel on the channel layer")
            await self._error(503, b"Service Unavailable\n")
            return
        body, rest, more = await self._read_first_part()
        if more is None:
            return  # the client left before the request was complete: nothing was sent yet
        message = http_request_message(self.scope, self.reply_channel, body)
        body_channel = None
        if more or rest:
            message["body_channel"], body_channel = body_channel_names()
        if not await self._send_request(message):
            return
        self.main = asyncio.current_task()
        loop = asyncio.get_running_loop()
        client = loop.create_task(self._follow_client(body_channel, rest, more))
        try:
            await self._relay()
        finally:
            client.cancel()

    # -- the request ------------------------------------------------------------------------

    async def _read_first_part(self) -> tuple[bytes, bytes, bool | None]:
        """(the first ``body_chunk_size`` bytes, the bytes read beyond them, whether the client
        sends more); ``None`` for the last when the client left first."""
        limit = self.app.body_chunk_size
        parts: list[bytes] = []
        size = 0
        while True:
            event = await self.receive()
            if event["type"] != "http.request":
                return b"", b"", None
            chunk = event.get("body", b"")
            if chunk:
                parts.append(chunk)
                size += len(chunk)
            more = bool(event.get("more_body", False))
            if not more or size > limit:
                data = parts[0] if len(parts) == 1 else b"".join(parts)
                if size <= limit:
                    return data, b"", more
                return data[:limit], data[limit:], more

    async def _send_request(self, message: dict[str, Any]) -> bool:
        try:
            await self.backend.send("http.request", message)
        except ChannelFull:
            logger.warning("http.request channel is full: answering 503")
            await self._error(503, b"Service Unavailable: request queue full\n")
            return False
        except Exception:
            logger.exception("Cannot send http.request to the channel layer")
            await self._error(503, b"Service Unavailable\n")
            return False
        return True

    async def _follow_client(self, body_channel: str | None, rest: bytes, more: bool) -> None:
        """Stream the rest of the body, then wait for the client to leave (see module docs)."""
        if body_channel is not None:
            try:
                streamed = await self._stream_body(body_channel, rest, more)
            except Exception:
                logger.exception("Cannot stream the request body to %s", body_channel)
                self._interrupt("layer")
                return
            if not streamed:
                self._interrupt("gone")
                return
        while True:
            event = await self.receive()
            if event["type"] == "http.disconnect":
                self._interrupt("gone")
                return

    async def _stream_body(self, channel: str, pending: bytes, more: bool) -> bool:
        """Send the body's remaining chunks; False when the client left mid-body."""
        limit = self.app.body_chunk_size
        buffer = bytearray(pending)
        while True:
            while len(buffer) > limit or (more and len(buffer) == limit):
                chunk = bytes(buffer[:limit])
                del buffer[:limit]
                await self._send_chunk(channel, {"content": chunk, "more_content": True})
            if not more:
                await self._send_chunk(channel, {"content": bytes(buffer)})
                return True
            event = await self.receive()
            if event["type"] != "http.request":
                await self._send_chunk(channel, {"closed": True})
                return False
            buffer += event.get("body", b"")
            more = bool(event.get("more_body", False))

    async def _send_chunk(self, channel: str, chunk: dict[str, Any]) -> None:
        message = {"content": b"", "closed": False, "more_content": False, **chunk}
        delay = BODY_RETRY_FIRST
        while True:
            try:
                await self.backend.send(channel, message)
                return
            except ChannelFull:
                await asyncio.sleep(delay)  # the worker is reading: back off, then try again
                delay = min(delay * 2, BODY_RETRY_MAX)

    def _interrupt(self, reason: str) -> None:
        if self.finished or self.main is None:
            return
        self.interrupted = reason
        self.main.cancel()

    # -- the response -----------------------------------------------------------------------

    async def _relay(self) -> None:
        try:
            async with asyncio.timeout(self.app.http_timeout):
                while not self.finished:
                    reply = await self.backend.receive(self.reply_channel)
                    await self._apply(reply)
        except TimeoutError:
            await self._timed_out()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self.interrupted is None or task is None or task.uncancel() > 0:
                await self._report_gone()  # the server cancelled us: its timeout or shutdown
                raise
            if self.interrupted == "layer":
                await self._give_up(503, b"Service Unavailable\n")
            await self._report_gone()

    async def _apply(self, reply: object) -> None:
        try:
            if not self.started:
                await self._start(check_keys(reply, RESPONSE_KEYS, "http.response"))
            else:
                await self._continue(check_keys(reply, CHUNK_KEYS, "http.response chunk"))
        except BadReply as exc:
            logger.error(
                "Bad reply on %s: %s (%s); dropped", self.reply_channel, exc, describe(reply)
            )
            await self._give_up(500, b"Internal Server Error\n")

    async def _start(self, reply: dict[str, Any]) -> None:
        status = reply.get("status")
        if type(status) is not int:
            raise BadReply(f"'status' must be an int, not {describe(status)}")
        headers = response_headers(reply.get("headers", []))
        content = content_of(reply)
        more = bool(reply.get("more_content", False))
        try:
            await self.send({"type": "http.response.start", "status": status, "headers": headers})
        except (RuntimeError, ValueError) as exc:
            raise BadReply(str(exc)) from None
        self.started = True
        self.finished = not more
        await self.send({"type": "http.response.body", "body": content, "more_body": more})

    async def _continue(self, reply: dict[str, Any]) -> None:
        content = content_of(reply)
        more = bool(reply.get("more_content", False))
        self.finished = not more
        await self.send({"type": "http.response.body", "body": content, "more_body": more})

    async def _timed_out(self) -> None:
        if not self.started:
            logger.warning(
                "No response on %s within %ss: answering 503",
                self.reply_channel,
                self.app.http_timeout,
            )
        await self._give_up(503, b"Service Unavailable: no worker answered in time\n")

    async def _give_up(self, status: int, body: bytes) -> None:
        """End an exchange the worker did not finish: an error page if nothing was sent yet,
        else the response is left unfinished (the server cuts it off)."""
        if not self.started:
            await self._error(status, body)
        else:
            logger.warning("Response on %s cut off after it had started", self.reply_channel)
        self.finished = True
        await self._report_gone()

    async def _error(self, status: int, body: bytes) -> None:
        self.started = True
        await self.send({"type": "http.response.start", "status": status, "headers": _TEXT})
        await self.send({"type": "http.response.body", "body": body})

    async def _report_gone(self) -> None:
        """Tell the workers this reply channel is dead (``http.disconnect``), once."""
        if self.reported:
            return
        self.reported = True
        message = {"reply_channel": self.reply_channel, "path": self.scope["path"]}
        try:
            await self.backend.send("http.disconnect", message)
        except Exception as exc:
            logger.debug("http.disconnect for %s not sent: %s", self.reply_channel, exc)
