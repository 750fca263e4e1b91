"""group_send fan-out: headrace's InMemoryChannelLayer against Channels' in the same run.

For each group size the script measures, per layer:
  * send    - one ``group_send`` to every member;
  * deliver - that ``group_send`` plus every member's ``receive`` (what consumers experience).
It prints the best of ``--rounds`` rounds per layer (Channels gets fewer rounds at 5,000 members
because one round takes seconds) and the speed-up ratio channels/headrace.

Usage: python3 benchmarks/layers_inmemory/bench_group_send.py [--sizes 1000 5000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

import django
from django.conf import settings

if not settings.configured:
    settings.configure()
    django.setup()

from channels.layers import InMemoryChannelLayer as ChannelsLayer

from headrace.layers import InMemoryChannelLayer as HeadraceLayer

MESSAGE = {"type": "chat.message", "text": "hello everyone", "user": "ada"}


async def one_round(make_layer: Callable[[], Any], members: int) -> tuple[float, float]:
    layer = make_layer()
    names = [await layer.new_channel() for _ in range(members)]
    for name in names:
        await layer.group_add("crowd", name)
    started = time.perf_counter()
    await layer.group_send("crowd", MESSAGE)
    sent = time.perf_counter()
    for name in names:
        await layer.receive(name)
    delivered = time.perf_counter()
    await layer.flush()
    return sent - started, delivered - started


async def best_of(make_layer: Callable[[], Any], members: int, rounds: int) -> tuple[float, float]:
    results = [await one_round(make_layer, members) for _ in range(rounds)]
    return min(r[0] for r in results), min(r[1] for r in results)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; best of rounds, seconds")
    header = f"{'members':>8} {'layer':>9} {'send':>9} {'deliver':>9}"
    print(header)
    for size in args.sizes:
        ours = await best_of(lambda: HeadraceLayer(capacity=10), size, args.rounds)
        theirs_rounds = max(1, args.rounds if size <= 1000 else 1)
        theirs = await best_of(lambda: ChannelsLayer(capacity=10), size, theirs_rounds)
        print(f"{size:>8} {'headrace':>9} {ours[0]:>9.4f} {ours[1]:>9.4f}")
        print(f"{size:>8} {'channels':>9} {theirs[0]:>9.4f} {theirs[1]:>9.4f}")
        print(f"{size:>8} {'ratio':>9} {theirs[0] / ours[0]:>8.1f}x {theirs[1] / ours[1]:>8.1f}x")


if __name__ == "__main__":
    asyncio.run(main())
