"""The multiplexer application served by the real server in test_multiplexer.py.

Run standalone: ``python3 -m headrace tests.live.mux_app:application -p 8000``.
"""

from __future__ import annotations

from typing import Any

from django.urls import path

from headrace.generic.multiplexer import AsyncJsonWebsocketDemultiplexer
from headrace.generic.websocket import AsyncJsonWebsocketConsumer, JsonWebsocketConsumer
from headrace.layers import channel_layers
from headrace.routing import ProtocolTypeRouter, URLRouter

channel_layers.configure({"default": {"BACKEND": "headrace.layers.InMemoryChannelLayer"}})


class Echo(AsyncJsonWebsocketConsumer):
    """Greets on connect, then echoes with a per-instance counter."""

    async def connect(self) -> None:
        self.count = 0
        await self.accept()
        await self.send_json({"hello": self.scope["stream"]})

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        self.count += 1
        await self.send_json({"echo": content, "count": self.count})


class Closer(AsyncJsonWebsocketConsumer):
    """Closes its own stream with the code the client asks for."""

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        await self.close(code=content["close"])


class Crasher(AsyncJsonWebsocketConsumer):
    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret internal detail")


class Denier(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        await self.close(code=4403)


class Presence(JsonWebsocketConsumer):
    """A sync consumer in a group: tells the others when a socket leaves."""

    groups = ["presence"]

    def receive_json(self, content: Any, **kwargs: Any) -> None:
        self.name = content["name"]
        self.send_json({"joined": self.name})

    def disconnect(self, code: int) -> None:
        from asgiref.sync import async_to_sync

        assert self.channel_layer is not None
        message = {"type": "presence.left", "name": getattr(self, "name", "?"), "code": code}
        async_to_sync(self.channel_layer.group_send)("presence", message)

    def presence_left(self, event: dict[str, Any]) -> None:
        self.send_json({"left": event["name"], "code": event["code"]})


class Mux(AsyncJsonWebsocketDemultiplexer):
    applications = {
        "echo": Echo.as_asgi(),
        "other": Echo.as_asgi(),
        "closer": Closer.as_asgi(),
        "crasher": Crasher.as_asgi(),
        "denier": Denier.as_asgi(),
        "presence": Presence.as_asgi(),
    }


class OnlyCloser(AsyncJsonWebsocketDemultiplexer):
    applications = {"closer": Closer.as_asgi()}


application = ProtocolTypeRouter(
    {
        "websocket": URLRouter(
            [path("mux/", Mux.as_asgi()), path("only-closer/", OnlyCloser.as_asgi())]
        ),
    }
)
