"""The consumers of the Channels 1.x manual, section by section, on headrace.

Each block says which manual section it ports; the code is what a 1.1 project has after
replacing ``channels`` with ``headrace`` in its imports.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpResponse

from headrace import Channel, Group
from headrace.auth import channel_session_user, channel_session_user_from_http
from headrace.generic.websockets import (
    JsonWebsocketConsumer,
    WebsocketConsumer,
    WebsocketDemultiplexer,
)
from headrace.handler import AsgiHandler
from headrace.security.websockets import allowed_hosts_only
from headrace.sessions import channel_session, enforce_ordering

from .models import ChatMessage

# ---------------------------------------------------------------- Getting Started


def ws_echo(message: Any) -> None:
    message.reply_channel.send({"text": message.content["text"]})


def ws_add(message: Any) -> None:
    message.reply_channel.send({"accept": True})
    Group("chat").add(message.reply_channel)


def ws_message(message: Any) -> None:
    Group("chat").send({"text": "[user] {}".format(message.content["text"])})


def ws_disconnect(message: Any) -> None:
    Group("chat").discard(message.reply_channel)


# ---------------------------------------------------------------- Authentication


def _letter_group(message: Any) -> Group:
    name = message.user.username if message.user.is_authenticated else ""
    return Group("chat-%s" % (name[:1].lower() or "anonymous"))


@allowed_hosts_only
@channel_session_user_from_http
def letters_add(message: Any) -> None:
    message.reply_channel.send({"accept": True})
    _letter_group(message).add(message.reply_channel)


@channel_session_user
def letters_message(message: Any) -> None:
    who = message.user.username if message.user.is_authenticated else "anonymous"
    _letter_group(message).send({"text": f"{who}: {message['text']}"})


@channel_session_user
def letters_disconnect(message: Any) -> None:
    _letter_group(message).discard(message.reply_channel)


# ---------------------------------------------------------------- Routing and Models


def msg_consumer(message: Any) -> None:
    """Consumes ``chat-messages``: save, then broadcast to the room."""
    room = message.content["room"]
    saved = ChatMessage.objects.create(
        room=room, message=message.content["message"], user=message.content.get("user", "")
    )
    Group(f"room-{room}").send(
        {"text": json.dumps({"room": room, "message": saved.message, "user": saved.user})}
    )


@channel_session_user_from_http
def room_connect(message: Any, room: str) -> None:
    message.channel_session["room"] = room
    Group(f"room-{room}").add(message.reply_channel)
    message.reply_channel.send({"accept": True})


@channel_session_user
def room_message(message: Any) -> None:
    user = message.user.username if message.user.is_authenticated else ""
    Channel("chat-messages").send(
        {"room": message.channel_session["room"], "message": message["text"], "user": user}
    )


@channel_session
def room_disconnect(message: Any) -> None:
    Group("room-{}".format(message.channel_session["room"])).discard(message.reply_channel)


# ---------------------------------------------------------------- Enforcing Ordering


@channel_session_user_from_http
def ordered_add(message: Any) -> None:
    message.channel_session["sent"] = 0
    message.reply_channel.send({"accept": True})


@enforce_ordering
@channel_session_user
def ordered_message(message: Any) -> None:
    message.channel_session["sent"] = message.channel_session["sent"] + 1
    message.reply_channel.send(
        {"text": "{}: {}".format(message.channel_session["sent"], message["text"])}
    )


# ---------------------------------------------------------------- Generic Consumers


class EchoServer(WebsocketConsumer):
    """The manual's ``MyConsumer``: echoes, and joins the ``generic`` group."""

    strict_ordering = True

    def connection_groups(self, **kwargs: Any) -> list[str]:
        return ["generic"]

    def receive(self, text: str | None = None, bytes: bytes | None = None, **kwargs: Any) -> None:
        self.send(text=text, bytes=bytes)


class JsonEcho(JsonWebsocketConsumer):
    http_user = True

    def receive(self, content: Any = None, **kwargs: Any) -> None:
        user = self.message.user
        self.send({"echo": content, "user": user.username if user.is_authenticated else None})


class EchoConsumer(JsonWebsocketConsumer):
    def connect(self, message: Any, multiplexer: Any = None, **kwargs: Any) -> None:
        multiplexer.send({"status": "I just connected!"})

    def disconnect(self, message: Any, multiplexer: Any = None, **kwargs: Any) -> None:
        Channel("stream-closed").send({"stream": multiplexer.stream})

    def receive(self, content: Any = None, multiplexer: Any = None, **kwargs: Any) -> None:
        multiplexer.send({"original_message": content})


class AnotherConsumer(JsonWebsocketConsumer):
    def connect(self, message: Any, multiplexer: Any = None, **kwargs: Any) -> None:
        pass

    def receive(self, content: Any = None, multiplexer: Any = None, **kwargs: Any) -> None:
        multiplexer.send({"length": len(json.dumps(content))})


class Demultiplexer(WebsocketDemultiplexer):
    consumers = {"echo": EchoConsumer, "other": AnotherConsumer}


# ---------------------------------------------------------------- HTTP through routing


def poll_consumer(message: Any) -> None:
    """``POST /poll/`` answered by a consumer instead of a view (Routing: filters)."""
    response = HttpResponse(f"polled {len(message.content.get('body') or b'')} bytes")
    for chunk in AsgiHandler.encode_response(response):
        message.reply_channel.send(chunk)
