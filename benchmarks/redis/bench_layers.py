"""headrace's Redis layers against channels_redis, in the same run, on the same Redis.

Measures, for each layer:
* send -> receive latency on a process-local channel (sender and receiver are different layer
  instances), sequential round trips: p50 and p99 in microseconds;
* group_send fan-out: ``instances`` layer instances each hold ``members / instances``
  process-local channels in one group, every member waits in ``receive()``; the time from
  ``group_send`` until every member has its message (median of ``--rounds``; the garbage
  collector is paused during each timed fan-out, for every layer alike).

Usage: python3 benchmarks/redis/bench_layers.py [--redis redis://127.0.0.1:6379]
       [--latency-samples 2000] [--members 1000 5000] [--instances 10] [--rounds 5] [--uvloop]

Prints a table and the ratios headrace / channels_redis (higher = headrace faster).
Everything shares one machine: run it when the machine is otherwise quiet, and quote the load.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from channels_redis.core import RedisChannelLayer as CRCore
from channels_redis.pubsub import RedisPubSubChannelLayer as CRPubSub

from headrace.layers.redis import RedisChannelLayer, RedisPubSubChannelLayer

LayerFactory = Callable[[str], Any]


def factories(url: str) -> dict[str, LayerFactory]:
    return {
        "headrace core": lambda prefix: RedisChannelLayer(hosts=[url], prefix=prefix),
        "channels_redis core": lambda prefix: CRCore(hosts=[url], prefix=prefix),
        "headrace pubsub": lambda prefix: RedisPubSubChannelLayer(hosts=[url], prefix=prefix),
        "channels_redis pubsub": lambda prefix: CRPubSub(hosts=[url], prefix=prefix),
    }


async def close(layer: Any) -> None:
    if hasattr(layer, "close"):
        await layer.close()
    else:
        await layer.flush()


async def close_and_flush(factory: LayerFactory, prefix: str, *layers: Any) -> None:
    """Close every layer, then flush the prefix with a fresh one (closing layers may still
    write their last statistics)."""
    for layer in layers:
        await close(layer)
    cleaner = factory(prefix)
    await cleaner.flush()
    await close(cleaner)


async def latency(factory: LayerFactory, samples: int) -> tuple[float, float]:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    receiver, sender = factory(prefix), factory(prefix)
    channel = await receiver.new_channel()
    timings: list[float] = []
    try:
        for index in range(samples + 50):
            started = time.perf_counter()
            await sender.send(channel, {"type": "ping", "n": index})
            await asyncio.wait_for(receiver.receive(channel), 10)
            if index >= 50:
                timings.append((time.perf_counter() - started) * 1e6)
    finally:
        await close_and_flush(factory, prefix, receiver, sender)
    timings.sort()
    return timings[len(timings) // 2], timings[int(len(timings) * 0.99)]


async def fanout(factory: LayerFactory, members: int, instances: int, rounds: int) -> float:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    layers = [factory(prefix) for _ in range(instances)]
    channels: list[tuple[Any, str]] = []
    for layer in layers:
        for _ in range(members // instances):
            name = await layer.new_channel()
            await layer.group_add("audience", name)
            channels.append((layer, name))
    results: list[float] = []
    try:
        for round_number in range(rounds + 1):
            waiting = [asyncio.ensure_future(layer.receive(name)) for layer, name in channels]
            await asyncio.sleep(0.05)  # let every receive() reach its wait before timing
            gc.collect()
            gc.disable()  # same for every layer: time the layer, not a random gen-2 sweep
            try:
                started = time.perf_counter()
                await layers[0].group_send("audience", {"type": "broadcast", "text": "x" * 64})
                await asyncio.wait_for(asyncio.gather(*waiting), 60)
                elapsed = time.perf_counter() - started
            finally:
                gc.enable()
            if round_number:
                results.append(elapsed)
    finally:
        await close_and_flush(factory, prefix, *layers)
    return statistics.median(results)


async def main(args: argparse.Namespace) -> None:
    layers = factories(args.redis)
    print(f"latency: {args.latency_samples} sequential send->receive round trips")
    lat: dict[str, tuple[float, float]] = {}
    for name, factory in layers.items():
        lat[name] = await latency(factory, args.latency_samples)
        print(f"  {name:24s} p50 {lat[name][0]:8.0f} us   p99 {lat[name][1]:8.0f} us")
    for ours, theirs in (
        ("headrace core", "channels_redis core"),
        ("headrace pubsub", "channels_redis pubsub"),
    ):
        print(f"  p50 ratio {theirs} / {ours}: {lat[theirs][0] / lat[ours][0]:.2f}x")
    print(
        f"  headrace core p50 vs channels_redis pubsub p50: "
        f"{lat['channels_redis pubsub'][0] / lat['headrace core'][0]:.2f}x"
    )
    for members in args.members:
        print(
            f"group_send to {members} members over {args.instances} instances "
            f"(median of {args.rounds})"
        )
        fan: dict[str, float] = {}
        for name, factory in layers.items():
            fan[name] = await fanout(factory, members, args.instances, args.rounds)
            print(f"  {name:24s} {fan[name] * 1000:9.1f} ms")
        print(
            f"  ratio channels_redis core / headrace core: "
            f"{fan['channels_redis core'] / fan['headrace core']:.2f}x"
        )
        print(
            f"  ratio channels_redis pubsub / headrace pubsub: "
            f"{fan['channels_redis pubsub'] / fan['headrace pubsub']:.2f}x"
        )


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    parser.add_argument("--latency-samples", type=int, default=2000)
    parser.add_argument("--members", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--uvloop", action="store_true")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse()
    if arguments.uvloop:
        import uvloop

        uvloop.install()
    asyncio.run(main(arguments))
