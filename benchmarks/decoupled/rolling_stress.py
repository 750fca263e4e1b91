"""Rolling worker restarts under WebSocket traffic: is every message answered?

    python3 benchmarks/decoupled/rolling_stress.py [--layer redis|ipc] [--duration 30]
        [--sockets 4] [--workers 2] [--patience 10]

Runs the redeploy test project (``tests/redeploy/project``) as real processes: one interface
server, ``--workers`` workers, over our own redis-server (``--layer redis``) or a standalone IPC
hub (``--layer ipc``). ``--sockets`` clients each send numbered messages, one in flight, and
check every answer; meanwhile the script replaces the workers one at a time (start a new one,
wait until it listens, SIGTERM an old one, which must exit 0), over and over for ``--duration``
seconds. A message with no answer within ``--patience`` seconds counts as lost. The number that
matters is ``lost``, which must be 0; each loss is printed with the time it was sent.

This is a stress script, not a test: it stops workers while messages are in flight, which is
where the layers' receive cancellation is exercised hardest.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.redeploy.support import Deployment, wait_until  # noqa: E402


async def chatter(
    socket: ClientConnection, name: str, stop: asyncio.Event, patience: float
) -> tuple[int, list[str]]:
    """(messages answered, messages lost) for one socket; it stops at its first loss."""
    number = 0
    while not stop.is_set():
        text = f"{name}-{number}"
        sent_at = time.strftime("%H:%M:%S")
        await socket.send(text)
        try:
            reply = await asyncio.wait_for(socket.recv(), patience)
        except TimeoutError:
            print(f"lost {text} (sent at {sent_at})", flush=True)
            return number, [text]
        if not isinstance(reply, str) or not reply.endswith(f":{text}"):
            raise AssertionError(f"{text!r} answered with {reply!r}")
        number += 1
    return number, []


def layer_environment(layer: str, workdir: Path) -> tuple[dict[str, str], Callable[[], None]]:
    """The REDEPLOY_* settings and how to stop what holds the layer (redis-server or IPC hub)."""
    if layer == "redis":
        from tests.layers_redis.servers import RedisProcess

        server = RedisProcess(workdir).start()
        prefix = f"stress-{uuid.uuid4().hex[:8]}"
        settings = {"REDEPLOY_LAYER": "redis", "REDEPLOY_REDIS": f"{server.url}/0"}
        return {**settings, "REDEPLOY_PREFIX": prefix}, server.stop
    path = workdir / "hub.sock"
    hub = subprocess.Popen(
        [sys.executable, "-m", "headrace.layers.ipc", "--path", str(path)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
    )
    wait_until(path.exists, "the IPC hub socket")

    def stop_hub() -> None:
        hub.terminate()
        hub.wait(15)

    return {"REDEPLOY_LAYER": "ipc", "REDEPLOY_IPC_PATH": str(path)}, stop_hub


async def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="hr-rolling-"))
    env, stop_layer = layer_environment(args.layer, workdir)
    deployment = Deployment(workdir, env)
    try:
        port = await asyncio.to_thread(deployment.start_interface)
        for _ in range(args.workers):
            await asyncio.to_thread(deployment.start_worker)
        sockets = [await connect(f"ws://127.0.0.1:{port}/chat/") for _ in range(args.sockets)]
        stop = asyncio.Event()
        talking = [
            asyncio.create_task(chatter(s, f"s{i}", stop, args.patience))
            for i, s in enumerate(sockets)
        ]
        restarts = 0
        deadline = time.monotonic() + args.duration
        while time.monotonic() < deadline and not any(t.done() for t in talking):
            for worker in deployment.workers():
                await asyncio.to_thread(deployment.start_worker)
                await asyncio.to_thread(deployment.stop_worker, worker)
                restarts += 1
        stop.set()
        results = await asyncio.gather(*talking)
        for socket in sockets:
            await socket.close()
    finally:
        deployment.close()
        stop_layer()
        shutil.rmtree(workdir, ignore_errors=True)
    answered = sum(count for count, _ in results)
    lost = [text for _, texts in results for text in texts]
    print(
        f"{args.layer}: {restarts} worker restarts, {answered} messages answered, lost {len(lost)}"
    )
    return 1 if lost else 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--layer", choices=("redis", "ipc"), default="redis")
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--sockets", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--patience", type=float, default=10)
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
