"""A layer user in its own process, driven by the IPC tests.

``python -m tests.ipc.member PATH GROUP [CHANNEL]`` joins GROUP with CHANNEL (default: a new
process-local channel), prints ``ready <channel>`` and then one line per message received on it
(its ``text``), until killed.
"""

from __future__ import annotations

import asyncio
import sys

from headrace.layers.ipc import IPCChannelLayer


async def main(path: str, group: str, channel: str | None) -> None:
    layer = IPCChannelLayer(path=path)
    channel = channel or await layer.new_channel()
    await layer.group_add(group, channel)
    print("ready", channel, flush=True)
    while True:
        message = await layer.receive(channel)
        print(message["text"], flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
