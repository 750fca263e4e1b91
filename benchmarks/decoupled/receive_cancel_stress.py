"""Does a process that cancels its layer receive and exits lose a message? (the layer level)

    python3 benchmarks/decoupled/receive_cancel_stress.py [--layer redis|ipc] [--messages 20000]
        [--restarts 25] [--lifetime 0.3] [--redis redis://127.0.0.1:6379/0]

A producer process sends ``--messages`` numbered messages to one normal channel while
``--restarts`` short-lived consumer processes, one after the other, each receive in a loop for
``--lifetime`` seconds, then cancel the pending ``receive`` and leave ``asyncio.run`` (what a
worker does on SIGTERM). A last consumer drains the rest. Every number must arrive exactly
once: the script prints the missing and duplicated ones. This is what
``rolling_stress.py`` exercises through whole interface servers and workers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHANNEL = "stress.queue"


def make_layer(args: argparse.Namespace) -> Any:
    if args.layer == "redis":
        from headrace.layers.redis import RedisChannelLayer

        return RedisChannelLayer(hosts=[args.redis], prefix=args.target, capacity=10**6)
    from headrace.layers.ipc import IPCChannelLayer

    return IPCChannelLayer(path=args.target, capacity=10**6)


async def produce(args: argparse.Namespace) -> None:
    layer = make_layer(args)
    for number in range(args.messages):
        await layer.send(CHANNEL, {"type": "stress.number", "n": number})
        if number % 50 == 0:
            await asyncio.sleep(0.001)


async def consume(args: argparse.Namespace) -> None:
    layer = make_layer(args)
    received: list[int] = []

    async def receive_forever() -> None:
        while True:
            received.append((await layer.receive(CHANNEL))["n"])

    task = asyncio.create_task(receive_forever())
    await asyncio.sleep(args.lifetime)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    print(" ".join(map(str, received)), flush=True)


def child(args: argparse.Namespace, role: str, lifetime: float = 0.0) -> list[str]:
    return [
        sys.executable, __file__, "--role", role, "--layer", args.layer, "--target", args.target,
        "--messages", str(args.messages), "--lifetime", str(lifetime), "--redis", args.redis,
    ]  # fmt: skip


def orchestrate(args: argparse.Namespace) -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    hub = None
    if args.layer == "ipc":
        args.target = str(Path(tempfile.mkdtemp(prefix="hr-cancel-")) / "hub.sock")
        hub = subprocess.Popen(
            [sys.executable, "-m", "headrace.layers.ipc", "--path", args.target],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while not Path(args.target).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    else:
        args.target = f"cancel-stress-{uuid.uuid4().hex[:8]}"
    try:
        producer = subprocess.Popen(child(args, "produce"), env=env)
        output = []
        for _ in range(args.restarts):
            run = child(args, "consume", args.lifetime)
            output.append(subprocess.run(run, env=env, capture_output=True, text=True).stdout)
        producer.wait(120)
        drain = child(args, "consume", 3.0)
        output.append(subprocess.run(drain, env=env, capture_output=True, text=True).stdout)
    finally:
        if hub is not None:
            hub.terminate()
            hub.wait(15)
    numbers = [int(n) for text in output for n in text.split()]
    missing = sorted(set(range(args.messages)) - set(numbers))
    duplicated = len(numbers) - len(set(numbers))
    print(
        f"{args.layer}: {args.restarts} consumer restarts, {len(set(numbers))} received, "
        f"missing {len(missing)} {missing[:20]}, duplicated {duplicated}"
    )
    return 1 if missing or duplicated else 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--layer", choices=("redis", "ipc"), default="redis")
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--restarts", type=int, default=25)
    parser.add_argument("--lifetime", type=float, default=0.3)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--role", choices=("orchestrate", "produce", "consume"))
    parser.add_argument("--target", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "produce":
        asyncio.run(produce(args))
    elif args.role == "consume":
        asyncio.run(consume(args))
    else:
        sys.exit(orchestrate(args))


if __name__ == "__main__":
    main()
