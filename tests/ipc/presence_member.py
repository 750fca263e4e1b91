"""A presence member in its own process, driven by the history/presence IPC tests.

``python -m tests.ipc.presence_member PATH GROUP TTL NAME`` joins GROUP (history and presence
with events, presence ttl TTL) with info ``{"name": NAME}``, prints ``ready <channel>`` and then
one line per message received: its type and its offset (``-`` without one), until killed.
"""

from __future__ import annotations

import asyncio
import sys

from headrace.layers import Position
from headrace.layers.ipc import IPCChannelLayer


async def main(path: str, group: str, ttl: float, name: str) -> None:
    layer = IPCChannelLayer(
        path=path,
        history={group: {"size": 1000, "ttl": 300}},
        presence={group: {"ttl": ttl, "events": True}},
    )
    channel = await layer.new_channel()
    await layer.group_add(group, channel, {"name": name})
    print("ready", channel, flush=True)
    while True:
        message = await layer.receive(channel)
        position = Position.from_message(message)
        print(message["type"], "-" if position is None else position.offset, flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]))
