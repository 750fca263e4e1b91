"""Helpers the benchmark scripts share for starting peer servers on loopback ports."""

from __future__ import annotations

import re
import socket
import subprocess
import time


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """Return once ``port`` accepts connections; raise if ``process`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on port {port}")


def stop(process: subprocess.Popen[bytes], grace: float = 10) -> None:
    """SIGTERM, up to ``grace`` seconds for a clean exit, then SIGKILL."""
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def wrk_figure(output: str, pattern: str) -> str:
    """The first group of ``pattern`` in wrk's report; an error quoting the report when wrk
    printed no such line (it failed, or its output format changed)."""
    found = re.search(pattern, output, re.M)
    if found is None:
        raise RuntimeError(f"wrk printed no line matching {pattern!r}:\n{output}")
    return found.group(1)
