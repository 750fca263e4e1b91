"""One WebSocket connection through the channel layer, in Channels 1.x formats.

Theory of operation
-------------------
:class:`WebSocketBridge` handles one connection (one ASGI instance) with two coroutines:

* the **client side** (the instance's own task) sends ``websocket.connect`` (``order`` 0) when
  the handshake arrives, one ``websocket.receive`` per client message (``order`` 1, 2, ...;
  exactly one of ``text`` / ``bytes``, the other ``None``) and finally ``websocket.disconnect``
  (``code``, ``order`` one past the last message);
* the **reply reader** (one task per connection) receives the reply channel
  (``websocket.send.<id>!<random>``) one message at a time and applies each reply.

A reply is a dict of ``accept`` / ``text`` / ``bytes`` / ``close`` (plus ``subprotocol`` with
``accept``, a headrace extension), applied in Daphne 1.x's order: ``accept: True`` accepts;
``accept: False`` during the handshake rejects (HTTP 403) and ends the reply; ``bytes`` or
``text`` is sent (before the handshake finished, this accepts implicitly); ``close`` (``True``
= 1000, or a code) closes, or rejects with 403 during the handshake. ``accept: False`` on an
open socket closes it with 4403.

Back-pressure and errors: a full ``websocket.connect`` channel answers the handshake with HTTP
503; a full ``websocket.receive`` channel closes the socket with 1013 (try again later) and
later client messages are not forwarded. A bad reply (not a dict, unknown keys, both ``text``
and ``bytes``, wrong types, a close code that may not be sent) is logged and dropped, and the
client gets a 500 (during the handshake) or a 1011 close; the reader stops there. A reply for
a socket that is already closing or closed is dropped quietly.

Group messages with a position (groups with history), the ``recovery`` control replies of a
recovering 1.x consumer and the layer's presence events go through
:class:`~headrace.interface.positions.PositionedReplies` (made on the first one), which stamps,
holds, orders and deduplicates them (see that module).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from headrace._types import Message, Receive, Scope, Send
from headrace.exceptions import ChannelFull
from headrace.interface.messages import (
    BadReply,
    BridgeOwner,
    check_keys,
    describe,
    websocket_connect_message,
)
from headrace.interface.positions import PositionedReplies, is_special, wants_positions

__all__ = ["WebSocketBridge"]

logger = logging.getLogger("headrace.interface.websocket")

REPLY_KEYS = frozenset({"accept", "text", "bytes", "close", "subprotocol"})
CLOSE_NORMAL = 1000
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_REJECTED_AFTER_OPEN = 4403

CONNECTING, OPEN, CLOSED = 0, 1, 2


class WebSocketBridge:
    """One WebSocket ↔ ``websocket.*`` messages (see module docs)."""

    __slots__ = (
        "backend",
        "muted",
        "path",
        "phase",
        "positions",
        "receive",
        "reply_channel",
        "scope",
        "send",
    )

    def __init__(self, app: BridgeOwner, scope: Scope, receive: Receive, send: Send):
        self.backend = app.backend
        self.scope = scope
        self.receive = receive
        self.send = send
        self.path: str = scope["path"]
        self.reply_channel = ""
        self.phase = CONNECTING
        self.muted = False
        self.positions: PositionedReplies | None = None

    async def run(self) -> None:
        event = await self.receive()
        if event["type"] != "websocket.connect":
            return
        try:
            self.reply_channel = await self.backend.new_channel("websocket.send")
        except Exception:  # a layer that is down raises its client's errors (redis-py's...)
            logger.exception("Cannot make a reply channel on the channel layer")
            await self._deny(503, b"Service Unavailable\n")
            return
        if wants_positions(self.scope.get("query_string", b"")):
            self.positions = PositionedReplies(hold_from_start=True)
        if not await self._send_connect():
            return
        reader = asyncio.get_running_loop().create_task(self._read_replies())
        try:
            await self._forward_client()
        finally:
            reader.cancel()  # its receive() gives up its place; a reply after this is dropped

    # -- client → layer ---------------------------------------------------------------------

    async def _send_connect(self) -> bool:
        message = websocket_connect_message(self.scope, self.reply_channel)
        try:
            await self.backend.send("websocket.connect", message)
        except ChannelFull:
            logger.warning("websocket.connect channel is full: answering 503")
            await self._deny(503, b"Service Unavailable: connection queue full\n")
            return False
        except Exception:
            logger.exception("Cannot send websocket.connect to the channel layer")
            await self._deny(503, b"Service Unavailable\n")
            return False
        return True

    async def _forward_client(self) -> None:
        order = 0
        backend = self.backend
        while True:
            event = await self.receive()
            kind = event["type"]
            if kind == "websocket.receive":
                if self.muted:
                    continue
                order += 1
                text = event.get("text")
                message = {
                    "reply_channel": self.reply_channel,
                    "path": self.path,
                    "order": order,
                    "text": text,
                    "bytes": event.get("bytes") if text is None else None,
                }
                try:
                    await backend.send("websocket.receive", message)
                except Exception as exc:  # ChannelFull, or a layer that is down
                    await self._receive_refused(exc)
            elif kind == "websocket.disconnect":
                self.phase = CLOSED
                await self._send_disconnect(event.get("code", 1005), order + 1)
                return

    async def _receive_refused(self, error: Exception) -> None:
        self.muted = True
        logger.warning(
            "websocket.receive not accepted by the channel layer (%s): closing %s with 1013",
            error,
            self.reply_channel,
        )
        await self._send_quietly({"type": "websocket.close", "code": CLOSE_TRY_AGAIN_LATER})

    async def _send_disconnect(self, code: int, order: int) -> None:
        message = {"reply_channel": self.reply_channel, "code": code, "path": self.path}
        message["order"] = order
        try:
            await self.backend.send("websocket.disconnect", message)
        except Exception as exc:
            logger.warning("websocket.disconnect for %s not sent: %s", self.reply_channel, exc)

    # -- layer → client ---------------------------------------------------------------------

    async def _read_replies(self) -> None:
        backend, channel = self.backend, self.reply_channel
        while self.phase != CLOSED:
            reply = await backend.receive(channel)
            try:
                if isinstance(reply, dict) and (self.positions is not None or is_special(reply)):
                    await self._apply_special(reply)
                    continue
                await self._apply(check_keys(reply, REPLY_KEYS, "WebSocket reply"))
            except BadReply as exc:
                logger.error("Bad reply on %s: %s (%s); dropped", channel, exc, describe(reply))
                await self._fail()
                return

    async def _apply_special(self, reply: dict[str, Any]) -> None:
        positions = self.positions
        if positions is None:
            positions = self.positions = PositionedReplies()
        elif not positions.provisional and not is_special(reply):
            await self._apply(check_keys(reply, REPLY_KEYS, "WebSocket reply"))
            return
        for ready in positions.admit(reply):
            await self._apply(check_keys(ready, REPLY_KEYS, "WebSocket reply"))

    async def _apply(self, reply: dict[str, Any]) -> None:
        text, data = reply.get("text"), reply.get("bytes")
        if text is not None and data is not None:
            raise BadReply("a reply carries 'text' or 'bytes', not both")
        if text is not None and not isinstance(text, str):
            raise BadReply(f"'text' must be a str, not {type(text).__name__}")
        if data is not None and not isinstance(data, bytes | bytearray):
            raise BadReply(f"'bytes' must be bytes, not {type(data).__name__}")
        close = _close_code(reply.get("close", False))
        accept = reply.get("accept")
        if accept is not None and not isinstance(accept, bool):
            raise BadReply(f"'accept' must be True or False, not {describe(accept)}")
        if accept is True:
            await self._accept(reply.get("subprotocol"))
        elif accept is False:
            await self._reject()
            return
        if text is not None or data is not None:
            await self._send_data(text, data)
        if close is not None:
            await self._close(close)

    async def _accept(self, subprotocol: object) -> None:
        if subprotocol is not None and not isinstance(subprotocol, str):
            raise BadReply(f"'subprotocol' must be a str, not {type(subprotocol).__name__}")
        if self.phase == CONNECTING:
            self.phase = OPEN
            await self._send_quietly({"type": "websocket.accept", "subprotocol": subprotocol})

    async def _reject(self) -> None:
        if self.phase == CONNECTING:
            self.phase = CLOSED
            await self._send_quietly({"type": "websocket.close"})  # before accept: HTTP 403
        elif self.phase == OPEN:
            await self._send_quietly({"type": "websocket.close", "code": CLOSE_REJECTED_AFTER_OPEN})

    async def _send_data(self, text: str | None, data: bytes | bytearray | None) -> None:
        if self.phase == CONNECTING:
            await self._accept(None)
        message: Message = {"type": "websocket.send"}
        if text is not None:
            message["text"] = text
        else:
            message["bytes"] = bytes(data or b"")
        await self._send_quietly(message)

    async def _close(self, code: int) -> None:
        if self.phase == CONNECTING:
            self.phase = CLOSED
            await self._send_quietly({"type": "websocket.close"})  # before accept: HTTP 403
            return
        try:
            await self._send_quietly({"type": "websocket.close", "code": code})
        except ValueError as exc:
            raise BadReply(str(exc)) from None

    async def _fail(self) -> None:
        """The answer to a bad reply: 500 during the handshake, else close 1011."""
        if self.phase == CONNECTING:
            await self._deny(500, b"Internal Server Error\n")
        else:
            await self._send_quietly({"type": "websocket.close", "code": CLOSE_INTERNAL_ERROR})

    async def _deny(self, status: int, body: bytes) -> None:
        """Answer the handshake with an HTTP error (the WebSocket denial response); a server
        without it gets a plain close, which it answers with 403."""
        headers = [(b"content-type", b"text/plain; charset=utf-8")]
        try:
            await self.send(
                {"type": "websocket.http.response.start", "status": status, "headers": headers}
            )
        except RuntimeError:
            await self._send_quietly({"type": "websocket.close"})
            return
        await self._send_quietly({"type": "websocket.http.response.body", "body": body})

    async def _send_quietly(self, message: Message) -> None:
        """ASGI send that drops the message when the socket is already gone."""
        try:
            await self.send(message)
        except OSError as exc:
            logger.debug("Reply for closed WebSocket %s dropped: %s", self.reply_channel, exc)


def _close_code(value: object) -> int | None:
    """A reply's ``close`` value as a close code (``True`` → 1000), or ``None`` for none."""
    if value is None or value is False:
        return None
    if value is True:
        return CLOSE_NORMAL
    if isinstance(value, int) and 1000 <= value <= 4999:
        return value
    raise BadReply(f"'close' must be True, False or a close code, not {describe(value)}")
