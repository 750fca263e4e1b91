"""Consumers the Channels-1 API tests route to."""

from __future__ import annotations

from typing import Any

from headrace import Channel, Group
from headrace.auth import (
    channel_and_http_session_user_from_http,
    channel_session_user,
    channel_session_user_from_http,
    http_session_user,
)
from headrace.exceptions import ConsumeLater
from headrace.generic import BaseConsumer
from headrace.generic.websockets import (
    JsonWebsocketConsumer,
    WebsocketConsumer,
    WebsocketDemultiplexer,
)
from headrace.routing import route
from headrace.sessions import channel_and_http_session, channel_session, enforce_ordering


def square(message: Any) -> None:
    Channel("result").send({"value": message["value"] ** 2})


@channel_session
def remember_room(message: Any) -> None:
    message.channel_session["room"] = message["path"].strip("/").split("/")[-1]
    message.reply_channel.send({"accept": True})


@channel_session
def say_room(message: Any) -> None:
    message.reply_channel.send({"text": message.channel_session.get("room", "<none>")})


@enforce_ordering
def ordered_echo(message: Any) -> None:
    seen = message.channel_session.get("seen", [])
    seen.append(message["text"])
    message.channel_session["seen"] = seen
    message.reply_channel.send({"text": ",".join(seen)})


@channel_session_user_from_http
def user_connect(message: Any) -> None:
    message.reply_channel.send({"accept": True})
    Group(f"user-{message.user.username or 'anonymous'}").add(message.reply_channel)


@channel_session_user
def user_receive(message: Any) -> None:
    message.reply_channel.send({"text": message.user.username or "anonymous"})


@http_session_user
def http_user_view(message: Any) -> None:
    message.reply_channel.send(
        {"text": f"{message.user.username or 'anonymous'}|{message.http_session is not None}"}
    )


@channel_and_http_session
def both_sessions(message: Any) -> None:
    colour = message.http_session.get("colour") if message.http_session is not None else None
    message.reply_channel.send({"text": str(colour)})


@channel_and_http_session_user_from_http
def both_with_user(message: Any) -> None:
    message.reply_channel.send({"accept": True})
    message.reply_channel.send({"text": message.user.username or "anonymous"})


ATTEMPTS: list[int] = []


def later_once(message: Any) -> None:
    """Asks to be run later the first time it sees a message; sends a reply it must not."""
    message.reply_channel.send({"text": "held, then discarded"})
    if message.get("__retries__", 0) < 1:
        ATTEMPTS.append(0)
        raise ConsumeLater()
    ATTEMPTS.append(message["__retries__"])
    message.reply_channel.send({"text": f"done after {message['__retries__']}"})


def always_later(message: Any) -> None:
    raise ConsumeLater()


class Mapped(BaseConsumer):
    method_mapping = {"mapped.a": "on_a", "mapped.b": "on_b"}

    def on_a(self, message: Any, **kwargs: Any) -> None:
        message.reply_channel.send({"text": f"a {sorted(kwargs.items())}"})

    def on_b(self, message: Any, **kwargs: Any) -> None:
        message.reply_channel.send({"text": f"b {self.message is message}"})


class SessionMapped(BaseConsumer):
    method_mapping = {"counted": "count"}
    channel_session = True

    def count(self, message: Any, **kwargs: Any) -> None:
        message.channel_session["n"] = message.channel_session.get("n", 0) + 1
        message.reply_channel.send({"text": str(message.channel_session["n"])})


class Echo(WebsocketConsumer):
    groups = ["echoes"]

    def receive(self, text: str | None = None, bytes: bytes | None = None, **kwargs: Any) -> None:
        if text == "close":
            self.close(4001)
        elif text is not None:
            self.send(text=f"{self.path}:{text}:{sorted(kwargs.items())}")
        else:
            self.send(bytes=bytes)


class Prefixed(WebsocketConsumer):
    group = "default"
    prefix = "pre"

    def connection_groups(self, **kwargs: Any) -> list[str]:
        return [f"{self.prefix}-{self.group}"]


class HttpUserEcho(JsonWebsocketConsumer):
    http_user = True

    def receive(self, content: Any = None, **kwargs: Any) -> None:
        self.send({"user": self.message.user.username or None, "got": content})


class Ordered(WebsocketConsumer):
    strict_ordering = True

    def receive(self, text: str | None = None, bytes: bytes | None = None, **kwargs: Any) -> None:
        self.send(text=f"#{self.message['order']}:{text}")


class Rooms(JsonWebsocketConsumer):
    """The manual's Testing example, with http_user."""

    http_user = True
    groups = ["rooms_watchers"]

    def receive(self, content: Any = None, **kwargs: Any) -> None:
        self.send({"rooms": self.message.http_session.get("rooms", [])})
        Channel("rooms_receive").send({"user": self.message.user.id, "message": content["message"]})


class EchoStream(JsonWebsocketConsumer):
    def connect(self, message: Any, multiplexer: Any = None, **kwargs: Any) -> None:
        multiplexer.send({"status": "I just connected!"})

    def receive(self, content: Any = None, multiplexer: Any = None, **kwargs: Any) -> None:
        multiplexer.send({"original_message": content})

    def disconnect(self, message: Any, multiplexer: Any = None, **kwargs: Any) -> None:
        Channel("stream-closed").send({"stream": multiplexer.stream})


class Demultiplexer(WebsocketDemultiplexer):
    consumers = {"echo": EchoStream, "other": EchoStream}


channel_routing = [
    route("input", square),
    route("websocket.connect", remember_room, path=r"^/room/"),
    route("websocket.receive", say_room, path=r"^/room/"),
    route("websocket.receive", ordered_echo, path=r"^/ordered/"),
    route("websocket.connect", user_connect, path=r"^/user/"),
    route("websocket.receive", user_receive, path=r"^/user/"),
    route("later", later_once),
    route("never", always_later),
    Mapped.as_route(path=r"^/mapped/(?P<slug>[a-z]+)/"),
    Echo.as_route(path=r"^/echo/(?P<tag>[a-z]*)"),
    Demultiplexer.as_route(path=r"^/multi/"),
    Rooms.as_route(path=r"^/rooms/"),
]
