"""A layer user in its own process, driven by the RabbitMQ tests.

``python -m tests.layers_rabbitmq.member URL PREFIX group GROUP`` joins GROUP with a new
process-local channel; ``... worker CHANNEL`` reads the worker channel CHANNEL (competing with
other readers); ``... send CHANNEL COUNT`` sends COUNT numbered messages to CHANNEL and exits.
Readers print ``ready <channel>`` and then one line per message received (its ``text``), until
killed.
"""

from __future__ import annotations

import asyncio
import sys

from headrace.layers.rabbitmq import RabbitMQChannelLayer


async def read_forever(layer: RabbitMQChannelLayer, channel: str) -> None:
    print("ready", channel, flush=True)
    while True:
        message = await layer.receive(channel)
        print(message["text"], flush=True)


async def main(url: str, prefix: str, mode: str, name: str, *rest: str) -> None:
    layer = RabbitMQChannelLayer(url=url, prefix=prefix, capacity=10_000)
    try:
        if mode == "group":
            channel = await layer.new_channel()
            await layer.group_add(name, channel)
            await read_forever(layer, channel)
        elif mode == "worker":
            await layer.new_channel()  # connects before saying ready
            await read_forever(layer, name)
        elif mode == "send":
            for number in range(int(rest[0])):
                await layer.send(name, {"type": "numbered", "text": str(number)})
            print("sent", flush=True)
        else:
            raise SystemExit(f"unknown mode {mode!r}")
    finally:
        await layer.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
