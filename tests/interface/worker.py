"""A Channels-1 style echo worker in its own process, for the redeploy tests.

``python -m tests.interface.worker TAG`` reads ``websocket.connect`` (accepts),
``websocket.receive`` (answers ``TAG:<text>``), ``websocket.disconnect`` and ``http.request``
(answers 200 with body ``TAG:<path>``) from the layer named by ``$HEADRACE_INTERFACE_TEST``,
until it is killed. Each version of the "code" is a different TAG.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from headrace.layers.base import BaseChannelLayer
from tests.interface.support import build_layer, spec_from_environment

Handler = Callable[[BaseChannelLayer, dict[str, Any]], Awaitable[None]]


def handlers(tag: str) -> dict[str, Handler]:
    async def connect(layer: BaseChannelLayer, message: dict[str, Any]) -> None:
        await layer.send(message["reply_channel"], {"accept": True})

    async def receive(layer: BaseChannelLayer, message: dict[str, Any]) -> None:
        await layer.send(message["reply_channel"], {"text": f"{tag}:{message['text']}"})

    async def disconnect(layer: BaseChannelLayer, message: dict[str, Any]) -> None:
        return None

    async def request(layer: BaseChannelLayer, message: dict[str, Any]) -> None:
        reply = {"status": 200, "headers": [], "content": f"{tag}:{message['path']}".encode()}
        await layer.send(message["reply_channel"], reply)

    return {
        "websocket.connect": connect,
        "websocket.receive": receive,
        "websocket.disconnect": disconnect,
        "http.request": request,
    }


async def consume(layer: BaseChannelLayer, channel: str, handler: Handler) -> None:
    while True:
        await handler(layer, await layer.receive(channel))


async def main(tag: str) -> None:
    layer = build_layer(spec_from_environment())
    print(f"worker {tag} running", flush=True)
    await asyncio.gather(
        *(consume(layer, channel, handler) for channel, handler in handlers(tag).items())
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
