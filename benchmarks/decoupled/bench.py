"""Interface server -> channel layer -> workers: headrace against the seed's own Channels 1.x stack.

    python3 benchmarks/decoupled/bench.py [--stacks channels,headrace] [--rounds 3] [--workers 2]
        [--connections 50] [--messages 100] [--http-duration 4] [--http-concurrency 32]
        [--scenarios ws,/raw,/view] [--seed-venv /tmp/c1] [--redis URL] [--stack-cpus 1]
        [--client-cpus 0]

Both stacks run the SAME Django project (``project/``: consumers, routing, view), which imports
``channels`` or ``headrace`` by ``DECOUPLED_STACK``:

- ``channels``: ``daphne benchproj.asgi:channel_layer`` (Daphne 1.4) and ``--workers`` x
  ``manage.py runworker`` (Channels 1.1.8, asgi_redis 1.4, Django 1.11) in the Python 3.6
  virtualenv ``--seed-venv`` (see /work/shared/TOOLS.md or docs/deploying.md for the install);
- ``headrace``: ``python -m headrace benchproj.asgi:channel_layer`` and ``--workers`` x
  ``manage.py runworker`` in this Python, on ``headrace.layers.redis.RedisChannelLayer``.

By default the script starts its own redis-server on a free loopback port (flushed between
runs, stopped at the end); with ``--redis URL`` it uses that server with a fresh key prefix per
run and flushes nothing. Every round starts each stack from scratch (stack order alternates
between rounds), warms it up (a WebSocket echo and one request per path must come back, which
proves the workers are consuming) and then measures:

- WebSocket echo: ``--connections`` sockets, each sending ``--messages`` text messages with
  exactly one in flight (a lean raw-socket client in this process); messages/s and the p50/p99
  round trip of every message;
- HTTP: ``wrk -t1 -c<--http-concurrency> -d<--http-duration>s --latency`` per path in
  ``--scenarios`` (``/raw`` is a consumer answering ``http.request``, ``/view`` a Django view
  through the view consumer); requests/s and p50/p99;
- the CPU time (user + system, from /proc) the interface server, the workers and our Redis
  spent per WebSocket message and per HTTP request, which other load on the machine disturbs
  less than rates.

``--scenarios`` picks what runs (``ws`` is the echo; the others are paths), e.g.
``--scenarios /view --stacks headrace`` to profile the view path alone.

Each round prints its figures and the headrace/channels ratios; the summary gives the median of
the per-round ratios. ``--stack-cpus``/``--client-cpus`` pin the servers and the load
generators with ``taskset`` (the same CPU set for both stacks); the default pins nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import re
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

sys.path.append(str(Path(__file__).resolve().parents[1]))  # last: benchmarks/http shadows http
from _process import free_port, wait_listening, wrk_figure

HERE = Path(__file__).resolve().parent
PROJECT = HERE / "project"
ROOT = HERE.parents[1]
TARGET = "benchproj.asgi:channel_layer"
MASK = b"\x5a\x13\xc7\x09"
CLOSE_FRAME = b"\x88\x82" + MASK + bytes((0x03 ^ MASK[0], 0xE8 ^ MASK[1]))
STACKS = ("channels", "headrace", "headrace-ipc")
BASELINE = "channels"
DEFAULT_STACKS = "channels,headrace"


# ---------------------------------------------------------------------------------------------
# Processes


@dataclass
class Stack:
    """One stack's command lines and environment."""

    name: str
    interface: list[str]
    worker: list[str]
    env: dict[str, str]
    hub: list[str] | None = None  # the IPC layer's standalone hub, started first


def stack_for(name: str, args: argparse.Namespace, port: int, redis_url: str, logs: Path) -> Stack:
    prefix = f"bench-{name}-{uuid.uuid4().hex[:8]}"
    env = dict(
        os.environ,
        DECOUPLED_STACK=name.split("-")[0],
        DECOUPLED_REDIS=redis_url,
        DECOUPLED_PREFIX=prefix,
        DJANGO_SETTINGS_MODULE="benchproj.settings",
    )
    bind = ["-b", "127.0.0.1", "-p", str(port), "-v", "0"]
    if name == "channels":
        venv = Path(args.seed_venv)
        env["PYTHONPATH"] = str(PROJECT)
        python = str(venv / "bin" / "python")
        return Stack(
            name,
            [str(venv / "bin" / "daphne"), *bind, TARGET],
            [python, "manage.py", "runworker", "-v", "0"],
            env,
        )
    env["PYTHONPATH"] = os.pathsep.join((str(PROJECT), str(ROOT)))
    stack = Stack(
        name,
        [sys.executable, "-m", "headrace", *bind, TARGET],
        [sys.executable, "manage.py", "runworker", "-v", "0"],
        env,
    )
    if name == "headrace-ipc":
        env.update(DECOUPLED_LAYER="ipc", HEADRACE_IPC_DIR=str(logs))
        stack.hub = [sys.executable, "-m", "headrace.layers.ipc", "--prefix", prefix]
    return stack


