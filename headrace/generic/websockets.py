"""Channels-1 WebSocket consumers: ``WebsocketConsumer``, ``JsonWebsocketConsumer``,
``WebsocketDemultiplexer`` and ``WebsocketMultiplexer``.

Theory of operation
-------------------
These are :class:`~headrace.generic.BaseConsumer` classes for the three 1.x WebSocket
channels. ``websocket.connect`` adds the reply channel to every group of
``connection_groups(**kwargs)`` and calls ``connect`` (which accepts by default);
``websocket.receive`` calls ``receive(text=...)`` or ``receive(bytes=...)``;
``websocket.disconnect`` leaves the groups and calls ``disconnect``. Sends go to the reply
channel (held until the consumer returns, as every 1.x send).

Class flags pick decorators in :meth:`WebsocketConsumer.get_handler`: ``http_user`` (the user
of the HTTP session on connect, then from the channel session), ``http_user_and_session``
(the same, keeping ``message.http_session`` on later messages), ``channel_session`` /
``channel_session_user``, and ``strict_ordering`` (``enforce_ordering``).

With ``group_recovery = True`` the connection recovers what the client missed in its groups
(all of them need history; the client reconnects with ``?positions=``, as for the modern
``headrace.generic.recovery``): on ``websocket.connect`` the consumer tells the interface server
to hold the groups' messages, joins (with ``connection_presence(**kwargs)`` as presence info),
runs ``connect``, then per group sends the recovery frame ``{"__recovery__": {...}}`` (here
*before* the missed messages, its ``offset`` being where the client resumes from), sends the
missed messages read from the history, and releases the hold: the interface server sorts and
deduplicates what it held by offset (headrace.interface.positions). With ``forward_presence``
the member list is sent first; presence events go to the client through the interface server.

The demultiplexer speaks the ``{"stream": name, "payload": {...}}`` frame: each stream maps
to a consumer class in ``consumers``, which is called with the message (its ``text`` set to
the payload's JSON) and a ``multiplexer`` keyword argument that sends frames of that stream
back. Connect and disconnect go to every stream's consumer. A frame without ``stream`` or
``payload``, with a payload that is not an object, or for an unmapped stream raises
``ValueError`` (logged by the worker; nothing reaches a consumer).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from headrace.auth import channel_and_http_session_user_from_http, channel_session_user_from_http
from headrace.channel import Channel, Group
from headrace.exceptions import HeadraceError
from headrace.generic.base import BaseConsumer, Handler
from headrace.generic.recovery import PRESENCE_KEY, RECOVERY_KEY, parse_positions
from headrace.layers.history import POSITION_KEY, Position
from headrace.sessions import channel_and_http_session, enforce_ordering, http_session

__all__ = [
    "JsonWebsocketConsumer",
    "SendNotAvailableOnDemultiplexer",
    "WebsocketConsumer",
    "WebsocketDemultiplexer",
    "WebsocketMultiplexer",
]


class SendNotAvailableOnDemultiplexer(HeadraceError):
    """A demultiplexer cannot send by itself: use the ``multiplexer`` its consumers get."""


def _frame(text: str | None, bytes: bytes | None, close: bool | int) -> dict[str, Any]:
    message: dict[str, Any] = {}
    if text is not None:
        message["text"] = text
    elif bytes is not None:
        message["bytes"] = bytes
    if close:
        message["close"] = close
    if not message:
        raise ValueError("Pass text or bytes to send (or close=True)")
    return message


class WebsocketConsumer(BaseConsumer):
    """Group membership, simple send and receive, and the session and ordering flags."""

    method_mapping: ClassVar[Mapping[str, str]] = {
        "websocket.connect": "raw_connect",
        "websocket.receive": "raw_receive",
        "websocket.disconnect": "raw_disconnect",
    }
    http_user: ClassVar[bool] = False
    http_user_and_session: ClassVar[bool] = False
    strict_ordering: ClassVar[bool] = False
    slight_ordering: ClassVar[bool] = False
    groups: ClassVar[Iterable[str] | None] = None
    group_recovery: ClassVar[bool] = False
    forward_presence: ClassVar[bool] = False

    path: str | None

    def get_handler(self, message: Any, **kwargs: Any) -> Handler:
        self.path = message.get("path")
        wants_http = self.http_user or self.http_user_and_session
        if wants_http:
            self.channel_session_user = True  # type: ignore[misc]  # per instance, as in 1.x
        handler = super().get_handler(message, **kwargs)
        if message.channel.name == "websocket.connect":
            if self.http_user_and_session:
                handler = channel_and_http_session_user_from_http(handler)
            elif self.http_user:
                handler = channel_session_user_from_http(handler)
        elif self.http_user_and_session:
            handler = channel_and_http_session(handler)
        elif self.http_user:
            handler = http_session(handler)
        if self.slight_ordering:
            raise ValueError(
                f"{type(self).__name__}.slight_ordering is gone: slight ordering is always on; "
                "remove it, or set strict_ordering = True"
            )
        if self.strict_ordering:
            return enforce_ordering(handler)  # type: ignore[no-any-return]
        return handler

    def connection_groups(self, **kwargs: Any) -> Iterable[str]:
        """The groups the connection joins on connect and leaves on disconnect."""
        return list(self.groups or ())

    @property
    def reply_channel(self) -> Channel:
        reply_channel: Channel | None = self.message.reply_channel
        if reply_channel is None:
            raise ValueError(f"The message on {self.message.channel.name!r} has no reply_channel")
        return reply_channel

    def connection_presence(self, **kwargs: Any) -> dict[str, Any] | None:
        """The presence info recorded for this connection in its groups (None: none)."""
        return None

    def raw_connect(self, message: Any, **kwargs: Any) -> None:
        if self.group_recovery:
            self._connect_with_recovery(message, list(self.connection_groups(**kwargs)), kwargs)
            return
        for group in self.connection_groups(**kwargs):
            Group(group, channel_layer=message.channel_layer).add(message.reply_channel)
        self.connect(message, **kwargs)

    def _connect_with_recovery(
        self, message: Any, groups: list[str], kwargs: dict[str, Any]
    ) -> None:
        layer, reply = message.channel_layer, message.reply_channel
        positions = parse_positions(message.content.get("query_string") or b"")
        fresh = {group for group in groups if group not in positions}
        for group in fresh:  # where a client without a position starts: read before joining
            start = layer.group_history(group, limit=0)
            positions[group] = Position(start.epoch, start.offset)
        reply.send({"recovery": "hold"})  # the first reply: see headrace.interface.positions
        info = self.connection_presence(**kwargs)
        for group in groups:
            layer.group_add(group, reply.name, info)
        self.connect(message, **kwargs)
        release: dict[str, int] = {}
        for group in groups:
            if self.forward_presence:
                members = {"group": group, "event": "members"}
                members["members"] = layer.group_presence(group)
                reply.send({"text": json.dumps({PRESENCE_KEY: members})})
            epoch, offset = self._send_missed(layer, group, positions[group], group in fresh)
            release[epoch] = offset
        reply.send({"recovery": release})

    def _send_missed(self, layer: Any, group: str, since: Position, fresh: bool) -> tuple[str, int]:
        """Send the recovery frame and the messages after ``since``; (epoch, resume offset)."""
        history = layer.group_history(group, since=since)
        offset = since.offset if history.recovered else history.offset
        recovered = None if fresh else history.recovered
        frame = {"group": group, "epoch": history.epoch, "offset": offset}
        frame["recovered"] = recovered
        self.reply_channel.send({"text": json.dumps({RECOVERY_KEY: frame})})
        if history.recovered:
            for position, missed in history.messages:
                self.reply_channel.send({**missed, POSITION_KEY: [history.epoch, position]})
        return history.epoch, offset

    def connect(self, message: Any, **kwargs: Any) -> None:
        """Called on connect; accepts the connection unless overridden."""
        self.reply_channel.send({"accept": True})

    def raw_receive(self, message: Any, **kwargs: Any) -> None:
        if message.get("text") is not None:
            self.receive(text=message["text"], **kwargs)
        else:
            self.receive(bytes=message.get("bytes"), **kwargs)

    def receive(self, text: str | None = None, bytes: bytes | None = None, **kwargs: Any) -> None:
        """Called with each frame's ``text`` or ``bytes``."""

    def send(self, text: str | None = None, bytes: bytes | None = None, close: Any = False) -> None:
        """Send a frame (and/or close) to this connection."""
        self.reply_channel.send(_frame(text, bytes, close))

    @classmethod
    def group_send(
        cls, name: str, text: str | None = None, bytes: bytes | None = None, close: Any = False
    ) -> None:
        """Send a frame (and/or close) to every connection in group ``name``."""
        Group(name).send(_frame(text, bytes, close))

    def close(self, status: bool | int = True) -> None:
        """Close the connection (``True`` is code 1000)."""
        self.reply_channel.send({"close": status})

    def raw_disconnect(self, message: Any, **kwargs: Any) -> None:
        for group in self.connection_groups(**kwargs):
            Group(group, channel_layer=message.channel_layer).discard(message.reply_channel)
        self.disconnect(message, **kwargs)

    def disconnect(self, message: Any, **kwargs: Any) -> None:
        """Called when the connection closed."""


