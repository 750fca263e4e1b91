"""Recovery after reconnect end to end: N WebSocket clients reconnect at once to the real
server (tests/recovery/app.py: RecoveringJsonWebsocketConsumer), each missing M messages.

The room has history but no presence (``RECOVERY_BENCH``: a 1,000-member room with join
events would measure presence). Per round: N clients join room ``bench`` (positions ``{}``),
leave, M messages are published, then all N reconnect with their positions at once (at most
100 handshakes in flight); the round ends when every client has its M
missed messages and the recovery frame (each checked: offsets in order, none twice). The peer
in the same run is the same N clients connecting *fresh* and receiving M live messages
(``live``, connecting included as in ``recover``): what recovery costs over plain delivery of
the same frames. Reported: the median
over ``--rounds`` of wall time and of the server's CPU time (user + system, from /proc), per
delivered message. The clients run in this process, so wall time includes their parsing.

Usage: python3 benchmarks/history/bench_recovery_server.py [--clients 1000] [--missed 100]
       [--rounds 3] [--layer memory|ipc]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from websockets.asyncio.client import ClientConnection, connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _process import free_port, wait_listening

REPO = Path(__file__).resolve().parents[2]
GROUP = "room.bench"


def server_cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


HANDSHAKES = asyncio.Semaphore(100)
"""At most this many handshakes in flight (a 2-core machine answers 1,000 at once too slowly
for the server's WebSocket connect timeout)."""


async def open_client(port: int, positions: dict[str, Any]) -> ClientConnection:
    url = f"ws://127.0.0.1:{port}/ws/bench/?positions=" + quote(json.dumps(positions))
    async with HANDSHAKES:
        return await connect(url, open_timeout=120, max_queue=None, ping_interval=None)


async def read_join(socket: ClientConnection) -> list[Any]:
    """Frames up to the recovery frame: (the missed offsets, the recovery body)."""
    offsets: list[int] = []
    while True:
        frame = json.loads(await socket.recv())
        if "__recovery__" in frame:
            return [offsets, frame["__recovery__"]]
        if "__position__" in frame:
            offsets.append(frame["__position__"][1])


async def read_offsets(socket: ClientConnection, count: int) -> list[int]:
    offsets: list[int] = []
    while len(offsets) < count:
        frame = json.loads(await socket.recv())
        if "__position__" in frame:
            offsets.append(frame["__position__"][1])
    return offsets


async def publish(port: int, count: int) -> None:
    async with httpx.AsyncClient(timeout=120) as http:
        (
            await http.post(f"http://127.0.0.1:{port}/publish/bench/{count}/", content=b"b")
        ).raise_for_status()


async def recover_round(port: int, pid: int, clients: int, missed: int) -> tuple[float, float]:
    sockets = await asyncio.gather(*(open_client(port, {}) for _ in range(clients)))
    joins = await asyncio.gather(*(read_join(s) for s in sockets))
    positions = [{GROUP: [body["epoch"], body["offset"]]} for _, body in joins]
    await asyncio.gather(*(s.close() for s in sockets))
    await publish(port, missed)
    cpu, start = server_cpu(pid), time.perf_counter()
    sockets = await asyncio.gather(*(open_client(port, p) for p in positions))
    joins = await asyncio.gather(*(read_join(s) for s in sockets))
    wall, cpu = time.perf_counter() - start, server_cpu(pid) - cpu
    for (offsets, body), position in zip(joins, positions, strict=True):
        first = position[GROUP][1] + 1
        assert body["recovered"] is True and offsets == list(range(first, first + missed))
    await asyncio.gather(*(s.close() for s in sockets))
    return wall, cpu


async def live_round(port: int, pid: int, clients: int, missed: int) -> tuple[float, float]:
    cpu, start = server_cpu(pid), time.perf_counter()  # connecting counts, as in recover
    sockets = await asyncio.gather(*(open_client(port, {}) for _ in range(clients)))
    await asyncio.gather(*(read_join(s) for s in sockets))
    received, _ = await asyncio.gather(
        asyncio.gather(*(read_offsets(s, missed) for s in sockets)), publish(port, missed)
    )
    wall, cpu = time.perf_counter() - start, server_cpu(pid) - cpu
    assert all(len(set(offsets)) == missed for offsets in received)
    await asyncio.gather(*(s.close() for s in sockets))
    return wall, cpu


def start_server(layer: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "RECOVERY_LAYER": layer,
        "RECOVERY_BENCH": "1",
        "RECOVERY_IPC_PREFIX": f"bench-{uuid.uuid4().hex[:8]}",
    }
    argv = [sys.executable, "-m", "headrace", "-b", "127.0.0.1", "-p", str(port)]
    argv += ["-v", "0", "tests.recovery.app:application"]
    process = subprocess.Popen(argv, cwd=REPO, env=env, stderr=subprocess.DEVNULL)
    wait_listening(port, process)
    return process, port


async def main(arguments: argparse.Namespace) -> None:
    process, port = start_server(arguments.layer)
    try:
        results: dict[str, list[tuple[float, float]]] = {"recover": [], "live": []}
        for _ in range(arguments.rounds):  # interleaved: the machine's noise hits both
            for name, run in (("recover", recover_round), ("live", live_round)):
                results[name].append(
                    await run(port, process.pid, arguments.clients, arguments.missed)
                )
    finally:
        process.terminate()
        process.wait(30)
    delivered = arguments.clients * arguments.missed
    print(
        f"{arguments.clients} clients x {arguments.missed} messages, layer {arguments.layer}, "
        f"median of {arguments.rounds} rounds"
    )
    medians = {}
    for name, rounds in results.items():
        wall = statistics.median(r[0] for r in rounds)
        cpu = statistics.median(r[1] for r in rounds)
        medians[name] = (wall, cpu)
        print(
            f"  {name:8} wall {wall:7.3f} s  ({wall / delivered * 1e6:6.1f} us/message)  "
            f"server CPU {cpu:7.3f} s ({cpu / delivered * 1e6:6.1f} us/message)"
        )
    ratio = medians["recover"][1] / medians["live"][1] if medians["live"][1] else float("nan")
    print(f"  recover/live server CPU: {ratio:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--missed", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layer", choices=["memory", "ipc"], default="memory")
    asyncio.run(main(parser.parse_args()))
