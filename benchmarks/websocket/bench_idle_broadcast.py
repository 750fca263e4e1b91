"""10,000 idle WebSockets on one core, one broadcast to each: headrace vs uvicorn.

    python3 benchmarks/websocket/bench_idle_broadcast.py [--connections 10000]
        [--broadcasts 3] [--servers headrace,uvicorn] [--json]

Each server runs ``benchmarks/websocket/broadcast_app.py`` in one process pinned to core 1
(``taskset``; uvicorn with ``--ws websockets-sansio --loop uvloop``). This process, pinned to
core 0, raises its file-descriptor limit to the hard limit (the servers inherit it), opens
``--connections`` WebSockets in batches with a lean raw-socket client (one asyncio protocol per
socket on uvloop, no WebSocket library), and waits until every handshake is answered. The
sockets then stay idle; the server's RSS is read before and after. Each broadcast is one
``POST /broadcast``: the app sends one text message to every open WebSocket, and the figure is
the time from the request to the last socket receiving its message, with the server's CPU time
over that span (from ``/proc``). A broadcast counts as delivered only when every socket got
exactly one message. Client sockets close with a reset (``SO_LINGER`` 0) so that repeated runs
do not fill the ephemeral port range with TIME_WAIT entries.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import socket
import statistics
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_echo import EchoClient, running, tree_cpu_seconds, tree_rss_kib

APP = "benchmarks.websocket.broadcast_app:app"
BATCH = 500  # handshakes in flight at once (below every server's listen backlog)


class Tally:
    """What every socket of one run received: counted, and the time of the last delivery."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.received = 0
        self.last = 0.0
        self.all_in: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def delivered(self) -> None:
        self.received += 1
        self.last = time.perf_counter()
        if self.received >= self.expected and not self.all_in.done():
            self.all_in.set_result(None)


class IdleClient(EchoClient):
    """One idle WebSocket: the echo client's handshake and frame reader, sending nothing.

    Every data frame the server sends counts as a delivery (``next_message`` is the echo
    client's hook for a received frame).
    """

    def __init__(self) -> None:
        super().__init__(0, 0, b"", False)
        self.messages = 0
        self.tally: Tally | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        super().connection_made(transport)

    def next_message(self) -> None:
        self.messages += 1
        if self.tally is not None:
            self.tally.delivered()


async def open_idle(port: int, count: int) -> list[IdleClient]:
    loop = asyncio.get_running_loop()
    clients: list[IdleClient] = []
    while len(clients) < count:
        batch = min(BATCH, count - len(clients))
        connections = [loop.create_connection(IdleClient, "127.0.0.1", port) for _ in range(batch)]
        opened = [client for _, client in await asyncio.gather(*connections)]
        await asyncio.wait_for(asyncio.gather(*(client.opened for client in opened)), 60)
        clients.extend(opened)
    return clients


async def post_broadcast(port: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /broadcast HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    body = await reader.readexactly(length)
    writer.close()
    return int(body)


async def broadcast_once(port: int, pid: int, clients: list[IdleClient]) -> dict[str, float]:
    tally = Tally(len(clients))
    before = [client.messages for client in clients]
    for client in clients:
        client.tally = tally
    cpu_before = tree_cpu_seconds(pid)
    started = time.perf_counter()
    sent = await post_broadcast(port)
    with contextlib.suppress(TimeoutError):  # counted below: not every socket got it
        await asyncio.wait_for(asyncio.shield(tally.all_in), 60)
    cpu = tree_cpu_seconds(pid) - cpu_before
    exactly_once = sum(
        1 for client, count in zip(clients, before, strict=True) if client.messages == count + 1
    )
    return {
        "sent": sent,
        "delivered": exactly_once,
        "seconds": (tally.last or time.perf_counter()) - started,
        "server_cpu_ms": cpu * 1000,
    }


async def measure(port: int, pid: int, args: argparse.Namespace) -> dict[str, object]:
    await asyncio.sleep(0.5)
    rss_before = tree_rss_kib(pid)
    started = time.perf_counter()
    clients = await open_idle(port, args.connections)
    opened_s = time.perf_counter() - started
    await asyncio.sleep(1.0)
    rss_idle = tree_rss_kib(pid)
    rounds = [await broadcast_once(port, pid, clients) for _ in range(args.broadcasts)]
    rss_after = tree_rss_kib(pid)
    for client in clients:
        if client.transport is not None:
            client.transport.close()
    await asyncio.sleep(1.0)
    delivered = all(r["delivered"] == args.connections for r in rounds)
    return {
        "open_seconds": opened_s,
        "rss_before_mib": rss_before / 1024,
        "rss_idle_mib": rss_idle / 1024,
        "rss_after_broadcasts_mib": rss_after / 1024,
        "idle_kib_per_connection": (rss_idle - rss_before) / args.connections,
        "rounds": rounds,
        "all_delivered": delivered,
        "median_seconds": statistics.median(r["seconds"] for r in rounds),
        "median_server_cpu_ms": statistics.median(r["server_cpu_ms"] for r in rounds),
    }


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    if wanted < needed:
        raise SystemExit(f"the file-descriptor hard limit {hard} is below the {needed} needed")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--broadcasts", type=int, default=3, help="broadcasts per server")
    parser.add_argument("--servers", default="headrace,uvicorn")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    raise_fd_limit(args.connections + 100)
    import uvloop

    prefix: list[str] = []
    if (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
        prefix = ["taskset", "-c", "1"]
        os.sched_setaffinity(0, {0})
    report: dict[str, dict[str, object]] = {}
    for name in args.servers.split(","):
        with running(name, APP, prefix) as (port, pid):
            report[name] = result = uvloop.run(measure(port, pid, args))
        if not args.json:
            print(
                f"{name:10s} {args.connections} open in {result['open_seconds']:.1f} s, "
                f"RSS {result['rss_idle_mib']:.1f} MiB ({result['idle_kib_per_connection']:.1f} "
                f"KiB each), broadcast median {float(result['median_seconds']) * 1000:.0f} ms, "
                f"server CPU {result['median_server_cpu_ms']:.0f} ms, "
                f"all delivered: {result['all_delivered']}",
                flush=True,
            )
    if args.json:
        document = {
            "benchmark": "websocket-idle-broadcast",
            "connections": args.connections,
            "servers": report,
        }
        print(json.dumps(document, indent=1))


if __name__ == "__main__":
    main()
