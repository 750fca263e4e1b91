"""Consumer dispatch overhead: echo round trips through WebsocketCommunicator, headrace's
consumers against Channels' in the same run (async and sync consumers, no server, no layer).

Each round connects one communicator, sends a text frame, waits for the echo, ``--messages``
times; the best of ``--rounds`` rounds is printed as messages per second, with the ratio.
Channels 4.3 closes Django database connections before every handler (a thread hop) even
when no database is configured; headrace does so only when ``DATABASES`` is set.

Usage: python3 benchmarks/layers_inmemory/bench_consumer_roundtrip.py [--messages 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

import django
from django.conf import settings

if not settings.configured:
    settings.configure()
    django.setup()

from channels.generic import websocket as channels_ws
from channels.testing import WebsocketCommunicator as ChannelsCommunicator

from headrace.generic import websocket as headrace_ws
from headrace.testing import WebsocketCommunicator as HeadraceCommunicator


def echo_consumer(module: Any, sync: bool) -> Any:
    if sync:

        class SyncEcho(module.WebsocketConsumer):  # type: ignore[misc]
            def receive(self, text_data: Any = None, bytes_data: Any = None) -> None:
                self.send(text_data=text_data)

        return SyncEcho

    class AsyncEcho(module.AsyncWebsocketConsumer):  # type: ignore[misc]
        async def receive(self, text_data: Any = None, bytes_data: Any = None) -> None:
            await self.send(text_data=text_data)

    return AsyncEcho


async def messages_per_second(communicator_class: Any, consumer: Any, messages: int) -> float:
    communicator = communicator_class(consumer.as_asgi(), "/")
    await communicator.connect()
    started = time.perf_counter()
    for _ in range(messages):
        await communicator.send_to(text_data="ping")
        await communicator.receive_from()
    elapsed = time.perf_counter() - started
    await communicator.disconnect()
    return messages / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; best of {args.rounds} rounds")
    for sync in (False, True):
        kind = "sync" if sync else "async"
        ours = max(
            [
                await messages_per_second(
                    HeadraceCommunicator, echo_consumer(headrace_ws, sync), args.messages
                )
                for _ in range(args.rounds)
            ]
        )
        theirs = max(
            [
                await messages_per_second(
                    ChannelsCommunicator, echo_consumer(channels_ws, sync), args.messages
                )
                for _ in range(args.rounds)
            ]
        )
        print(
            f"{kind:>5}: headrace {ours:8.0f} msg/s   channels {theirs:8.0f} msg/s"
            f"   ratio {ours / theirs:.2f}x"
        )


if __name__ == "__main__":
    asyncio.run(main())
