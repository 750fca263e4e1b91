"""ASGI app for bench_ws.py: every WebSocket joins group "broadcast" and forwards its messages.

The layer comes from the environment: HEADRACE_BENCH_LAYER is a dotted class path,
HEADRACE_BENCH_REDIS a Redis URL, HEADRACE_BENCH_PREFIX the key prefix.
"""

from __future__ import annotations

import os
from typing import Any

from headrace.generic.websocket import AsyncWebsocketConsumer
from headrace.layers import channel_layers

channel_layers.configure(
    {
        "default": {
            "BACKEND": os.environ["HEADRACE_BENCH_LAYER"],
            "CONFIG": {
                "hosts": [os.environ["HEADRACE_BENCH_REDIS"]],
                "prefix": os.environ["HEADRACE_BENCH_PREFIX"],
            },
        }
    }
)


class Broadcast(AsyncWebsocketConsumer):
    groups = ["broadcast"]

    async def broadcast_message(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["text"])


application = Broadcast.as_asgi()
