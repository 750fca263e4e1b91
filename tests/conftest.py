"""Fixtures shared by every test folder: free ports and the service-requirement rule.

Service-backed tests call ``require_service(name, host, port)``: when the service does not
answer they skip, unless ``HEADRACE_REQUIRE_SERVICES=1`` is set (CI), where they fail.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess

import pytest


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def terminate(process: subprocess.Popen[bytes], wait: float) -> int:
    """SIGTERM ``process`` if it still runs and wait up to ``wait`` seconds for it, then
    SIGKILL; its exit status (negative for a signal)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(wait)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(wait)


def service_reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    if service_reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if os.environ.get("HEADRACE_REQUIRE_SERVICES") == "1":
        pytest.fail(message + " and HEADRACE_REQUIRE_SERVICES=1")
    pytest.skip(message)


@pytest.fixture
def unused_port() -> int:
    return free_port()
