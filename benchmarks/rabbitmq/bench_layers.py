"""headrace's RabbitMQ layer against channels_rabbitmq, in the same run, on the same broker.

Measures, for each layer, ``--repeats`` times (the figure is the median of the repeats):

* send -> receive round trips on a process-local channel (sender and receiver are different
  layer instances), one at a time: p50 latency in microseconds;
* send throughput: ``--messages`` sends to a process-local channel of another instance, back to
  back, with a receiver taking them concurrently; messages per second until the last arrived;
* group_send fan-out: ``--instances`` layer instances each hold ``members / instances``
  process-local channels in one group, every member waits in ``receive()``; the time from
  ``group_send`` until every member has its message (median of ``--rounds`` within a repeat;
  the garbage collector is paused during each timed fan-out, for both layers alike).

channels_rabbitmq has no worker channels (names without ``!``), so only process-local channels
and groups are compared.

Usage (channels_rabbitmq and Channels 4 in a venv of their own, headrace from the tree):
    PYTHONPATH=$PWD /tmp/rabbit-venv/bin/python benchmarks/rabbitmq/bench_layers.py
        [--url amqp://guest:guest@127.0.0.1:5672/] [--repeats 3] [--latency-samples 1000]
        [--messages 5000] [--members 1000 5000] [--instances 10] [--rounds 3]

Prints a table and the ratios (higher = headrace faster). Everything shares one machine: run it
when the machine is otherwise quiet, and quote the load.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiormq
from channels_rabbitmq.core import RabbitmqChannelLayer as PeerLayer

from headrace.layers.rabbitmq import RabbitMQChannelLayer

Factory = Callable[[str], Any]


def factories(url: str) -> dict[str, Factory]:
    return {
        "headrace": lambda prefix: RabbitMQChannelLayer(url=url, prefix=prefix, capacity=100_000),
        "channels_rabbitmq": lambda prefix: PeerLayer(
            host=url,
            groups_exchange=f"{prefix}.groups",
            local_capacity=10_000,
            remote_capacity=100_000,
        ),
    }


async def connected(*layers: Any) -> None:
    """Connect every layer before timing (channels_rabbitmq connects lazily, and only a send,
    a group call or this property starts its connection; a bare receive() does not)."""
    for layer in layers:
        if isinstance(layer, PeerLayer):
            await layer.carehare_connection
        else:
            await layer.new_channel()


async def drop_exchanges(url: str, prefix: str) -> None:
    connection = await aiormq.connect(url)
    channel = await connection.channel()
    for name in (f"{prefix}.groups", f"{prefix}.control"):
        await channel.exchange_delete(name)
    await connection.close()


async def finish(url: str, prefix: str, *layers: Any) -> None:
    for layer in layers:
        if isinstance(layer, RabbitMQChannelLayer):
            await layer.flush()
        await layer.close()
    await drop_exchanges(url, prefix)


async def latency(url: str, factory: Factory, samples: int) -> float:
    prefix = f"bench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    receiver, sender = factory(prefix), factory(prefix)
    await connected(receiver, sender)
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
        await finish(url, prefix, receiver, sender)
    return statistics.median(timings)


async def throughput(url: str, factory: Factory, messages: int) -> float:
    prefix = f"bench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    receiver, sender = factory(prefix), factory(prefix)
    await connected(receiver, sender)
    channel = await receiver.new_channel()
    await sender.send(channel, {"type": "warm"})
    await receiver.receive(channel)

    async def take_all() -> None:
        for _ in range(messages):
            await receiver.receive(channel)

    try:
        started = time.perf_counter()
        taking = asyncio.ensure_future(take_all())
        for index in range(messages):
            await sender.send(channel, {"type": "m", "n": index, "text": "x" * 64})
        await asyncio.wait_for(taking, 120)
        elapsed = time.perf_counter() - started
    finally:
        await finish(url, prefix, receiver, sender)
    return messages / elapsed


async def fanout(url: str, factory: Factory, members: int, instances: int, rounds: int) -> float:
    prefix = f"bench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    layers = [factory(prefix) for _ in range(instances)]
    await connected(*layers)
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
            gc.disable()
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
        await finish(url, prefix, *layers)
    return statistics.median(results)


async def repeated(repeats: int, measure: Callable[[], Awaitable[float]]) -> float:
    return statistics.median([await measure() for _ in range(repeats)])


async def main(args: argparse.Namespace) -> None:
    layers = factories(args.url)
    url = args.url
    print(f"median of {args.repeats} repeats; load: {os.getloadavg()[0]:.2f}")
    lat = {
        name: await repeated(args.repeats, lambda f=factory: latency(url, f, args.latency_samples))
        for name, factory in layers.items()
    }
    for name, value in lat.items():
        print(f"send->receive round trip p50 {name:18s} {value:8.0f} us")
    print(
        f"  ratio channels_rabbitmq / headrace: {lat['channels_rabbitmq'] / lat['headrace']:.2f}x"
    )
    rate = {
        name: await repeated(args.repeats, lambda f=factory: throughput(url, f, args.messages))
        for name, factory in layers.items()
    }
    for name, value in rate.items():
        print(f"send throughput ({args.messages} msgs) {name:18s} {value:8.0f} msg/s")
    print(
        f"  ratio headrace / channels_rabbitmq: {rate['headrace'] / rate['channels_rabbitmq']:.2f}x"
    )
    for members in args.members:
        fan = {
            name: await repeated(
                args.repeats,
                lambda f=factory, m=members: fanout(url, f, m, args.instances, args.rounds),
            )
            for name, factory in layers.items()
        }
        for name, value in fan.items():
            print(
                f"group_send to {members} members / {args.instances} instances "
                f"{name:18s} {value * 1000:8.1f} ms"
            )
        ratio = fan["channels_rabbitmq"] / fan["headrace"]
        print(f"  ratio channels_rabbitmq / headrace: {ratio:.2f}x")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latency-samples", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--members", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse()))
