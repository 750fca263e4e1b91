"""WebSocket broadcast through the headrace server: our Redis layers against channels_redis'.

For each layer: start ``python -m headrace`` (one process) serving ws_app.py with that layer,
connect ``--clients`` WebSocket clients (each consumer joins group "broadcast"), then from this
process ``group_send`` ``--rounds`` messages with the same layer class and time each until every
client has it. Prints the median and p99 per layer and the ratios.

Usage: python3 benchmarks/redis/bench_ws.py [--clients 200] [--rounds 30]
       [--redis redis://127.0.0.1:6379]
The server and the clients share this machine (2 cores here): quote the load with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _process import free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
LAYERS = {
    "headrace core": "headrace.layers.redis.RedisChannelLayer",
    "channels_redis core": "channels_redis.core.RedisChannelLayer",
    "headrace pubsub": "headrace.layers.redis.RedisPubSubChannelLayer",
    "channels_redis pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
}


def load(path: str, redis_url: str, prefix: str) -> Any:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)(hosts=[redis_url], prefix=prefix)


async def wait_for_port(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise TimeoutError(f"server on port {port} did not start")


async def run_one(layer_path: str, args: argparse.Namespace) -> list[float]:
    port, prefix = free_port(), f"bench-ws-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "HEADRACE_BENCH_LAYER": layer_path,
        "HEADRACE_BENCH_REDIS": args.redis,
        "HEADRACE_BENCH_PREFIX": prefix,
        "PYTHONPATH": f"{HERE}{os.pathsep}{ROOT}",
    }
    server = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "headrace", "-p", str(port), "-v", "0", "ws_app:application"],
        env=env,
        cwd=HERE,
    )
    sender = load(layer_path, args.redis, prefix)
    clients: list[Any] = []
    try:
        await wait_for_port(port, time.monotonic() + 20)
        for _ in range(args.clients):
            clients.append(await websockets.connect(f"ws://127.0.0.1:{port}/"))
        return await broadcast_rounds(sender, clients, args.rounds)
    finally:
        for client in clients:
            await client.close()
        server.terminate()
        await asyncio.wait_for(server.wait(), 20)
        await sender.flush()
        if hasattr(sender, "close"):
            await sender.close()


async def broadcast_rounds(sender: Any, clients: list[Any], rounds: int) -> list[float]:
    timings = []
    for round_number in range(rounds + 3):
        text = f"round-{round_number}"
        started = time.perf_counter()
        await sender.group_send("broadcast", {"type": "broadcast.message", "text": text})
        received = await asyncio.wait_for(asyncio.gather(*(c.recv() for c in clients)), 30)
        if round_number >= 3:
            timings.append((time.perf_counter() - started) * 1000)
        assert all(message == text for message in received)
    return timings


async def main(args: argparse.Namespace) -> None:
    results = {}
    for name, path in LAYERS.items():
        timings = sorted(await run_one(path, args))
        results[name] = statistics.median(timings)
        p99 = timings[int(len(timings) * 0.99)]
        print(f"{name:24s} median {results[name]:8.2f} ms   p99 {p99:8.2f} ms", flush=True)
    print(
        f"ratio channels_redis core / headrace core: "
        f"{results['channels_redis core'] / results['headrace core']:.2f}x"
    )
    print(
        f"ratio channels_redis pubsub / headrace pubsub: "
        f"{results['channels_redis pubsub'] / results['headrace pubsub']:.2f}x"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    asyncio.run(main(parser.parse_args()))
