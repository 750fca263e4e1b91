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

Each layer runs in a child process of its own interpreter, the runs alternating: headrace with
this interpreter (and its aiormq), channels_rabbitmq with ``--peer-python`` (a venv holding
channels_rabbitmq and Channels 4; its client, carehare, needs pamqp 3 where aiormq 7 needs
pamqp 4, so the two cannot share one environment).

Usage (from the worktree root):
    python3 -m venv /tmp/rabbit-venv && /tmp/rabbit-venv/bin/pip install channels_rabbitmq \
        'channels>=4,<5' 'aiormq>=6.9,<7' msgpack
    PYTHONPATH=$PWD python3 benchmarks/rabbitmq/bench_layers.py [--peer-python PATH]
        [--url amqp://guest:guest@127.0.0.1:5672/] [--repeats 3] [--latency-samples 1000]
        [--messages 5000] [--members 1000 5000] [--instances 10] [--rounds 3]

Prints a table and the ratios (higher = headrace faster). Everything shares one machine: run it
when the machine is otherwise quiet, and quote the load.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import aiormq

from headrace.layers.rabbitmq import RabbitMQChannelLayer

Factory = Callable[[str], Any]
LAYERS = ("headrace", "channels_rabbitmq")


def factory_of(name: str, url: str) -> Factory:
    """The layer factory; channels_rabbitmq is imported only in its own child process (its
    client, carehare, needs pamqp 3; aiormq 7 needs pamqp 4)."""
    if name == "headrace":
        return lambda prefix: RabbitMQChannelLayer(url=url, prefix=prefix, capacity=100_000)
    from channels_rabbitmq.core import RabbitmqChannelLayer

    return lambda prefix: RabbitmqChannelLayer(
        host=url,
        groups_exchange=f"{prefix}.groups",
        local_capacity=10_000,
        remote_capacity=100_000,
    )


async def connected(*layers: Any) -> None:
    """Connect every layer before timing (channels_rabbitmq connects lazily, and only a send,
    a group call or this property starts its connection; a bare receive() does not)."""
    for layer in layers:
        if isinstance(layer, RabbitMQChannelLayer):
            await layer.new_channel()
        else:
            await layer.carehare_connection


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


async def measure_one(args: argparse.Namespace) -> dict[str, float]:
    """Every measurement of one layer (run in a child process of the right interpreter)."""
    factory = factory_of(args.layer, args.url)
    figures = {
        "latency_us": await latency(args.url, factory, args.latency_samples),
        "throughput": await throughput(args.url, factory, args.messages),
    }
    for members in args.members:
        figures[f"fanout_{members}_ms"] = (
            await fanout(args.url, factory, members, args.instances, args.rounds) * 1000
        )
    return figures


def run_child(args: argparse.Namespace, layer: str) -> dict[str, float]:
    python = args.peer_python if layer == "channels_rabbitmq" else sys.executable
    command = [python, __file__, "--layer", layer, "--url", args.url]
    command += ["--latency-samples", str(args.latency_samples), "--messages", str(args.messages)]
    command += ["--instances", str(args.instances), "--rounds", str(args.rounds), "--members"]
    command += [str(members) for members in args.members]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{layer} run failed:\n{done.stderr[-3000:]}")
    figures: dict[str, float] = json.loads(lines[-1])
    return figures


def report(args: argparse.Namespace) -> None:
    runs: dict[str, list[dict[str, float]]] = {layer: [] for layer in LAYERS}
    for repeat in range(args.repeats):
        for layer in LAYERS if repeat % 2 == 0 else reversed(LAYERS):
            runs[layer].append(run_child(args, layer))
    print(f"median of {args.repeats} runs per layer (alternating); load {os.getloadavg()[0]:.2f}")
    medians = {
        layer: {key: statistics.median(run[key] for run in results) for key in results[0]}
        for layer, results in runs.items()
    }
    ours, peer = medians["headrace"], medians["channels_rabbitmq"]
    rows = [("send->receive round trip p50 (us)", "latency_us", False)]
    rows.append((f"send throughput, {args.messages} msgs (msg/s)", "throughput", True))
    for members in args.members:
        rows.append(
            (
                f"group_send, {members} members / {args.instances} instances (ms)",
                f"fanout_{members}_ms",
                False,
            )
        )
    for title, key, higher_is_better in rows:
        ratio = ours[key] / peer[key] if higher_is_better else peer[key] / ours[key]
        every = {layer: [round(run[key], 1) for run in runs[layer]] for layer in LAYERS}
        print(
            f"{title}: headrace {ours[key]:.1f}, channels_rabbitmq {peer[key]:.1f}, "
            f"headrace advantage {ratio:.2f}x  (runs: {every})"
        )


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latency-samples", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--members", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peer-python", default="/tmp/rabbit-venv/bin/python")
    parser.add_argument("--layer", choices=LAYERS, help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse()
    if arguments.layer:
        print(json.dumps(asyncio.run(measure_one(arguments))))
    else:
        report(arguments)
