"""SIGHUP reloads under load: does ``headrace --workers 2`` drop any request while reloading?

Clients open a new TCP connection for every request (the case a graceful drain can get wrong:
a connection accepted by an old worker in the instant before it stops accepting) and count every
answer that is not a complete ``200``. Meanwhile the script sends ``SIGHUP`` to the supervisor,
waits until the new generation is ready and the old one is gone, and repeats.

Run: ``python3 benchmarks/workers/reload_stress.py [--clients 8] [--reloads 10] [--pause 1.0]``.
Prints the number of requests served and of failures (each failure with its reason). Figures
depend on the machine's load; the number that matters is ``failed``, which must be 0.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP = "examples.hello.asgi:application"
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
WAIT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def one_request(port: int) -> str | None:
    """One request on a fresh connection; None when answered 200, else what went wrong."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
            sock.sendall(REQUEST)
            answer = bytearray()
            while chunk := sock.recv(65536):
                answer += chunk
    except OSError as exc:
        return type(exc).__name__
    if not answer:
        return "closed without a response"
    if not answer.startswith(b"HTTP/1.1 200"):
        return answer.split(b"\r\n", 1)[0].decode(errors="replace")
    return None


class Load:
    """``clients`` threads sending requests until stopped."""

    def __init__(self, port: int, clients: int) -> None:
        self.port = port
        self.served = 0
        self.failures: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client) for _ in range(clients)]

    def _client(self) -> None:
        while not self._stop.is_set():
            failure = one_request(self.port)
            with self._lock:
                if failure is None:
                    self.served += 1
                else:
                    self.failures[failure] += 1

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(WAIT)


def children(pid: int) -> set[int]:
    try:
        return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except FileNotFoundError:
        return set()


def wait_for(condition: object, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--reloads", type=int, default=10)
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between reloads")
    arguments = parser.parse_args()
    port = free_port()
    folder = tempfile.mkdtemp(prefix="hr-reload-stress-")
    log_path = Path(folder) / "supervisor.log"
    env = {**os.environ, "HEADRACE_IPC_DIR": folder}
    command = [sys.executable, "-m", "headrace", "-v", "1", "--workers", "2", "--no-ipc-hub"]
    with log_path.open("wb") as log:
        supervisor = subprocess.Popen(
            [*command, "-p", str(port), APP], cwd=ROOT, stdout=log, stderr=log, env=env
        )

    def ready() -> int:
        return log_path.read_text(errors="replace").count(" is ready")

    try:
        wait_for(lambda: ready() >= 2, "the first workers")
        began = time.monotonic()
        with Load(port, arguments.clients) as load:
            for number in range(arguments.reloads):
                time.sleep(arguments.pause)
                old = children(supervisor.pid)
                supervisor.send_signal(signal.SIGHUP)
                wait_for(lambda n=number: ready() >= 2 * (n + 2), "a new generation")
                wait_for(lambda o=old: not children(supervisor.pid) & o, "the old generation")
            time.sleep(arguments.pause)
        elapsed = time.monotonic() - began
    finally:
        supervisor.send_signal(signal.SIGTERM)
        try:
            supervisor.wait(WAIT)
        except subprocess.TimeoutExpired:
            supervisor.kill()
            supervisor.wait()
        shutil.rmtree(folder, ignore_errors=True)
    failed = sum(load.failures.values())
    print(
        f"{os.cpu_count()} CPUs shared with the clients (and any other work); "
        f"{arguments.clients} clients, a new connection per request"
    )
    print(
        f"{arguments.reloads} SIGHUP reloads in {elapsed:.1f} s: "
        f"{load.served} requests served, {failed} failed"
    )
    for reason, count in load.failures.most_common():
        print(f"  {count} x {reason}")


if __name__ == "__main__":
    main()
