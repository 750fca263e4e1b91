"""Plaintext req/s with two worker processes: ``headrace --workers 2`` vs ``uvicorn --workers 2``.

Both serve the same ASGI app (``examples.hello.asgi:application``, a short text/plain body),
with uvloop where the server supports it, in the same run, loaded by ``wrk`` over keep-alive
connections. The machine has few cores shared with the load generator (and, during development,
with other work), so compare the ratio rather than the absolute numbers.

Run: ``python3 benchmarks/workers/plaintext.py [--duration 10] [--connections 64] [--rounds 2]``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _process import free_port

ROOT = Path(__file__).resolve().parents[2]
APP = "examples.hello.asgi:application"


def command(server: str, port: int) -> list[str]:
    if server == "headrace":
        return [sys.executable, "-m", "headrace", "--workers", "2", "-p", str(port), "-v", "0"]
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--workers",
        "2",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def run_wrk(port: int, duration: int, connections: int) -> float:
    output = subprocess.run(
        [
            "wrk",
            "-t",
            "2",
            "-c",
            str(connections),
            "-d",
            f"{duration}s",
            f"http://127.0.0.1:{port}/",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if match is None or "Non-2xx" in output or "Socket errors" in output:
        print(output)
    assert match is not None
    return float(match.group(1))


def measure(server: str, duration: int, connections: int) -> float:
    port = free_port()
    process = subprocess.Popen([*command(server, port), APP], cwd=ROOT)
    try:
        wait_for_port(port)
        time.sleep(1.0)  # let every worker finish booting before the load starts
        run_wrk(port, 2, connections)  # warm-up
        return run_wrk(port, duration, connections)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            # Workers drain themselves once their supervisor is gone.
            process.kill()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    arguments = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed")
    print(f"{os.cpu_count()} CPUs shared by both workers and wrk (and any other work)")
    results: dict[str, list[float]] = {"headrace": [], "uvicorn": []}
    for _ in range(arguments.rounds):
        for server in results:
            rate = measure(server, arguments.duration, arguments.connections)
            results[server].append(rate)
            print(f"{server:9} --workers 2: {rate:10.0f} req/s")
    middle = {server: statistics.median(rates) for server, rates in results.items()}
    print(
        f"median of {arguments.rounds}: headrace {middle['headrace']:.0f} req/s, uvicorn "
        f"{middle['uvicorn']:.0f} req/s, ratio {middle['headrace'] / middle['uvicorn']:.2f}x"
    )
    paired = statistics.median(
        h / u for h, u in zip(results["headrace"], results["uvicorn"], strict=True)
    )
    print(f"median of the {arguments.rounds} per-round ratios (adjacent runs): {paired:.2f}x")
    best = {server: max(rates) for server, rates in results.items()}
    print(
        f"best of {arguments.rounds}: headrace {best['headrace']:.0f} req/s, "
        f"uvicorn {best['uvicorn']:.0f} req/s, ratio {best['headrace'] / best['uvicorn']:.2f}x"
    )


if __name__ == "__main__":
    main()
