"""Group history and presence on the Redis layer (issue 18), on one Redis, in one run.

Measures:
* ``group_send`` with history vs the same group without history: sequential sends to a group
  of ``--members`` process-local members spread over ``--processes`` (fabricated) processes,
  rounds interleaved; per send: wall time, this process's CPU time and the Redis server's CPU
  time (``INFO cpu``). Ratio history / plain (target <= 1.3);
* recovery: ``--clients`` clients (concurrently, ``--concurrency`` at a time) each read the
  ``--missed`` messages they missed with ``group_history(since=...)``: total wall time;
* presence of a ``--presence-members`` group: ``group_presence_count`` and ``group_presence``
  (median of ``--repeat`` calls each), and the time to add the members.

Every figure is the median of ``--rounds`` rounds. Usage:
    python3 benchmarks/history/bench_redis.py [--redis redis://127.0.0.1:6379] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from typing import Any

import redis.asyncio as aioredis

sys.path.insert(0, os.path.dirname(__file__))

from backends import redis as redis_layer

from headrace.layers.base import BaseChannelLayer
from headrace.layers.history import Position

HISTORY = {"hist.*": {"size": 100, "ttl": 300}}
PRESENCE = {"pres.*": {"ttl": 60, "events": False}}


async def server_cpu(raw: aioredis.Redis) -> float:
    info = await raw.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def fill_group(layer: BaseChannelLayer, group: str, members: int, processes: int) -> None:
    """Members are local channels of processes that do not read (their inboxes just grow;
    the run's prefix is flushed at the end)."""
    names = [f"specific.{os.urandom(6).hex()}!" for _ in range(processes)]
    for start in range(0, members, 200):
        batch = range(start, min(members, start + 200))
        await asyncio.gather(
            *(layer.group_add(group, f"{names[n % processes]}m{n}") for n in batch)
        )


async def timed_sends(
    layer: BaseChannelLayer, raw: aioredis.Redis, group: str, sends: int
) -> tuple[float, float, float]:
    """(wall, client CPU, server CPU) microseconds per send."""
    message = {"type": "chat.message", "text": "x" * 100}
    cpu_before, server_before = time.process_time(), await server_cpu(raw)
    start = time.perf_counter()
    for _ in range(sends):
        await layer.group_send(group, message)
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu_before
    server = await server_cpu(raw) - server_before
    return wall / sends * 1e6, cpu / sends * 1e6, server / sends * 1e6


async def send_cost(args: argparse.Namespace) -> None:
    raw = aioredis.Redis.from_url(args.redis)
    try:
        async with redis_layer(history=HISTORY) as layer:
            for group in ("plain.g", "hist.g"):
                await fill_group(layer, group, args.members, args.processes)
            results: dict[str, list[tuple[float, float, float]]] = {"plain.g": [], "hist.g": []}
            await timed_sends(layer, raw, "hist.g", 200)  # warm up scripts and connections
            for _ in range(args.rounds):
                for group in results:
                    results[group].append(await timed_sends(layer, raw, group, args.sends))
            print(f"== group_send, {args.members} members in {args.processes} processes")
            medians = {
                group: [statistics.median(run[i] for run in runs) for i in range(3)]
                for group, runs in results.items()
            }
            for group, (wall, cpu, server) in medians.items():
                print(f"{group:8} {wall:8.1f} us/send  client {cpu:6.1f} CPU-us", end="")
                print(f"  redis {server:6.1f} CPU-us")
            ratios = [h / p for h, p in zip(medians["hist.g"], medians["plain.g"], strict=True)]
            print(
                f"history / plain: wall {ratios[0]:.2f}x  client CPU {ratios[1]:.2f}x  "
                f"redis CPU {ratios[2]:.2f}x"
            )
    finally:
        await raw.aclose()


async def recovery(args: argparse.Namespace) -> None:
    async with redis_layer(history=HISTORY) as layer:
        sent: Position | None = None
        for n in range(args.missed):
            sent = await layer.group_send("hist.r", {"type": "chat.message", "n": n})
        assert sent is not None
        since = Position(sent.epoch, sent.offset - args.missed)
        limiter = asyncio.Semaphore(args.concurrency)

        async def one_client() -> int:
            async with limiter:
                kept = await layer.group_history("hist.r", since)
            assert kept.recovered
            return len(kept.messages)

        times = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            counts = await asyncio.gather(*(one_client() for _ in range(args.clients)))
            times.append(time.perf_counter() - start)
            assert set(counts) == {args.missed}
        median = statistics.median(times)
        print(f"== recovery: {args.clients} clients x {args.missed} missed messages")
        print(
            f"{median * 1000:8.1f} ms total, {median / args.clients * 1e6:8.1f} us/client, "
            f"{args.clients * args.missed / median:10.0f} messages/s"
        )


async def presence(args: argparse.Namespace) -> None:
    async with redis_layer(presence=PRESENCE) as layer:
        adds, counts, fetches = [], [], []
        for round_index in range(args.rounds):
            group = f"pres.g{round_index}"
            start = time.perf_counter()
            await fill_group(layer, group, args.presence_members, args.processes)
            adds.append(time.perf_counter() - start)
            counts.append(await timed_calls(layer.group_presence_count, group, args.repeat))
            fetches.append(await timed_calls(layer.group_presence, group, args.repeat))
            assert await layer.group_presence_count(group) == args.presence_members
        print(f"== presence of a {args.presence_members}-member group")
        print(f"group_add all        {statistics.median(adds) * 1000:8.1f} ms")
        print(f"group_presence_count {statistics.median(counts):8.1f} us")
        print(f"group_presence       {statistics.median(fetches) / 1000:8.1f} ms")


async def timed_calls(call: Any, group: str, repeat: int) -> float:
    """Median microseconds of ``repeat`` sequential calls."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        await call(group)
        samples.append((time.perf_counter() - start) * 1e6)
    return statistics.median(samples)


async def main(args: argparse.Namespace) -> None:
    os.environ["HEADRACE_BENCH_REDIS"] = args.redis
    await send_cost(args)
    await recovery(args)
    await presence(args)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--processes", type=int, default=10)
    parser.add_argument("--sends", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--missed", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--presence-members", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse()))