class JsonWebsocketConsumer(WebsocketConsumer):
    """A ``WebsocketConsumer`` of JSON text frames: ``receive(content)``, ``send(content)``."""

    def raw_receive(self, message: Any, **kwargs: Any) -> None:
        text = message.get("text")
        if text is None:
            raise ValueError(f"{type(self).__name__} got a binary frame; it takes JSON text")
        self.receive(self.decode_json(text), **kwargs)

    def receive(self, content: Any = None, **kwargs: Any) -> None:  # type: ignore[override]
        """Called with each frame's decoded JSON."""

    def send(self, content: Any, close: Any = False) -> None:  # type: ignore[override]
        super().send(text=self.encode_json(content), close=close)

    @classmethod
    def decode_json(cls, text: str) -> Any:
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ValueError(f"{cls.__name__} got a frame that is not JSON: {exc}") from None

    @classmethod
    def encode_json(cls, content: Any) -> str:
        return json.dumps(content)

    @classmethod
    def group_send(cls, name: str, content: Any, close: Any = False) -> None:  # type: ignore[override]
        WebsocketConsumer.group_send(name, cls.encode_json(content), close=close)


class WebsocketMultiplexer:
    """Sends frames of one ``stream`` to one connection (given to stream consumers)."""

    def __init__(self, stream: str, reply_channel: Channel) -> None:
        self.stream = stream
        self.reply_channel = reply_channel

    def send(self, payload: Any) -> None:
        self.reply_channel.send(self.encode(self.stream, payload))

    @classmethod
    def encode_json(cls, content: Any) -> str:
        from django.core.serializers.json import DjangoJSONEncoder

        return json.dumps(content, cls=DjangoJSONEncoder)

    @classmethod
    def encode(cls, stream: str, payload: Any) -> dict[str, Any]:
        """The message carrying ``{"stream": stream, "payload": payload}`` as a text frame."""
        return {"text": cls.encode_json({"stream": stream, "payload": payload})}

    @classmethod
    def group_send(cls, name: str, stream: str, payload: Any, close: bool = False) -> None:
        message = cls.encode(stream, payload)
        if close:
            message["close"] = True
        Group(name).send(message)


