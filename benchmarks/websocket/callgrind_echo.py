"""Instructions per WebSocket echo message under ``valgrind --tool=callgrind``.

    python3 benchmarks/websocket/callgrind_echo.py                    # headrace, 4000 messages
    python3 benchmarks/websocket/callgrind_echo.py --servers headrace,uvicorn --json
    python3 benchmarks/websocket/callgrind_echo.py --keep /tmp/dumps  # for callgrind_annotate

The WebSocket twin of ``benchmarks/http/callgrind.py`` (whose server start, zeroing, dumping
and counting it reuses): the server runs ``benchmarks/websocket/echo_app.py`` under callgrind,
``--connections`` blocking clients (one thread each) open a WebSocket and send ``--size``-byte
masked text frames, each after the previous echo arrived; after a warm-up the counters are
zeroed, ``--messages`` echoes are counted and the total is divided by the number of messages.
As there, kernel work is not counted: this is the user-space share, which repeated runs
reproduce to a fraction of a percent however loaded the machine is.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "http"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_echo import CLOSE_FRAME, masked_frame
from callgrind import counted_instructions, in_threads

APP = "benchmarks.websocket.echo_app:app"
SERVERS = {
    "headrace": ["-m", "headrace", "-v", "0", "-p", "{port}", APP],
    "uvicorn": [
        "-m", "uvicorn", "--ws", "websockets-sansio", "--loop", "uvloop", "--no-access-log",
        "--log-level", "warning", "--lifespan", "off", "--port", "{port}", APP,
    ],
}  # fmt: skip


def one_connection(port: int, frame: bytes, count: int) -> None:
    """Open a WebSocket; send ``frame`` ``count`` times, each after the previous echo."""
    echo_size = len(frame) - 4  # the server's frame: the same header without the mask key
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            f"GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            buffer += receive(sock)
        if not buffer.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"handshake refused: {buffer[:100]!r}")
        buffer = buffer[buffer.index(b"\r\n\r\n") + 4 :]
        for _ in range(count):
            sock.sendall(frame)
            while len(buffer) < echo_size:
                buffer += receive(sock)
            buffer = buffer[echo_size:]
        sock.sendall(CLOSE_FRAME)


def receive(sock: socket.socket) -> bytes:
    data = sock.recv(65536)
    if not data:
        raise RuntimeError("server closed the connection")
    return data


def load(port: int, frame: bytes, messages: int, connections: int) -> None:
    per_connection = max(1, messages // connections)
    in_threads(connections, lambda: one_connection(port, frame, per_connection))


def instructions(server: str, args: argparse.Namespace) -> float:
    """Instructions (Ir) the server executes per echoed message (handshakes not counted)."""
    frame = masked_frame(b"x" * args.size, opcode=1)
    per_connection = max(1, args.messages // args.connections)
    keep = args.keep / f"callgrind.ws.{server}.out" if args.keep is not None else None
    total = counted_instructions(
        SERVERS[server],
        lambda port: load(port, frame, max(200, args.messages // 5), args.connections),
        lambda port: load_after_handshakes(port, frame, per_connection, args.connections),
        keep,
    )
    return total / (per_connection * args.connections)


def load_after_handshakes(port: int, frame: bytes, count: int, connections: int) -> None:
    """The measured load; its handshakes and closes add the same small share on every run."""
    load(port, frame, count * connections, connections)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--servers", default="headrace", help=f"comma-separated: {', '.join(SERVERS)}"
    )
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--keep", type=Path, help="copy each dump here as callgrind.ws.NAME.out")
    args = parser.parse_args()
    names = [name.strip() for name in args.servers.split(",") if name.strip()]
    unknown = [name for name in names if name not in SERVERS]
    if unknown:
        parser.error(f"--servers: unknown {', '.join(unknown)}; known: {', '.join(SERVERS)}")
    results = {name: instructions(name, args) for name in names}
    if args.json:
        print(json.dumps({"benchmark": "callgrind-websocket", "ir_per_message": results}))
        return
    for name, value in results.items():
        print(f"{name:10s} {value:10.0f} instructions per {args.size}-byte echo message")


if __name__ == "__main__":
    main()
