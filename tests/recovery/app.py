"""The application the recovery tests serve with the real server.

``python -m headrace tests.recovery.app:application``: a WebSocket at ``/ws/<room>/`` whose
consumer joins group ``room.<room>`` with recovery and presence (the name comes from the
``name`` query parameter), and ``POST /publish/<room>/<count>/`` which sends ``count``
messages ``{"n": 1..count, "batch": <body>}`` to the group, one after the other. The layer is
in-memory (the default), IPC or Redis (``RECOVERY_LAYER=ipc`` or ``redis``, with
``RECOVERY_IPC_PREFIX`` as the hub's or the keys' prefix);
``RECOVERY_LAYER=memory-slow-join`` is the in-memory layer with a networked layer's delay
after each ``group_add``, so live messages reach a joining consumer before it reads the history
(the in-memory layer alone never yields in between). ``RECOVERY_BENCH=1`` (the benchmark):
no presence, and room for 1,000 messages per channel.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any
from urllib.parse import parse_qs

from django.urls import path

from headrace.generic.http import AsyncHttpConsumer
from headrace.generic.recovery import RecoveringJsonWebsocketConsumer
from headrace.layers import InMemoryChannelLayer, channel_layers
from headrace.routing import ProtocolTypeRouter, URLRouter
from tests.recovery.features import FEATURES


class SlowJoinLayer(InMemoryChannelLayer):
    async def group_add(self, group: str, channel: str, info: dict[str, Any] | None = None) -> None:
        await super().group_add(group, channel, info)
        await asyncio.sleep(0.02)


BENCH = os.environ.get("RECOVERY_BENCH") == "1"
if BENCH:
    FEATURES = {"history": FEATURES["history"], "capacity": 1000}


def layer_settings() -> dict[str, Any]:
    kind = os.environ.get("RECOVERY_LAYER", "memory")
    if kind == "ipc":
        config = {"prefix": os.environ["RECOVERY_IPC_PREFIX"], **FEATURES}
        return {"BACKEND": "headrace.layers.ipc.IPCChannelLayer", "CONFIG": config}
    if kind == "redis":
        config = {"hosts": [("127.0.0.1", 6379)], "prefix": os.environ["RECOVERY_IPC_PREFIX"]}
        config.update(FEATURES)
        return {"BACKEND": "headrace.layers.redis.RedisChannelLayer", "CONFIG": config}
    if kind == "memory-slow-join":
        return {"BACKEND": "tests.recovery.app.SlowJoinLayer", "CONFIG": FEATURES}
    return {"BACKEND": "headrace.layers.InMemoryChannelLayer", "CONFIG": FEATURES}


channel_layers.configure({"default": layer_settings()})


class Room(RecoveringJsonWebsocketConsumer):
    forward_presence = not BENCH

    async def connect(self) -> None:
        await self.accept()
        room = self.scope["url_route"]["kwargs"]["room"]
        query = parse_qs(self.scope["query_string"].decode())
        name = query.get("name", ["anonymous"])[0]
        await self.join_group(f"room.{room}", info=None if BENCH else {"name": name})

    async def room_message(self, event: dict[str, Any]) -> None:
        await self.send_json({"n": event["n"], "batch": event["batch"]})


class Publish(AsyncHttpConsumer):
    async def handle(self, body: bytes) -> None:
        kwargs = self.scope["url_route"]["kwargs"]
        group, batch = f"room.{kwargs['room']}", body.decode()
        assert self.channel_layer is not None
        last = None
        for n in range(1, int(kwargs["count"]) + 1):
            last = await self.channel_layer.group_send(
                group, {"type": "room.message", "n": n, "batch": batch}
            )
        answer = json.dumps(None if last is None else last.as_list()).encode()
        await self.send_response(200, answer, headers=[(b"content-type", b"application/json")])


application = ProtocolTypeRouter(
    {
        "http": URLRouter([path("publish/<str:room>/<int:count>/", Publish.as_asgi())]),
        "websocket": URLRouter([path("ws/<str:room>/", Room.as_asgi())]),
    }
)
