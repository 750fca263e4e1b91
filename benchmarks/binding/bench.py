"""Model saves to 1,000 bound sockets: headrace's ModelBinding vs djangochannelsrestframework.

    /tmp/live-venv/bin/python benchmarks/binding/bench.py [--sockets 1000] [--saves 100]
        [--latency-saves 20] [--rounds 3] [--peers headrace,dcrf]

Peers (same run, interleaved rounds, same Redis on 127.0.0.1:6379, SQLite, one server process):

* ``headrace``: ``headrace.binding.ModelBinding`` + ``BindingConsumer`` on headrace's Redis
  layer, served by ``python -m headrace``;
* ``dcrf``: djangochannelsrestframework's ``model_observer`` (the pattern its docs show) on
  Channels 4 + channels_redis, served by uvicorn.

Each round, per peer, a child process migrates a fresh database, starts the server, opens the
sockets (all in the child, one asyncio loop), checks every socket hears a warm-up save, then:

* **latency**: ``--latency-saves`` single saves, one at a time; each is timed from the start
  of ``save()`` until the *last* socket has the frame (median reported);
* **throughput**: ``--saves`` back-to-back saves; saves per second = saves / time from the
  first ``save()`` until every socket has every frame.

Saves run as a Django view's would: the ORM call in asgiref's thread (``sync_to_async``), so
both peers' ``async_to_sync(group_send)`` hops back to the child's loop. The report is the
median over rounds per peer and the ratios headrace/dcrf. Needs (in the venv):
``channels channels_redis djangochannelsrestframework djangorestframework uvicorn[standard]
django`` and headrace's own dependencies; run with the repository root on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PROJECT = HERE / "project"
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO), str(PROJECT)]

from benchmarks._process import free_port, wait_listening  # noqa: E402


class Watchers:
    """The sockets and how many frames each has: an event fires when all reach ``target``."""

    def __init__(self, count: int) -> None:
        self.counts = [0] * count
        self.target = 0
        self.reached = 0
        self.all_reached = asyncio.Event()
        self.last_value = -1

    def expect(self, target: int) -> asyncio.Event:
        self.target = target
        self.reached = sum(1 for c in self.counts if c >= target)
        self.all_reached = asyncio.Event()
        if self.reached == len(self.counts):
            self.all_reached.set()
        return self.all_reached

    def got(self, index: int, text: str) -> None:
        self.counts[index] += 1
        if index == 0:  # one socket checks the frames are the item's updates, in order
            value = _value_of(json.loads(text))
            assert value > self.last_value, (value, self.last_value)
            self.last_value = value
        if self.counts[index] == self.target:
            self.reached += 1
            if self.reached == len(self.counts):
                self.all_reached.set()


def _value_of(frame: dict[str, Any]) -> int:
    payload = frame.get("payload", frame)
    return int(payload["data"]["value"])


async def read(socket: Any, index: int, watchers: Watchers) -> None:
    from websockets.exceptions import ConnectionClosed

    try:
        async for text in socket:
            watchers.got(index, text)
    except ConnectionClosed:
        return


def start_server(peer: str, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(server_argv(peer, port), cwd=PROJECT, env=os.environ.copy())


def server_argv(peer: str, port: int) -> list[str]:
    if peer == "headrace":
        return [
            sys.executable,
            "-m",
            "headrace",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "-v",
            "0",
            "benchsite.asgi:application",
        ]
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "benchsite.asgi:application",
    ]


async def measure(peer: str, sockets: int, saves: int, latency_saves: int) -> dict[str, Any]:
    import websockets
    from asgiref.sync import sync_to_async
    from items.models import Item

    item = await sync_to_async(Item.objects.create)(name="watched", value=0)

    def save() -> None:
        item.value += 1
        item.save()

    port = free_port()
    server = start_server(peer, port)
    try:
        await asyncio.to_thread(wait_listening, port, server)
        watchers = Watchers(sockets)
        connections = []
        # Batches of 25: channels_redis refuses bursts ("Too many connections" from its pool).
        for start in range(0, sockets, 25):
            batch = [
                websockets.connect(f"ws://127.0.0.1:{port}/items/", max_queue=None)
                for _ in range(start, min(sockets, start + 25))
            ]
            connections.extend(await asyncio.gather(*batch))
        readers = [asyncio.create_task(read(s, i, watchers)) for i, s in enumerate(connections)]
        await asyncio.sleep(1.0)  # subscriptions made after accept (DCRF) settle
        sent = 1
        await sync_to_async(save)()
        await asyncio.wait_for(watchers.expect(sent).wait(), 60)

        latencies = []
        for _ in range(latency_saves):
            sent += 1
            done = watchers.expect(sent)
            began = time.perf_counter()
            await sync_to_async(save)()
            await asyncio.wait_for(done.wait(), 60)
            latencies.append(time.perf_counter() - began)

        began = time.perf_counter()
        for _ in range(saves):
            await sync_to_async(save)()
        sent += saves
        await asyncio.wait_for(watchers.expect(sent).wait(), 300)
        elapsed = time.perf_counter() - began
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*(s.close() for s in connections), return_exceptions=True)
        return {
            "framework": peer,
            "latency_ms": statistics.median(latencies) * 1000,
            "saves_per_s": saves / elapsed,
            "frames": sum(watchers.counts),
        }
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def child(framework: str, sockets: int, saves: int, latency_saves: int) -> None:
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", run_syncdb=True, verbosity=0)
    result = asyncio.run(measure(framework, sockets, saves, latency_saves))
    print(json.dumps(result))


def run_child(peer: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    framework, layer = peer.split("/")
    env = {
        **os.environ,
        "BENCH_PEER": framework,
        "BENCH_LAYER": layer,
        "BENCH_DB": str(tmp / f"{framework}-{layer}-{uuid.uuid4().hex[:6]}.sqlite3"),
        "BENCH_PREFIX": f"bench{uuid.uuid4().hex[:8]}",
        "DJANGO_SETTINGS_MODULE": "benchsite.settings",
        "PYTHONPATH": os.pathsep.join([str(REPO), str(PROJECT), os.environ.get("PYTHONPATH", "")]),
    }
    argv = [
        sys.executable,
        __file__,
        "--child",
        framework,
        "--sockets",
        str(args.sockets),
        "--saves",
        str(args.saves),
        "--latency-saves",
        str(args.latency_saves),
    ]
    out = subprocess.run(argv, env=env, cwd=PROJECT, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"{peer} run failed:\n{out.stdout}\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--saves", type=int, default=100)
    parser.add_argument("--latency-saves", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peers", default="headrace/pubsub,dcrf/pubsub,headrace/core,dcrf/core")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.sockets, args.saves, args.latency_saves)
        return
    peers = args.peers.split(",")
    results: dict[str, list[dict[str, Any]]] = {peer: [] for peer in peers}
    with tempfile.TemporaryDirectory(prefix="bench-binding-") as tmp:
        for round_number in range(args.rounds):
            for peer in peers:
                result = run_child(peer, args, Path(tmp))
                results[peer].append(result)
                print(
                    f"round {round_number + 1} {peer}: {result['saves_per_s']:.1f} saves/s, "
                    f"latency {result['latency_ms']:.1f} ms, {result['frames']} frames",
                    flush=True,
                )
    medians = {
        peer: {
            "saves_per_s": statistics.median(r["saves_per_s"] for r in runs),
            "latency_ms": statistics.median(r["latency_ms"] for r in runs),
        }
        for peer, runs in results.items()
    }
    print(json.dumps({"sockets": args.sockets, "saves": args.saves, "medians": medians}))
    for layer in ("pubsub", "core"):
        h, d = medians.get(f"headrace/{layer}"), medians.get(f"dcrf/{layer}")
        if h and d:
            print(
                f"{layer}: throughput headrace/dcrf {h['saves_per_s'] / d['saves_per_s']:.2f}x, "
                f"latency dcrf/headrace {d['latency_ms'] / h['latency_ms']:.2f}x"
            )


if __name__ == "__main__":
    main()
