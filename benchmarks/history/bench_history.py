"""The cost of group history and presence, per backend (benchmarks/history/backends.py).

* send    - ``group_send`` to a group with history against the same send to a plain group
  with the same members (interleaved rounds; the ratio of the medians; target <= 1.3x): the
  time of the group_send call alone ("send"), and of the group_send plus every member
  receiving its copy ("deliver", wall and CPU), members draining after each send;
* recover - N clients each reading the 100 messages they missed (``group_history(since=)``);
* presence - ``group_presence_count`` of a 10,000-member group (median of many calls), against
  fetching the whole roster with ``group_presence``.

Each figure is the median of ``--rounds`` rounds (>= 3). Wall time per operation, and CPU time
per operation of this process (which hosts the IPC hub on a thread, so the hub's work counts).

Usage: python3 benchmarks/history/bench_history.py [--backends inmemory ipc] [--rounds 5]
       [--members 1 10 100] [--sends 1000] [--clients 1000] [--presence 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))

from backends import BACKENDS, Backend

from headrace.layers import Position
from headrace.layers.base import BaseChannelLayer

MESSAGE = {"type": "chat.message", "text": "hello everyone", "user": "ada", "room": 7}
MISSED = 100


def config(sends: int) -> dict[str, Any]:
    return {
        "capacity": sends + 10,
        "history": {"hist.*": {"size": max(sends, MISSED) + 10, "ttl": 600}},
        "presence": {"pres.*": {"ttl": 600}},
    }


async def timed(operation: Callable[[], Awaitable[None]], count: int) -> tuple[float, float]:
    """(wall, CPU) seconds per operation over ``count`` calls."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        await operation()
    return (time.perf_counter() - wall) / count, (time.process_time() - cpu) / count


async def send_round(
    layer: BaseChannelLayer, group: str, members: list[str], sends: int
) -> tuple[float, float, float]:
    """(send wall, deliver wall, deliver CPU) seconds per message: ``send`` times the
    group_send alone, ``deliver`` the group_send and every member receiving its copy."""
    for channel in members:
        await layer.group_add(group, channel)
    sending = 0.0
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(sends):
        started = time.perf_counter()
        await layer.group_send(group, MESSAGE)
        sending += time.perf_counter() - started
        for channel in members:
            await layer.receive(channel)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await layer.flush()
    return sending / sends, wall / sends, cpu / sends


async def bench_send(backend: Backend, members: int, sends: int, rounds: int) -> None:
    plain: list[tuple[float, float, float]] = []
    kept: list[tuple[float, float, float]] = []
    async with backend(**config(sends)) as layer:
        channels = [await layer.new_channel() for _ in range(members)]
        await send_round(layer, "warm.up", channels, 100)
        for _ in range(rounds):
            plain.append(await send_round(layer, "plain.room", channels, sends))
            kept.append(await send_round(layer, "hist.room", channels, sends))
    for index, what in enumerate(("send", "deliver", "deliver CPU")):
        p, k = (statistics.median(r[index] for r in rs) for rs in (plain, kept))
        label = f"{what}, {members} member{'s' if members > 1 else ''}"
        print(f"  {label:<24} plain {p * 1e6:8.1f} us  history {k * 1e6:8.1f} us  {k / p:5.2f}x")


async def bench_recover(backend: Backend, clients: int, rounds: int) -> None:
    results = []
    async with backend(**config(MISSED)) as layer:
        for _ in range(rounds):
            positions = [await layer.group_send("hist.recover", MESSAGE) for _ in range(MISSED + 1)]
            assert isinstance(positions[0], Position)
            wall, cpu = await timed(functools.partial(recover, layer, positions[0]), clients)
            results.append((wall * clients, cpu * clients))
            await layer.flush()
    wall = statistics.median(r[0] for r in results)
    cpu = statistics.median(r[1] for r in results)
    print(
        f"  recover {clients} x {MISSED} missed   {wall * 1e3:8.1f} ms ({cpu * 1e3:7.1f} CPU-ms)"
        f"  {wall / clients * 1e6:7.1f} us per client"
    )


async def recover(layer: BaseChannelLayer, since: Position) -> None:
    history = await layer.group_history("hist.recover", since=since)
    assert history.recovered and len(history.messages) == MISSED


async def bench_presence(backend: Backend, members: int, rounds: int) -> None:
    async with backend(**config(10)) as layer:
        channels = [await layer.new_channel() for _ in range(members)]
        added = time.perf_counter()
        for number, channel in enumerate(channels):
            await layer.group_add("pres.crowd", channel, {"user": f"user-{number}"})
        added = time.perf_counter() - added
        assert await layer.group_presence_count("pres.crowd") == members
        counts = [await timed(lambda: count(layer), 200) for _ in range(rounds)]
        fetches = [await timed(lambda: fetch(layer), 3) for _ in range(rounds)]
    count_wall = statistics.median(r[0] for r in counts)
    fetch_wall = statistics.median(r[0] for r in fetches)
    each = added / members * 1e6
    print(
        f"  presence of {members}  count {count_wall * 1e6:8.1f} us"
        f"  full fetch {fetch_wall * 1e3:8.2f} ms  (group_add with info: {each:.1f} us each)"
    )


async def count(layer: BaseChannelLayer) -> None:
    await layer.group_presence_count("pres.crowd")


async def fetch(layer: BaseChannelLayer) -> None:
    await layer.group_presence("pres.crowd")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=list(BACKENDS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--members", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--sends", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--presence", type=int, default=10_000)
    args = parser.parse_args()
    if args.rounds < 3:
        parser.error("--rounds must be at least 3 (medians of several runs)")
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, medians of {args.rounds} rounds"
    )
    for name in args.backends:
        backend = BACKENDS[name]
        print(name)
        for members in args.members:
            await bench_send(backend, members, args.sends, args.rounds)
        await bench_recover(backend, args.clients, args.rounds)
        await bench_presence(backend, args.presence, args.rounds)


if __name__ == "__main__":
    asyncio.run(main())
