"""A process that hosts the IPC hub and exits without closing its layer stops the hub first
(the hub's daemon thread must not be running an event loop while the interpreter finalises)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import asyncio, sys
from headrace.layers.ipc import IPCChannelLayer

async def main() -> None:
    layer = IPCChannelLayer(path=sys.argv[1])
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "hello"})
    assert (await layer.receive(channel))["type"] == "hello"
    print("hosting", flush=True)

asyncio.run(main())
"""


def test_a_hosting_process_that_just_exits_stops_its_hub_cleanly() -> None:
    with tempfile.TemporaryDirectory(prefix="hr-hubexit-") as folder:
        path = os.path.join(folder, "hub.sock")
        for _ in range(5):
            result = subprocess.run(
                [sys.executable, "-c", SCRIPT, path],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert (result.returncode, result.stdout) == (0, "hosting\n"), result.stderr
            assert not os.path.exists(path), "the hub's socket outlived its process"
