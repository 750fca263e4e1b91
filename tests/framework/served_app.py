"""An application served by the real headrace server in test_through_server.py.

Run standalone: ``python3 -m headrace tests.framework.served_app:application -p 8000``.
"""

from __future__ import annotations

from typing import Any

from django.urls import path

from headrace.generic.http import AsyncHttpConsumer
from headrace.generic.websocket import (
    AsyncJsonWebsocketConsumer,
    AsyncWebsocketConsumer,
    JsonWebsocketConsumer,
)
from headrace.layers import channel_layers
from headrace.routing import ProtocolTypeRouter, URLRouter

channel_layers.configure({"default": {"BACKEND": "headrace.layers.InMemoryChannelLayer"}})


class Hello(AsyncHttpConsumer):
    async def handle(self, body: bytes) -> None:
        name = self.scope["url_route"]["kwargs"]["name"]
        await self.send_response(
            200,
            f"hello {name}, you sent {len(body)} bytes".encode(),
            headers=[(b"content-type", b"text/plain")],
        )


class Countdown(AsyncHttpConsumer):
    """Streams a chunked response, one chunk per number."""

    async def handle(self, body: bytes) -> None:
        await self.send_headers(headers=[(b"content-type", b"text/plain")])
        for number in range(3, 0, -1):
            await self.send_body(f"{number}\n".encode(), more_body=True)
        await self.send_body(b"liftoff\n")


class Echo(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        offered = self.scope["subprotocols"]
        await self.accept(subprotocol=offered[0] if offered else None)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is not None:
            await self.send(text_data=text_data[::-1])
        else:
            await self.send(bytes_data=bytes_data)


class Room(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        self.room = "room-" + self.scope["url_route"]["kwargs"]["name"]
        assert self.channel_layer is not None
        await self.channel_layer.group_add(self.room, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        assert self.channel_layer is not None
        await self.channel_layer.group_discard(self.room, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        assert self.channel_layer is not None
        await self.channel_layer.group_send(self.room, {"type": "room.say", "content": content})

    async def room_say(self, event: dict[str, Any]) -> None:
        await self.send_json(event["content"])


class SyncCounter(JsonWebsocketConsumer):
    """A sync consumer: handlers run in a worker thread, send blocks until handed over."""

    groups = ["counters"]

    def connect(self) -> None:
        self.count = 0
        self.accept()

    def receive_json(self, content: Any, **kwargs: Any) -> None:
        self.count += int(content["add"])
        self.send_json({"count": self.count})


application = ProtocolTypeRouter(
    {
        "http": URLRouter(
            [path("hello/<str:name>/", Hello.as_asgi()), path("countdown/", Countdown.as_asgi())]
        ),
        "websocket": URLRouter(
            [
                path("ws/echo/", Echo.as_asgi()),
                path("ws/room/<str:name>/", Room.as_asgi()),
                path("ws/count/", SyncCounter.as_asgi()),
            ]
        ),
    }
)
