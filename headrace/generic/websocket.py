"""WebSocket consumers: connect/receive/disconnect hooks, groups, JSON.

Theory of operation
-------------------
:class:`_WebsocketLogic` holds the whole protocol once, as coroutines: joining ``groups`` on
connect, turning ``AcceptConnection``/``DenyConnection`` into accept/close, splitting frames
into ``text_data``/``bytes_data``, leaving groups and stopping on disconnect (and leaving them
too when a handler crashes first), and the
``websocket.accept``/``send``/``close`` messages. It calls the user's hooks (``connect``,
``receive``, ``disconnect``, ``receive_json``, ``encode_json``, ``decode_json``) through
``_invoke``, which awaits ``async def`` hooks and runs plain ones in asgiref's executor.

The four public classes only choose a face:

* :class:`AsyncWebsocketConsumer` / :class:`AsyncJsonWebsocketConsumer` expose the coroutines;
* :class:`WebsocketConsumer` / :class:`JsonWebsocketConsumer` expose the same coroutines wrapped
  by :func:`~headrace.consumer.blocking`, so user code in the handler thread calls
  ``self.accept()`` or ``self.send_json(...)`` as plain functions, and their default hooks are
  plain functions.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

from headrace._types import Receive, Scope, Send
from headrace.consumer import AsyncConsumer, SyncConsumer, blocking
from headrace.exceptions import (
    AcceptConnection,
    DenyConnection,
    InvalidChannelLayerError,
    StopConsumer,
)
from headrace.layers import BaseChannelLayer

__all__ = [
    "AsyncJsonWebsocketConsumer",
    "AsyncWebsocketConsumer",
    "JsonWebsocketConsumer",
    "WebsocketConsumer",
]

Headers = list[tuple[bytes, bytes]] | list[list[bytes]]


class _WebsocketLogic(AsyncConsumer):
    """The WebSocket protocol as coroutines; the public classes expose it async or blocking."""

    groups: list[str] | None = None

    # Hooks the public classes define (as coroutines or plain functions); called via _invoke.
    connect: Callable[[], Any]
    receive: Callable[..., Any]
    disconnect: Callable[[int], Any]
    receive_json: Callable[..., Any]
    decode_json: Callable[[str], Any]
    encode_json: Callable[[Any], Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.groups is None:
            self.groups = []
        self._in_groups = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if getattr(self, "_in_groups", False):
                # A handler crashed before websocket.disconnect: leave ``groups`` anyway, so
                # group messages stop going to a channel nobody reads (Channels keeps the
                # memberships until group_expiry).
                with contextlib.suppress(Exception):
                    await self._leave_groups()

    def _group_layer(self) -> BaseChannelLayer:
        layer: BaseChannelLayer | None = getattr(self, "channel_layer", None)
        if layer is None or "groups" not in getattr(layer, "extensions", ["groups"]):
            raise InvalidChannelLayerError(
                f"{type(self).__name__}.groups is set but the channel layer "
                f"{self.channel_layer_alias!r} is unconfigured or doesn't support groups"
            )
        return layer

    async def _join_groups(self) -> None:
        if self.groups:
            layer = self._group_layer()
            self._in_groups = True
            for group in self.groups:
                await layer.group_add(group, self.channel_name)

    async def _leave_groups(self) -> None:
        if self.groups:
            layer = self._group_layer()
            self._in_groups = False
            for group in self.groups:
                await layer.group_discard(group, self.channel_name)

    async def _websocket_connect(self, /, message: dict[str, Any]) -> None:
        await self._join_groups()
        try:
            await self._invoke(self.connect)
        except AcceptConnection:
            await self._accept()
        except DenyConnection:
            await self._close()

    async def _websocket_receive(self, /, message: dict[str, Any]) -> None:
        if message.get("text") is not None:
            await self._invoke(self.receive, text_data=message["text"])
        else:
            await self._invoke(self.receive, bytes_data=message.get("bytes"))

    async def _websocket_disconnect(self, /, message: dict[str, Any]) -> None:
        await self._leave_groups()
        await self._invoke(self.disconnect, message.get("code", 1005))
        raise StopConsumer()

    async def _accept(
        self, /, subprotocol: str | None = None, headers: Headers | None = None
    ) -> None:
        message: dict[str, Any] = {"type": "websocket.accept", "subprotocol": subprotocol}
        if headers:
            message["headers"] = list(headers)
        await self.base_send(message)

    async def _send(
        self,
        /,
        text_data: str | None = None,
        bytes_data: bytes | None = None,
        close: bool | int = False,
    ) -> None:
        if text_data is not None:
            await self.base_send({"type": "websocket.send", "text": text_data})
        elif bytes_data is not None:
            await self.base_send({"type": "websocket.send", "bytes": bytes_data})
        else:
            raise ValueError("You must pass one of bytes_data or text_data")
        if close:
            await self._close(close)

    async def _close(self, /, code: int | bool | None = None, reason: str | None = None) -> None:
        message: dict[str, Any] = {"type": "websocket.close"}
        if code is not None and code is not True and code is not False:
            message["code"] = code
        if reason:
            message["reason"] = reason
        await self.base_send(message)

    async def _json_receive(
        self, /, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        if not text_data:
            raise ValueError("No text section for incoming WebSocket frame!")
        content = await self._invoke(self.decode_json, text_data)
        await self._invoke(self.receive_json, content, **kwargs)

    async def _send_json(self, /, content: Any, close: bool | int = False) -> None:
        text = await self._invoke(self.encode_json, content)
        await self._send(text_data=text, close=close)


_blocking_send = blocking(_WebsocketLogic._send)
_blocking_json_receive = blocking(_WebsocketLogic._json_receive)


class AsyncWebsocketConsumer(_WebsocketLogic):
    """WebSocket consumer with ``async def`` hooks: connect, receive, disconnect."""

    websocket_connect = _WebsocketLogic._websocket_connect
    websocket_receive = _WebsocketLogic._websocket_receive
    websocket_disconnect = _WebsocketLogic._websocket_disconnect
    accept = _WebsocketLogic._accept
    send = _WebsocketLogic._send  # type: ignore[assignment]
    close = _WebsocketLogic._close

    async def connect(self) -> None:
        """Called on ``websocket.connect``; accepts by default."""
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Called with each frame from the client."""

    async def disconnect(self, code: int) -> None:
        """Called once the socket is closed (groups are already left)."""


