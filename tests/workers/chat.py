"""A group chat served by several workers, sharing groups through the IPC layer.

The layer uses its default hub path (tests isolate it with ``HEADRACE_IPC_DIR``). Every
WebSocket joins group ``room``; a text frame is broadcast to the group and each member answers
``<pid>:<text>``, so the test sees which worker delivered it. HTTP answers the worker's pid.
"""

from __future__ import annotations

import os

from headrace.generic.websocket import AsyncWebsocketConsumer
from headrace.layers import channel_layers
from headrace.routing import ProtocolTypeRouter
from tests.workers.apps import pid_app

channel_layers.configure({"default": {"BACKEND": "headrace.layers.ipc.IPCChannelLayer"}})


class ChatConsumer(AsyncWebsocketConsumer):
    groups = ["room"]

    async def connect(self) -> None:
        await self.accept()
        await self.send(text_data=f"joined {os.getpid()}")

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        assert self.channel_layer is not None
        await self.channel_layer.group_send("room", {"type": "chat.message", "text": text_data})

    async def chat_message(self, event: dict[str, str]) -> None:
        await self.send(text_data=f"{os.getpid()}:{event['text']}")


application = ProtocolTypeRouter({"http": pid_app, "websocket": ChatConsumer.as_asgi()})
