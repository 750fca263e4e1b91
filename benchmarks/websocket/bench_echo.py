"""WebSocket echo throughput and idle-connection memory: headrace vs uvicorn, daphne, granian.

    python3 benchmarks/websocket/bench_echo.py [--connections 50] [--messages 2000] [--size 32]
        [--idle 1000] [--servers headrace,uvicorn,daphne,granian] [--deflate] [--rounds 1]
        [--json]

Every server runs ``benchmarks/websocket/echo_app.py`` as a subprocess on a free loopback port
(pinned to core 1 with ``taskset``, this client to core 0, unless ``--no-pin``),
one worker, uvloop where the server supports it (uvicorn ``--ws websockets-sansio``, its fastest
WebSocket implementation). The load generator is a lean raw-socket client (one asyncio protocol
per connection, uvloop, pre-masked frames) in this process: ``--connections`` connections, each
sending ``--messages`` messages of ``--size`` bytes with exactly one message in flight. Then
``--idle`` connections are opened and held, and the server's RSS growth per 1,000 connections is
reported. ``--deflate`` makes the client offer permessage-deflate like a browser (the client then
inflates compressed echoes). Ratios are printed against uvicorn (best of ``--rounds``);
``--json`` prints one JSON document instead, with every round and the medians.

Everything shares one machine: client and server compete for CPU, so compare the ratios of one
run, not absolute figures across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _process import free_port

ROOT = Path(__file__).resolve().parents[2]
APP = "benchmarks.websocket.echo_app:app"
MASK = b"\x37\xfa\x21\x3d"
CLOSE_FRAME = b"\x88\x82" + MASK + bytes((0x03 ^ MASK[0], 0xE8 ^ MASK[1]))


def server_command(name: str, port: int, app: str = APP) -> list[str]:
    py = sys.executable
    port_text = str(port)
    if name == "headrace":
        return [py, "-m", "headrace", "-b", "127.0.0.1", "-p", port_text, "-v", "0", app]
    if name == "uvicorn":
        return [
            py, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", port_text,
            "--ws", "websockets-sansio", "--loop", "uvloop", "--log-level", "warning",
            "--no-access-log", "--lifespan", "off",
        ]  # fmt: skip
    if name == "daphne":
        return [py, "-m", "daphne", "-b", "127.0.0.1", "-p", port_text, "-v", "0", app]
    if name == "granian":
        return [
            py, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port",
            port_text, "--loop", "uvloop", "--workers", "1", "--no-log", app,
        ]  # fmt: skip
    raise ValueError(name)


@contextlib.contextmanager
def running(name: str, app: str = APP, prefix: Sequence[str] = ()) -> Iterator[tuple[int, int]]:
    """Start server ``name`` serving ``app``; ``prefix`` goes before its command (``taskset``)."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.Popen(
        [*prefix, *server_command(name, port, app)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}")
            time.sleep(0.1)
        else:
            raise RuntimeError(f"{name} did not start listening")
        yield port, process.pid
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def pinned_server() -> list[str]:
    """The ``taskset`` prefix that runs a server on core 1 (none on a 1-core machine)."""
    if (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
        return ["taskset", "-c", "1"]
    return []


def pin_client() -> None:
    """Run this process (the load generator) on core 0, away from the server's core."""
    if pinned_server():
        os.sched_setaffinity(0, {0})


def tree_rss_kib(pid: int) -> int:
    """RSS of a process and its children (granian forks a worker)."""
    total = 0
    pids = [pid]
    while pids:
        current = pids.pop()
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
            pids.extend(int(child) for child in children)
    return total


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children threads/processes so far."""
    total = 0
    pids = [pid]
    while pids:
        current = pids.pop()
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
            pids.extend(int(child) for child in children)
    return total / os.sysconf("SC_CLK_TCK")


def masked_frame(payload: bytes, opcode: int = 2) -> bytes:
    length = len(payload)
    if length < 126:
        head = bytes((0x80 | opcode, 0x80 | length))
    elif length < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0xFE, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0xFF, length)
    masked = bytes(byte ^ MASK[index % 4] for index, byte in enumerate(payload))
    return head + MASK + masked


class EchoClient(asyncio.Protocol):
    """One connection: handshake, then send a message each time the previous echo is back."""

    def __init__(self, port: int, messages: int, frame: bytes, deflate: bool) -> None:
        self.port = port
        self.remaining = messages
        self.frame = frame
        self.echo_size = len(frame) - 4  # the server's frame: same header, no mask key
        self.deflate = deflate
        self.inflater = zlib.decompressobj(wbits=-15)
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.upgraded = False
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop: not a subclass
        key = base64.b64encode(os.urandom(16)).decode()
        extension = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if self.deflate else ""
        transport.write(
            (
                f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n{extension}\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        if len(data) == self.echo_size and not self.buffer and data[0] == 0x81:
            self.next_message()  # fast path: exactly one uncompressed echo frame
            return
        buffer = self.buffer + data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self.opened.set_exception(RuntimeError(buffer[:200].decode("latin-1")))
                return
            self.upgraded = True
            buffer = buffer[end + 4 :]
            self.opened.set_result(None)
        self.buffer = self._consume(buffer)

    def _consume(self, buffer: bytes) -> bytes:
        while len(buffer) >= 2:
            length = buffer[1] & 0x7F
            head = 2
            if length == 126:
                length, head = struct.unpack("!H", buffer[2:4])[0], 4
            elif length == 127:
                length, head = struct.unpack("!Q", buffer[2:10])[0], 10
            if len(buffer) < head + length:
                break
            first = buffer[0]
            if first & 0x40:  # compressed echo
                self.inflater.decompress(buffer[head : head + length] + b"\x00\x00\xff\xff")
            buffer = buffer[head + length :]
            if first & 0x0F in (1, 2):
                self.next_message()
        return buffer

    def start(self) -> None:
        self.next_message()

    def next_message(self) -> None:
        if self.remaining == 0:
            if not self.done.done():
                self.done.set_result(None)
            return
        self.remaining -= 1
        assert self.transport is not None
        self.transport.write(self.frame)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("connection closed before the upgrade"))
        if not self.done.done():
            if self.remaining:
                self.done.set_exception(ConnectionError("server closed the connection"))
            else:
                self.done.set_result(None)


async def open_clients(
    port: int, count: int, messages: int, frame: bytes, deflate: bool
) -> list[EchoClient]:
    loop = asyncio.get_running_loop()
    clients: list[EchoClient] = []
    for _ in range(count):
        _, client = await loop.create_connection(
            lambda: EchoClient(port, messages, frame, deflate), "127.0.0.1", port
        )
        clients.append(client)
    await asyncio.wait_for(asyncio.gather(*(client.opened for client in clients)), 60)
    return clients


def close_clients(clients: list[EchoClient]) -> None:
    for client in clients:
        if client.transport is not None:
            client.transport.write(CLOSE_FRAME)
            client.transport.close()


async def echo_rate(port: int, pid: int, args: argparse.Namespace) -> tuple[float, float]:
    """(messages per second, server CPU microseconds per message)."""
    frame = masked_frame(os.urandom(args.size // 2).hex().encode()[: args.size], opcode=1)
    clients = await open_clients(port, args.connections, args.messages, frame, args.deflate)
    cpu_before = tree_cpu_seconds(pid)
    started = time.perf_counter()
    for client in clients:
        client.start()
    await asyncio.wait_for(asyncio.gather(*(client.done for client in clients)), 600)
    elapsed = time.perf_counter() - started
    cpu = tree_cpu_seconds(pid) - cpu_before
    close_clients(clients)
    await asyncio.sleep(0.5)
    total = args.connections * args.messages
    return total / elapsed, cpu / total * 1e6


async def idle_memory(port: int, pid: int, args: argparse.Namespace) -> float:
    await asyncio.sleep(0.5)
    before = tree_rss_kib(pid)
    clients = await open_clients(port, args.idle, 0, b"", args.deflate)
    await asyncio.sleep(1.0)
    after = tree_rss_kib(pid)
    close_clients(clients)
    await asyncio.sleep(0.5)
    return (after - before) / args.idle * 1000 / 1024  # MiB per 1,000 connections


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--servers", default="headrace,uvicorn,daphne,granian")
    parser.add_argument("--deflate", action="store_true", help="offer permessage-deflate")
    parser.add_argument("--rounds", type=int, default=1, help="best of N echo runs per server")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin server and client to separate cores"
    )
    args = parser.parse_args()
    import uvloop

    if not args.no_pin:
        pin_client()

    results: dict[str, tuple[float, float, float]] = {}
    report: dict[str, dict[str, object]] = {}
    for name in args.servers.split(","):
        with running(name, APP, pinned_server()) as (port, pid):
            runs = [uvloop.run(echo_rate(port, pid, args)) for _ in range(args.rounds)]
            memory = uvloop.run(idle_memory(port, pid, args)) if args.idle else 0.0
        rate, cpu = max(runs)
        results[name] = (rate, cpu, memory)
        report[name] = {
            "rounds": [{"msgs_per_s": r, "cpu_us": c} for r, c in runs],
            "median_msgs_per_s": statistics.median(r for r, _ in runs),
            "median_cpu_us": statistics.median(c for _, c in runs),
            "idle_kib_per_connection": memory * 1024 / 1000,
        }
        if args.json:
            continue
        print(
            f"{name:10s} {rate:9.0f} msg/s  {cpu:6.1f} server-CPU us/msg  "
            f"{memory:6.1f} MiB / 1000 idle",
            flush=True,
        )
    if args.json:
        print(json.dumps({"benchmark": "websocket-echo", "servers": report}, indent=1))
        return
    base = results.get("uvicorn")
    if base:
        mode = "deflate offered" if args.deflate else "no extension offered"
        print(f"\nratios vs uvicorn --ws websockets-sansio ({mode}):")
        for name, (rate, cpu, memory) in results.items():
            memory_ratio = f"{memory / base[2]:.2f}x" if base[2] > 0 else "n/a"
            print(
                f"  {name:10s} msgs/s {rate / base[0]:.2f}x   CPU per msg {cpu / base[1]:.2f}x   "
                f"memory per idle conn {memory_ratio}"
            )


if __name__ == "__main__":
    main()