class AsyncJsonWebsocketConsumer(AsyncWebsocketConsumer):
    """Async WebSocket consumer that decodes text frames as JSON (``receive_json``) and encodes
    with ``send_json``; override ``encode_json``/``decode_json`` for other codecs."""

    receive = _WebsocketLogic._json_receive
    send_json = _WebsocketLogic._send_json

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Called with the decoded JSON of each text frame."""

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        return json.loads(text_data)

    @classmethod
    async def encode_json(cls, content: Any) -> str:
        return json.dumps(content)


class WebsocketConsumer(_WebsocketLogic, SyncConsumer):
    """WebSocket consumer with plain-function hooks run in a worker thread."""

    websocket_connect = blocking(_WebsocketLogic._websocket_connect)
    websocket_receive = blocking(_WebsocketLogic._websocket_receive)
    websocket_disconnect = blocking(_WebsocketLogic._websocket_disconnect)
    accept = blocking(_WebsocketLogic._accept)
    send = _blocking_send  # type: ignore[assignment]
    close = blocking(_WebsocketLogic._close)

    def connect(self) -> None:
        """Called on ``websocket.connect``; accepts by default."""
        self.accept()

    def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Called with each frame from the client."""

    def disconnect(self, code: int) -> None:
        """Called once the socket is closed (groups are already left)."""


class JsonWebsocketConsumer(WebsocketConsumer):
    """Sync WebSocket consumer that speaks JSON (``receive_json`` / ``send_json``)."""

    receive = _blocking_json_receive
    send_json = blocking(_WebsocketLogic._send_json)

    def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Called with the decoded JSON of each text frame."""

    @classmethod
    def decode_json(cls, text_data: str) -> Any:
        return json.loads(text_data)

    @classmethod
    def encode_json(cls, content: Any) -> str:
        return json.dumps(content)
