"""IPC layer vs the Redis layer on one host: send→receive latency and group fan-out.

Both run in the same script against the same workload, each between two processes:

- latency: process A sends to ``bench.pong``, process B receives and answers on ``bench.ping``;
  one-way latency is half the round trip (median and p99 over ``--rounds``);
- fan-out: process B owns ``--members`` process-local channels in one group, each with a
  receive; process A calls ``group_send`` and waits for B to report that every member got it.
  Two modes: ``busy`` (B reports, then re-arms its receives, so the next ``group_send`` races
  them: mostly queued copies) and ``idle`` (B re-arms before reporting, so every member is
  waiting when the message comes, like idle websocket consumers).

The Redis side is headrace's ``RedisChannelLayer`` when it is importable, else
``channels_redis.core.RedisChannelLayer`` (said in the output). Redis must run on 127.0.0.1:6379.

Two IPC rows: ``ipc`` (the hub elected into a thread of the measuring process: what happens
with no configuration) and ``ipc-hub`` (``python -m headrace.layers.ipc`` as its own process, so
the hub does not share a GIL with either side).

Every process runs on uvloop when it is installed (as headrace's server does).

Run: ``python3 benchmarks/ipc/layers.py [--rounds 2000] [--members 100 1000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
from typing import Any

from headrace.layers.ipc.hub import new_event_loop

REDIS = "redis://127.0.0.1:6379/15"


def run(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop, as headrace's server does when it is installed."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(coroutine)


def make_layer(kind: str, path: str) -> Any:
    if kind.startswith("ipc"):
        from headrace.layers.ipc import IPCChannelLayer

        return IPCChannelLayer(path=path, capacity=10_000)
    try:
        from headrace.layers.redis import RedisChannelLayer

        return RedisChannelLayer(hosts=[REDIS], capacity=10_000)
    except ImportError:
        from channels_redis.core import RedisChannelLayer as PeerLayer

        return PeerLayer(hosts=[REDIS], capacity=10_000)


def redis_name() -> str:
    try:
        import headrace.layers.redis  # noqa: F401

        return "headrace RedisChannelLayer"
    except ImportError:
        return "channels_redis RedisChannelLayer (headrace's Redis layer not importable yet)"


# --- latency ---------------------------------------------------------------------------------


async def _pong(kind: str, path: str, rounds: int) -> None:
    layer = make_layer(kind, path)
    await layer.send("bench.ready", {"type": "ready"})
    for _ in range(rounds):
        message = await layer.receive("bench.pong")
        await layer.send("bench.ping", message)


def pong_process(kind: str, path: str, rounds: int) -> None:
    run(_pong(kind, path, rounds))


async def measure_latency(kind: str, path: str, rounds: int) -> list[float]:
    layer = make_layer(kind, path)
    await layer.flush()
    process = multiprocessing.get_context("spawn").Process(
        target=pong_process, args=(kind, path, rounds)
    )
    process.start()
    await asyncio.wait_for(layer.receive("bench.ready"), 30)
    samples = []
    for number in range(rounds):
        began = time.perf_counter()
        await layer.send("bench.pong", {"type": "ping", "n": number, "text": "x" * 100})
        await layer.receive("bench.ping")
        samples.append((time.perf_counter() - began) / 2)
    process.join(30)
    await layer.flush()
    return samples


# --- fan-out ---------------------------------------------------------------------------------


async def _members(kind: str, path: str, members: int, rounds: int, idle: bool) -> None:
    layer = make_layer(kind, path)
    channels = [await layer.new_channel() for _ in range(members)]
    for channel in channels:
        await layer.group_add("bench-fanout", channel)
    receivers = _arm(layer, channels)
    await asyncio.sleep(0)  # the receives are issued before "ready" goes out
    await layer.send("bench.ready", {"type": "ready"})
    for number in range(rounds):
        await receivers
        more = number < rounds - 1
        if idle and more:
            # Re-arm BEFORE reporting: the next group_send finds every member waiting, as
            # with idle consumers (the usual case of a broadcast to open websockets).
            receivers = _arm(layer, channels)
            await asyncio.sleep(0)
            await layer.send("bench.done", {"type": "done"})
        else:
            # Report first, then re-arm: the next group_send races the members' new receives.
            await layer.send("bench.done", {"type": "done"})
            if more:
                receivers = _arm(layer, channels)


def _arm(layer: Any, channels: list[str]) -> asyncio.Future[list[Any]]:
    return asyncio.gather(*(layer.receive(channel) for channel in channels))


def members_process(kind: str, path: str, members: int, rounds: int, idle: bool) -> None:
    run(_members(kind, path, members, rounds, idle))


async def measure_fanout(
    kind: str, path: str, members: int, rounds: int, idle: bool
) -> list[float]:
    layer = make_layer(kind, path)
    await layer.flush()
    process = multiprocessing.get_context("spawn").Process(
        target=members_process, args=(kind, path, members, rounds, idle)
    )
    process.start()
    await asyncio.wait_for(layer.receive("bench.ready"), 60)
    samples = []
    for _ in range(rounds):
        began = time.perf_counter()
        await layer.group_send("bench-fanout", {"type": "broadcast", "text": "x" * 100})
        await asyncio.wait_for(layer.receive("bench.done"), 60)
        samples.append(time.perf_counter() - began)
    process.join(30)
    await layer.flush()
    return samples


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[max(0, int(len(ordered) * 0.99) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--members", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--fanout-rounds", type=int, default=30)
    arguments = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="hr-bench-")
    paths = {"ipc": os.path.join(folder, "elected.sock"), "redis": ""}
    paths["ipc-hub"] = os.path.join(folder, "standalone.sock")
    hub = subprocess.Popen(
        [sys.executable, "-m", "headrace.layers.ipc", "--path", paths["ipc-hub"]],
        stdout=subprocess.PIPE,
    )
    try:
        assert hub.stdout is not None and b"listening" in hub.stdout.readline()
        print(f"{os.cpu_count()} CPUs shared with other work; Redis side: {redis_name()}")
        run(compare(arguments, paths))
    finally:
        hub.send_signal(signal.SIGTERM)
        hub.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


async def compare(arguments: argparse.Namespace, paths: dict[str, str]) -> None:
    kinds = ("ipc", "ipc-hub", "redis")
    latency = {}
    for kind in kinds:
        latency[kind] = summary(await measure_latency(kind, paths[kind], arguments.rounds))
        median, p99 = latency[kind]
        print(f"latency {kind:7}  one-way median {median * 1e6:8.1f} us  p99 {p99 * 1e6:8.1f} us")
    for kind in kinds[:2]:
        ratio = latency["redis"][0] / latency[kind][0]
        print(f"latency ratio redis/{kind} (median): {ratio:.2f}x")
    for members in arguments.members:
        for idle in (False, True):
            await compare_fanout(arguments, paths, members, idle)


async def compare_fanout(
    arguments: argparse.Namespace, paths: dict[str, str], members: int, idle: bool
) -> None:
    kinds = ("ipc", "ipc-hub", "redis")
    mode = "idle" if idle else "busy"
    fanout = {}
    for kind in kinds:
        samples = await measure_fanout(kind, paths[kind], members, arguments.fanout_rounds, idle)
        fanout[kind] = summary(samples)
        median, p99 = fanout[kind]
        print(
            f"fan-out {mode} {kind:7} {members:5} members  median {median * 1e3:8.2f} ms"
            f"  p99 {p99 * 1e3:8.2f} ms"
        )
    for kind in kinds[:2]:
        ratio = fanout["redis"][0] / fanout[kind][0]
        print(f"fan-out {mode} ratio redis/{kind} at {members} members (median): {ratio:.2f}x")


if __name__ == "__main__":
    main()
