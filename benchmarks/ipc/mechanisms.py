"""Prototype comparison of IPC mechanisms for a one-host channel layer (how it was chosen).

Three processes: a ping process, a pong process and (for the hub) a hub process. The ping side
sends a small message to channel "pong", the pong side receives it and sends it back to "ping";
one-way latency is half the round trip. Mechanisms:

- ``hub``: a Unix-socket hub process holding queues in memory; receivers park a request at the
  hub and are woken by the write of the sender (no polling).
- ``sqlite-poll-1ms``: a SQLite database in WAL mode used as a queue table; receivers poll
  every 1 ms.
- ``sqlite-busy``: the same, polling without sleeping (burns a core per receiver).
- ``shm-poll-1ms``: a shared-memory mailbox (multiprocessing.shared_memory) with a sequence
  counter the receiver polls every 1 ms (the lock-free shape; many writers would need locks).

Run: ``python3 benchmarks/ipc/mechanisms.py [rounds]``. Prints median and p99 one-way latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import sqlite3
import statistics
import struct
import sys
import tempfile
import time
from multiprocessing.shared_memory import SharedMemory

HEADER = struct.Struct("!I")


# --- hub --------------------------------------------------------------------------------


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = HEADER.unpack(await reader.readexactly(4))
    return await reader.readexactly(size)


def _frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload


def hub_main(path: str, ready: multiprocessing.synchronize.Event) -> None:
    queues: dict[bytes, list[bytes]] = {}
    waiters: dict[bytes, list[asyncio.StreamWriter]] = {}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                op, _, rest = (await _read_frame(reader)).partition(b" ")
                if op == b"R":
                    if queues.get(rest):
                        writer.write(_frame(queues[rest].pop(0)))
                    else:
                        waiters.setdefault(rest, []).append(writer)
                else:
                    channel, _, body = rest.partition(b" ")
                    if waiters.get(channel):
                        waiters[channel].pop(0).write(_frame(body))
                    else:
                        queues.setdefault(channel, []).append(body)

    async def serve() -> None:
        server = await asyncio.start_unix_server(handle, path)
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


async def _hub_side(path: str, me: bytes, peer: bytes, rounds: int, starts: bool) -> list[float]:
    reader, writer = await asyncio.open_unix_connection(path)
    samples: list[float] = []
    for _ in range(rounds):
        if starts:
            began = time.perf_counter()
            writer.write(_frame(b"S " + peer + b" hello"))
        writer.write(_frame(b"R " + me))
        await _read_frame(reader)
        if starts:
            samples.append((time.perf_counter() - began) / 2)
        else:
            writer.write(_frame(b"S " + peer + b" hello"))
    writer.close()
    return samples


def hub_pong(path: str, rounds: int) -> None:
    asyncio.run(_hub_side(path, b"pong", b"ping", rounds, starts=False))


def run_hub(rounds: int) -> list[float]:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "hub.sock")
        ready = multiprocessing.Event()
        hub = multiprocessing.Process(target=hub_main, args=(path, ready), daemon=True)
        hub.start()
        ready.wait(10)
        pong = multiprocessing.Process(target=hub_pong, args=(path, rounds))
        pong.start()
        samples = asyncio.run(_hub_side(path, b"ping", b"pong", rounds, starts=True))
        pong.join(30)
        hub.terminate()
        hub.join(10)
    return samples


# --- sqlite --------------------------------------------------------------------------------


def _sqlite_connect(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, timeout=10)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=OFF")
    return connection


def _sqlite_receive(connection: sqlite3.Connection, channel: str, pause: float) -> bytes:
    while True:
        connection.execute("BEGIN IMMEDIATE")
        row = connection.execute(
            "SELECT id, body FROM queue WHERE channel=? ORDER BY id LIMIT 1", (channel,)
        ).fetchone()
        if row is not None:
            connection.execute("DELETE FROM queue WHERE id=?", (row[0],))
            connection.execute("COMMIT")
            return bytes(row[1])
        connection.execute("COMMIT")
        if pause:
            time.sleep(pause)


def _sqlite_send(connection: sqlite3.Connection, channel: str, body: bytes) -> None:
    connection.execute("INSERT INTO queue(channel, body) VALUES (?, ?)", (channel, body))


def sqlite_pong(path: str, rounds: int, pause: float) -> None:
    connection = _sqlite_connect(path)
    for _ in range(rounds):
        _sqlite_send(connection, "ping", _sqlite_receive(connection, "pong", pause))


def run_sqlite(rounds: int, pause: float) -> list[float]:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "queue.db")
        connection = _sqlite_connect(path)
        connection.execute(
            "CREATE TABLE queue(id INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT, body BLOB)"
        )
        pong = multiprocessing.Process(target=sqlite_pong, args=(path, rounds, pause))
        pong.start()
        samples = []
        for _ in range(rounds):
            began = time.perf_counter()
            _sqlite_send(connection, "pong", b"hello")
            _sqlite_receive(connection, "ping", pause)
            samples.append((time.perf_counter() - began) / 2)
        pong.join(30)
    return samples


# --- shared memory --------------------------------------------------------------------------------

SLOT = struct.Struct("!QQ")  # sequence number written to "ping" slot, to "pong" slot


def _shm_wait(memory: SharedMemory, index: int, expected: int, pause: float) -> None:
    while SLOT.unpack_from(memory.buf, 0)[index] < expected:
        time.sleep(pause)


def _shm_post(memory: SharedMemory, index: int, value: int) -> None:
    struct.pack_into("!Q", memory.buf, index * 8, value)


def shm_pong(name: str, rounds: int, pause: float) -> None:
    memory = SharedMemory(name)
    for number in range(1, rounds + 1):
        _shm_wait(memory, 1, number, pause)
        _shm_post(memory, 0, number)
    memory.close()


def run_shm(rounds: int, pause: float) -> list[float]:
    memory = SharedMemory(create=True, size=SLOT.size)
    SLOT.pack_into(memory.buf, 0, 0, 0)
    pong = multiprocessing.Process(target=shm_pong, args=(memory.name, rounds, pause))
    pong.start()
    samples = []
    for number in range(1, rounds + 1):
        began = time.perf_counter()
        _shm_post(memory, 1, number)
        _shm_wait(memory, 0, number, pause)
        samples.append((time.perf_counter() - began) / 2)
    pong.join(30)
    memory.close()
    memory.unlink()
    return samples


def report(name: str, samples: list[float]) -> None:
    ordered = sorted(samples)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    median = statistics.median(ordered)
    print(f"{name:18} one-way median {median * 1e6:8.1f} us   p99 {p99 * 1e6:8.1f} us")


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    print(f"{rounds} round trips per mechanism, {os.cpu_count()} CPUs (shared with other work)")
    report("hub (unix socket)", run_hub(rounds))
    report("sqlite-poll-1ms", run_sqlite(rounds // 4, 0.001))
    report("sqlite-busy", run_sqlite(rounds, 0.0))
    report("shm-poll-1ms", run_shm(rounds // 4, 0.001))


if __name__ == "__main__":
    main()