class WebsocketDemultiplexer(JsonWebsocketConsumer):
    """Routes ``{"stream", "payload"}`` frames to the consumer class of each stream."""

    consumers: ClassVar[Mapping[str, Any]] = {}
    multiplexer_class: ClassVar[type[WebsocketMultiplexer]] = WebsocketMultiplexer

    def _multiplexer(self, stream: str) -> WebsocketMultiplexer:
        return self.multiplexer_class(stream, self.reply_channel)

    def connect(self, message: Any, **kwargs: Any) -> None:
        self.reply_channel.send({"accept": True})
        for stream, consumer in self.consumers.items():
            consumer(message, **dict(kwargs, multiplexer=self._multiplexer(stream)))

    def receive(self, content: Any = None, **kwargs: Any) -> None:  # type: ignore[override]
        if not isinstance(content, dict) or "stream" not in content or "payload" not in content:
            raise ValueError("Invalid multiplexed frame received (no stream/payload key)")
        stream, payload = content["stream"], content["payload"]
        if not isinstance(payload, dict):
            raise ValueError("Multiplexed frame payload is not a dict")
        if not isinstance(stream, str) or stream not in self.consumers:
            raise ValueError(f"Invalid multiplexed frame received (stream {stream!r} not mapped)")
        self.message.content["text"] = self.encode_json(payload)
        self.consumers[stream](self.message, **dict(kwargs, multiplexer=self._multiplexer(stream)))

    def disconnect(self, message: Any, **kwargs: Any) -> None:
        for stream, consumer in self.consumers.items():
            consumer(message, **dict(kwargs, multiplexer=self._multiplexer(stream)))

    def send(self, *args: Any, **kwargs: Any) -> None:
        raise SendNotAvailableOnDemultiplexer(
            "A demultiplexer cannot send: use the multiplexer its consumers get"
        )

    @classmethod
    def group_send(cls, *args: Any, **kwargs: Any) -> None:
        raise SendNotAvailableOnDemultiplexer(
            "A demultiplexer cannot send to a group: use WebsocketMultiplexer.group_send"
        )

    @classmethod
    def encode(cls, stream: str, payload: Any) -> dict[str, Any]:
        """The ``{"stream", "payload"}`` text frame (the multiplexer class's encoding)."""
        return cls.multiplexer_class.encode(stream, payload)
