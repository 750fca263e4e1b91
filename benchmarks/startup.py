"""Startup to first response: from ``exec`` of the server to the first ``200`` it answers.

    python3 benchmarks/startup.py                       # headrace, uvicorn; 5 starts each
    python3 benchmarks/startup.py --starts 9 --servers headrace,uvicorn,granian --json

Each start launches the server (one process, the HTTP benchmark's app, access log off), then
polls ``GET /`` on a fresh connection every millisecond until one answers ``200``; the time
from just before ``Popen`` to that answer is one sample. Servers alternate start by start so
background load hits them alike; the median of ``--starts`` is reported, after one uncounted
start per server (it writes the bytecode cache: ``PYTHONDONTWRITEBYTECODE`` is removed from
the servers' environment, so a source checkout is measured as an installed package runs).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _process import free_port, stop

REPO = Path(__file__).resolve().parents[1]
APP = "benchmarks.http.apps:app"
SERVERS = {
    "headrace": [sys.executable, "-m", "headrace", "-v", "0", "-p", "{port}", APP],
    "uvicorn": [
        sys.executable, "-m", "uvicorn", "--http", "httptools", "--loop", "uvloop",
        "--no-access-log", "--log-level", "warning", "--port", "{port}", APP,
    ],
    "granian": [
        sys.executable, "-m", "granian", "--interface", "asgi", "--workers", "1",
        "--log-level", "warning", "--port", "{port}", APP,
    ],
    "hypercorn": [
        sys.executable, "-m", "hypercorn", "--log-level", "warning", "--bind",
        "127.0.0.1:{port}", APP,
    ],
}  # fmt: skip
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
TIMEOUT = 30.0


def answered(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(REQUEST)
            return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def one_start(name: str) -> float:
    """Seconds from launching ``name`` to its first 200."""
    port = free_port()
    command = [part.format(port=port) for part in SERVERS[name]]
    environment = dict(os.environ, PYTHONPATH=str(REPO))
    # Compiled bytecode is used and written (an installed peer has its .pyc files; a source
    # tree run with PYTHONDONTWRITEBYTECODE=1 would compile every module at every start).
    environment.pop("PYTHONDONTWRITEBYTECODE", None)
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=REPO, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while not answered(port):
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with status {process.returncode}")
            if time.perf_counter() - started > TIMEOUT:
                raise RuntimeError(f"{name} did not answer within {TIMEOUT} s")
            time.sleep(0.001)
        return time.perf_counter() - started
    finally:
        stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--starts", type=int, default=5, help="starts per server (median)")
    parser.add_argument("--servers", default="headrace,uvicorn")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    names = [name.strip() for name in args.servers.split(",") if name.strip()]
    unknown = [name for name in names if name not in SERVERS]
    if unknown:
        parser.error(f"--servers: unknown {', '.join(unknown)}; known: {', '.join(SERVERS)}")
    samples: dict[str, list[float]] = {name: [] for name in names}
    for name in names:
        one_start(name)  # not counted: writes the bytecode cache, warms the page cache
    for _ in range(args.starts):
        for name in names:
            samples[name].append(one_start(name) * 1000)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    if args.json:
        print(json.dumps({"benchmark": "startup", "ms": samples, "median_ms": medians}))
        return
    for name, value in medians.items():
        listed = " ".join(f"{sample:.0f}" for sample in samples[name])
        print(f"{name:10s} median {value:6.1f} ms to the first response  ({listed})")


if __name__ == "__main__":
    main()
