"""What the statistics counters cost on send/receive: this tree against a git ref without them.

    python3 benchmarks/statistics_cost.py [--against REF] [--runs 5] [--messages 20000]
        [--layers inmemory,ipc,redis] [--redis redis://127.0.0.1:6379/0]

For each layer it times ``--messages`` sends to one channel followed by as many receives (the
counters sit on the send path; receive is timed too so a slower receive would show), in a
fresh process per run, alternating this tree and ``REF`` (extracted with ``git archive`` into a
temporary folder) so both see the same machine load. It prints each side's median messages/s
(one message = one send plus one receive) and the ratio of medians (this tree / REF). The IPC
hub runs as its own process, as in a deployment (a hub elected inside the benchmark process
shares its GIL, and the thread hand-offs then swamp what is measured).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def make_layer(kind: str, args: argparse.Namespace) -> Any:
    capacity = args.messages + 1
    if kind == "inmemory":
        from headrace.layers import InMemoryChannelLayer

        return InMemoryChannelLayer(capacity=capacity)
    if kind == "ipc":
        from headrace.layers.ipc import IPCChannelLayer

        return IPCChannelLayer(path=args.hub, capacity=capacity)
    from headrace.layers.redis import RedisChannelLayer

    prefix = f"stats-cost-{uuid.uuid4().hex[:8]}"
    return RedisChannelLayer(hosts=[args.redis], prefix=prefix, capacity=capacity)


async def measure(kind: str, args: argparse.Namespace) -> float:
    layer = make_layer(kind, args)
    message = {"type": "bench", "text": "x" * 64}
    await layer.send("warm", message)
    await layer.receive("warm")
    started = time.perf_counter()
    for _ in range(args.messages):
        await layer.send("bench", message)
    for _ in range(args.messages):
        await layer.receive("bench")
    elapsed = time.perf_counter() - started
    await layer.flush()
    await layer.close()
    return args.messages / elapsed


def run_once(tree: Path, kind: str, args: argparse.Namespace) -> float:
    """One measurement in a fresh process; the IPC hub is a process of its own (of the same
    tree), as the supervisor's companion hub is in a deployment."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    hub_path = os.path.join(tempfile.mkdtemp(prefix="hr-stc-"), "hub.sock")
    command = [
        sys.executable, str(Path(__file__).resolve()), "--child", kind,
        "--messages", str(args.messages), "--redis", args.redis, "--hub", hub_path,
    ]  # fmt: skip
    hub = None
    if kind == "ipc":
        hub_command = [sys.executable, "-m", "headrace.layers.ipc", "--path", hub_path]
        hub = subprocess.Popen(hub_command, env=env, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not os.path.exists(hub_path) and time.monotonic() < deadline:
            time.sleep(0.02)
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    finally:
        if hub is not None:
            hub.terminate()
            hub.wait(15)
    return float(done.stdout.strip())


def extract(ref: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="hr-stats-ref-"))
    archive = subprocess.run(["git", "archive", ref, "headrace"], cwd=ROOT, capture_output=True)
    archive.check_returncode()
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--against", default="a175a71")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--layers", default="inmemory,ipc,redis")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--hub", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(asyncio.run(measure(args.child, args)))
        return
    reference = extract(args.against)
    for kind in args.layers.split(","):
        ours, theirs = [], []
        for _ in range(args.runs):
            ours.append(run_once(ROOT, kind, args))
            theirs.append(run_once(reference, kind, args))
        mine, base = statistics.median(ours), statistics.median(theirs)
        print(
            f"{kind:9} with statistics {mine:10.0f} msg/s   {args.against} {base:10.0f} msg/s"
            f"   ratio {mine / base:.3f}"
        )


if __name__ == "__main__":
    main()
