"""Instructions per HTTP/1.1 request under ``valgrind --tool=callgrind``: a load-proof figure.

    python3 benchmarks/http/callgrind.py                      # headrace, 3000 requests
    python3 benchmarks/http/callgrind.py --server uvicorn --requests 2000
    python3 benchmarks/http/callgrind.py --path /64k --json

Wall-clock throughput on a shared 2-core machine moves by ±30 % with the other load; the
number of instructions the server process executes per request does not. The server runs
``benchmarks/http/apps.py`` under callgrind; after a warm-up the counters are zeroed
(``callgrind_control --zero``), ``--requests`` keep-alive GET requests go over
``--connections`` connections (one request in flight on each, as wrk does), and the counters
are dumped and divided by the number of requests. Kernel work (the send and receive system
calls) is not counted: this is the user-space share, the part the server's code decides.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _process import free_port, stop, wait_listening

REPO = Path(__file__).resolve().parents[2]
APP = "benchmarks.http.apps:app"
SERVERS = {
    "headrace": ["-m", "headrace", "-v", "0", "-p", "{port}", APP],
    "headrace-log": ["-m", "headrace", "-p", "{port}", APP],
    "uvicorn": [
        "-m", "uvicorn", "--http", "httptools", "--loop", "uvloop", "--no-access-log",
        "--log-level", "warning", "--port", "{port}", APP,
    ],
}  # fmt: skip
START_TIMEOUT = 180.0  # Python starts slowly under valgrind


def one_connection(port: int, path: str, count: int) -> None:
    """``count`` requests on one keep-alive connection, each after the previous response."""
    request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        buffer = b""
        for _ in range(count):
            sock.sendall(request)
            buffer = read_response(sock, buffer)


def read_response(sock: socket.socket, buffer: bytes) -> bytes:
    """Read one response (Content-Length or chunked) from ``buffer`` + the socket; the rest."""
    while True:
        end = response_end(buffer)
        if end is not None:
            return buffer[end:]
        data = sock.recv(262144)
        if not data:
            raise RuntimeError("server closed the connection")
        buffer += data


def response_end(buffer: bytes) -> int | None:
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    head = buffer[:head_end].lower()
    match = re.search(rb"content-length: *(\d+)", head)
    if match is not None:
        end = head_end + 4 + int(match.group(1))
        return end if len(buffer) >= end else None
    if b"transfer-encoding: chunked" not in head:
        raise RuntimeError(f"response without framing: {head!r}")
    last = buffer.find(b"0\r\n\r\n", head_end + 4)  # the small bodies here hold no "0\r\n"
    return None if last < 0 else last + 5


def load(port: int, path: str, requests: int, connections: int) -> None:
    per_connection = max(1, requests // connections)
    in_threads(connections, lambda: one_connection(port, path, per_connection))


def in_threads(count: int, client: Callable[[], None]) -> None:
    """Run ``client`` in ``count`` threads at once; raise if any of them failed."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            client()
        except BaseException as exc:  # reported below, after every thread ended
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"{len(errors)} client connection(s) failed: {errors[0]!r}")


def instructions(
    server: str, path: str, requests: int, connections: int, keep: Path | None = None
) -> float:
    """Instructions (Ir) the server executes per request."""
    per_connection = max(1, requests // connections)
    total = counted_instructions(
        SERVERS[server],
        lambda port: load(port, path, max(200, requests // 5), connections),  # warm-up
        lambda port: load(port, path, requests, connections),
        keep / f"callgrind.{server}.out" if keep is not None else None,
    )
    return total / (per_connection * connections)


def counted_instructions(
    arguments: list[str],
    warm_up: Callable[[int], None],
    measured: Callable[[int], None],
    keep: Path | None = None,
) -> int:
    """Ir the server (``python3`` + ``arguments``, ``{port}`` filled in) executes in ``measured``.

    The server starts under callgrind, ``warm_up(port)`` runs (caches, imports), the counters
    are zeroed, ``measured(port)`` runs and the counters are dumped; ``keep`` gets a copy.
    """
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "callgrind.out"
        command = [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p",
            sys.executable, *(part.format(port=port) for part in arguments),
        ]  # fmt: skip
        process = subprocess.Popen(
            command,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
        )
        try:
            wait_listening(port, process, START_TIMEOUT)
            warm_up(port)
            control(process.pid, "--zero")
            measured(port)
            control(process.pid, "--dump")
            dump = newest_dump(Path(folder), process.pid)
            total = dumped_instructions(dump)
            if keep is not None:
                shutil.copy(dump, keep)
        finally:
            stop(process, grace=60)
    return total


def control(pid: int, action: str) -> None:
    subprocess.run(
        ["callgrind_control", action, str(pid)], check=True, capture_output=True, timeout=120
    )


def newest_dump(folder: Path, pid: int) -> Path:
    """The newest dump of ``pid`` (written by ``callgrind_control --dump``)."""
    dumps = sorted(folder.glob(f"callgrind.out.{pid}.*"), key=lambda path: path.stat().st_mtime)
    if not dumps:
        raise RuntimeError("callgrind wrote no dump")
    return dumps[-1]


def dumped_instructions(dump: Path) -> int:
    """The Ir total of one callgrind dump."""
    text = dump.read_text(errors="replace")
    match = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
    if match is None:
        raise RuntimeError("no summary line in the callgrind dump")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--servers", default="headrace", help=f"comma-separated: {', '.join(SERVERS)}"
    )
    parser.add_argument("--path", default="/", help="/ (13 bytes) or /64k")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--keep",
        type=Path,
        help="copy each dump here (for callgrind_annotate) as callgrind.NAME.out",
    )
    args = parser.parse_args()
    names = [name.strip() for name in args.servers.split(",") if name.strip()]
    unknown = [name for name in names if name not in SERVERS]
    if unknown:
        parser.error(f"--servers: unknown {', '.join(unknown)}; known: {', '.join(SERVERS)}")
    results = {
        name: instructions(name, args.path, args.requests, args.connections, args.keep)
        for name in names
    }
    if args.json:
        print(json.dumps({"benchmark": "callgrind", "path": args.path, "ir_per_request": results}))
        return
    for name, value in results.items():
        print(f"{name:14s} {value:10.0f} instructions per request ({args.path})")


if __name__ == "__main__":
    main()