def pinned(command: list[str], cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus, *command] if cpus else command


def spawn(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        return subprocess.Popen(
            command,
            cwd=PROJECT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


@contextlib.contextmanager
def running_stack(
    stack: Stack, args: argparse.Namespace, port: int, logs: Path
) -> Iterator[dict[str, list[int]]]:
    """Start the (hub,) interface server and the workers; yield their PIDs by role; stop all."""
    log = logs / f"{stack.name}.log"
    hub = [spawn(pinned(stack.hub, args.stack_cpus), stack.env, log)] if stack.hub else []
    processes = [*hub, spawn(pinned(stack.interface, args.stack_cpus), stack.env, log)]
    try:
        workers = [
            spawn(pinned(stack.worker, args.stack_cpus), stack.env, log)
            for _ in range(args.workers)
        ]
        processes.extend(workers)
        wait_listening(port, processes[len(hub)], timeout=60)
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"{stack.name}: {process.args} exited; see {log}")
        roles = {"interface": [processes[len(hub)].pid], "workers": [w.pid for w in workers]}
        if hub:
            roles["hub"] = [hub[0].pid]
        yield roles
    finally:
        for process in reversed(processes):
            stop(process)


class RedisServer:
    """Our own redis-server on a free loopback port, stopped by PID."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_listening(self.port, self.process)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def flush(self) -> None:
        with redis.Redis.from_url(self.url) as client:
            client.flushall()

    def close(self) -> None:
        stop(self.process)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes and all their threads and children."""
    total = 0
    pending = list(pids)
    while pending:
        pid = pending.pop()
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        with contextlib.suppress(OSError):
            pending.extend(
                int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            )
    return total / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------
# WebSocket echo load


def masked_text_frame(payload: bytes) -> bytes:
    masked = bytes(byte ^ MASK[index % 4] for index, byte in enumerate(payload))
    return bytes((0x81, 0x80 | len(payload))) + MASK + masked


class EchoConnection(asyncio.Protocol):
    """One socket: handshake, then one message in flight, timing each round trip."""

    def __init__(self, port: int, messages: int, frame: bytes) -> None:
        loop = asyncio.get_running_loop()
        self.port = port
        self.remaining = messages
        self.frame = frame
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.upgraded = False
        self.sent_at = 0.0
        self.round_trips: list[float] = []
        self.opened: asyncio.Future[None] = loop.create_future()
        self.done: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write(
            (
                f"GET /echo/ HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1\r\n\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self._fail(RuntimeError(buffer[:200].decode("latin-1")))
                return
            self.upgraded = True
            buffer = buffer[end + 4 :]
            self.opened.set_result(None)
        self.buffer = self._frames(buffer)

    def _frames(self, buffer: bytes) -> bytes:
        while len(buffer) >= 2:
            length, head = buffer[1] & 0x7F, 2
            if length == 126:
                length, head = struct.unpack("!H", buffer[2:4])[0], 4
            elif length == 127:
                length, head = struct.unpack("!Q", buffer[2:10])[0], 10
            if len(buffer) < head + length:
                break
            opcode = buffer[0] & 0x0F
            buffer = buffer[head + length :]
            if opcode in (1, 2):
                self.round_trips.append(time.perf_counter() - self.sent_at)
                self.send_next()
            elif opcode == 8:
                self._fail(ConnectionError("server closed the WebSocket"))
        return buffer

    def send_next(self) -> None:
        if self.remaining == 0:
            if not self.done.done():
                self.done.set_result(None)
            return
        self.remaining -= 1
        assert self.transport is not None
        self.sent_at = time.perf_counter()
        self.transport.write(self.frame)

    def _fail(self, error: Exception) -> None:
        for future in (self.opened, self.done):
            if not future.done():
                future.set_exception(error)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.remaining or not self.done.done():
            self._fail(ConnectionError("connection closed during the run"))

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(CLOSE_FRAME)
            self.transport.close()


@dataclass
class EchoResult:
    rate: float
    p50_ms: float
    p99_ms: float
    cpu_us: float
    cpu_us_by_role: dict[str, float]


async def echo_load(
    port: int, connections: int, messages: int, roles: dict[str, list[int]]
) -> EchoResult:
    loop = asyncio.get_running_loop()
    frame = masked_text_frame(b"decoupled echo 0123456789abcdef")
    clients: list[EchoConnection] = []
    try:
        for _ in range(connections):
            _, client = await loop.create_connection(
                lambda: EchoConnection(port, messages, frame), "127.0.0.1", port
            )
            clients.append(client)
        await asyncio.wait_for(asyncio.gather(*(c.opened for c in clients)), 120)
        cpu_before = {role: cpu_seconds(pids) for role, pids in roles.items()}
        started = time.perf_counter()
        for client in clients:
            client.send_next()
        await asyncio.wait_for(asyncio.gather(*(c.done for c in clients)), 600)
        elapsed = time.perf_counter() - started
        cpu = {role: cpu_seconds(pids) - cpu_before[role] for role, pids in roles.items()}
    finally:
        for client in clients:
            client.close()
    trips = sorted(t for client in clients for t in client.round_trips)
    total = connections * messages
    return EchoResult(
        total / elapsed,
        trips[len(trips) // 2] * 1000,
        trips[min(len(trips) - 1, int(len(trips) * 0.99))] * 1000,
        sum(cpu.values()) / total * 1e6,
        {role: seconds / total * 1e6 for role, seconds in cpu.items()},
    )


async def warm_up(port: int, paths: list[str], patience: float = 60) -> None:
    """One echo and one response per path: proves the interface server and a worker work."""
    import httpx

    deadline = time.monotonic() + patience
    await echo_load(port, 1, 3, {})
    async with httpx.AsyncClient(timeout=patience) as client:
        for path in paths:
            while True:
                response = await client.get(f"http://127.0.0.1:{port}{path}")
                if response.status_code == 200:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{path}: {response.status_code} {response.text[:200]}")
                await asyncio.sleep(0.2)


# ---------------------------------------------------------------------------------------------
# HTTP load (wrk)


@dataclass
class HttpResult:
    rate: float
    p50_ms: float
    p99_ms: float
    errors: str
    cpu_us: float = float("nan")
    cpu_us_by_role: dict[str, float] = field(default_factory=dict)


def wrk_milliseconds(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def http_load(
    port: int, path: str, args: argparse.Namespace, roles: dict[str, list[int]]
) -> HttpResult:
    command = pinned(
        [
            "wrk",
            "-t1",
            f"-c{args.http_concurrency}",
            f"-d{args.http_duration}s",
            "--timeout",
            "30s",
            "--latency",
            f"http://127.0.0.1:{port}{path}",
        ],
        args.client_cpus,
    )
    cpu_before = {role: cpu_seconds(pids) for role, pids in roles.items()}
    output = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=args.http_duration + 60
    ).stdout
    cpu = {role: cpu_seconds(pids) - cpu_before[role] for role, pids in roles.items()}
    total = int(wrk_figure(output, r"(\d+) requests in")) or 1
    rate = float(wrk_figure(output, r"Requests/sec:\s+([\d.]+)"))
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    problems = [
        line.strip() for line in output.splitlines() if "Non-2xx" in line or "Socket errors" in line
    ]
    return HttpResult(
        rate,
        wrk_milliseconds(p50.group(1)) if p50 else float("nan"),
        wrk_milliseconds(p99.group(1)) if p99 else float("nan"),
        "; ".join(problems),
        sum(cpu.values()) / total * 1e6,
        {role: seconds / total * 1e6 for role, seconds in cpu.items()},
    )


# ---------------------------------------------------------------------------------------------
# Rounds and report


@dataclass
class RoundResult:
    echo: EchoResult | None
    http: dict[str, HttpResult] = field(default_factory=dict)


def run_stack(
    name: str, args: argparse.Namespace, server: RedisServer | None, logs: Path
) -> RoundResult:
    if server is not None:
        server.flush()
    redis_url = server.url if server is not None else args.redis
    port = free_port()
    stack = stack_for(name, args, port, redis_url, logs)
    with running_stack(stack, args, port, logs) as roles:
        if server is not None and stack.hub is None:
            roles["redis"] = [server.process.pid]
        run = asyncio.run
        with contextlib.suppress(ImportError):
            import uvloop

            run = uvloop.run
        run(warm_up(port, args.paths))
        echo = run(echo_load(port, args.connections, args.messages, roles)) if args.ws else None
        result = RoundResult(echo)
        for path in args.paths:
            result.http[path] = http_load(port, path, args, roles)
    return result


def describe(name: str, result: RoundResult) -> str:
    echo = result.echo
    parts = [f"  {name}"]
    if echo is not None:
        parts.append(
            f"    ws     {echo.rate:8.0f} msg/s p50 {echo.p50_ms:7.2f} ms p99 {echo.p99_ms:8.2f}"
            f" ms {echo.cpu_us:7.0f} CPU-us/msg ({by_role(echo.cpu_us_by_role)})"
        )
    for path, http in result.http.items():
        note = f" [{http.errors}]" if http.errors else ""
        parts.append(
            f"    {path:6s} {http.rate:8.0f} req/s p50 {http.p50_ms:7.2f} ms"
            f" p99 {http.p99_ms:8.2f} ms {http.cpu_us:7.0f} CPU-us/req"
            f" ({by_role(http.cpu_us_by_role)}){note}"
        )
    return "\n".join(parts)


def by_role(cpu_us: dict[str, float]) -> str:
    return ", ".join(f"{role} {us:.0f}" for role, us in cpu_us.items())


def ratios(new: RoundResult, old: RoundResult) -> dict[str, float]:
    """headrace / channels for rates, channels / headrace for latencies and CPU (>1 = better)."""
    values: dict[str, float] = {}
    if new.echo is not None and old.echo is not None:
        values["ws msg/s"] = new.echo.rate / old.echo.rate
        values["ws p50 (old/new)"] = old.echo.p50_ms / new.echo.p50_ms
        values["ws p99 (old/new)"] = old.echo.p99_ms / new.echo.p99_ms
        values["ws CPU/msg (old/new)"] = old.echo.cpu_us / new.echo.cpu_us
    for path in new.http:
        values[f"{path} req/s"] = new.http[path].rate / old.http[path].rate
        values[f"{path} p50 (old/new)"] = old.http[path].p50_ms / new.http[path].p50_ms
        values[f"{path} p99 (old/new)"] = old.http[path].p99_ms / new.http[path].p99_ms
        values[f"{path} CPU/req (old/new)"] = old.http[path].cpu_us / new.http[path].cpu_us
    return values


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--stacks", default=DEFAULT_STACKS, help=f"comma-separated, of {', '.join(STACKS)}"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="runworker processes per stack")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--messages", type=int, default=100, help="per connection")
    parser.add_argument("--http-duration", type=int, default=4, help="seconds per wrk run")
    parser.add_argument("--http-concurrency", type=int, default=32)
    parser.add_argument(
        "--scenarios", default="ws,/raw,/view", help="comma-separated: ws (the echo) and paths"
    )
    parser.add_argument("--seed-venv", default="/tmp/c1")
    parser.add_argument("--redis", help="use this Redis URL (no flush) instead of our own")
    parser.add_argument("--stack-cpus", help="taskset CPU list for servers and workers")
    parser.add_argument("--client-cpus", help="taskset CPU list for wrk")
    args = parser.parse_args()
    scenarios = [scenario for scenario in args.scenarios.split(",") if scenario]
    if bad := [s for s in scenarios if s != "ws" and not s.startswith("/")]:
        parser.error(f"unknown scenarios (ws or a /path): {', '.join(bad)}")
    args.ws = "ws" in scenarios
    args.paths = [scenario for scenario in scenarios if scenario != "ws"]
    names = [name for name in args.stacks.split(",") if name]
    if unknown := set(names) - set(STACKS):
        parser.error(f"unknown stacks: {', '.join(sorted(unknown))}")
    if args.paths and shutil.which("wrk") is None:
        parser.error(
            "wrk is not installed (apt-get install wrk), or leave paths out of --scenarios"
        )

    workdir = Path(tempfile.mkdtemp(prefix="bench-decoupled-"))
    server = None if args.redis else RedisServer(workdir)
    print(
        f"{args.workers} workers per stack; "
        + (f"ws {args.connections} x {args.messages} messages; " if args.ws else "")
        + f"wrk -c{args.http_concurrency} -d{args.http_duration}s on {', '.join(args.paths)}; "
        f"logs in {workdir}; load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    per_round: dict[str, list[dict[str, float]]] = {}
    try:
        for number in range(1, args.rounds + 1):
            order = names if number % 2 else names[::-1]
            results = {name: run_stack(name, args, server, workdir) for name in order}
            print(f"round {number} (load average {os.getloadavg()[0]:.1f})")
            for name in names:
                print(describe(name, results[name]), flush=True)
            for name in names:
                if name == BASELINE or BASELINE not in results:
                    continue
                values = ratios(results[name], results[BASELINE])
                per_round.setdefault(name, []).append(values)
                print(f"  ratios {name} vs {BASELINE}: " + ", ".join(
                    f"{key} {value:.2f}x" for key, value in values.items()
                ), flush=True)  # fmt: skip
    finally:
        if server is not None:
            server.close()
    for name, rounds in per_round.items():
        print(f"\nmedian of {len(rounds)} per-round ratios ({name} vs {BASELINE}, >1 = better):")
        for key in rounds[0]:
            print(f"  {key:22s} {statistics.median(r[key] for r in rounds):6.2f}x")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
