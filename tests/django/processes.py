"""Start server subprocesses for the tests, wait until they serve, stop them by PID.

Readiness is an HTTP answer, not a TCP connect: headrace binds and listens *before* the
lifespan start-up (so the kernel completes connects while the app is still migrating),
and a connect can also reach an unrelated process that took a ``free_port()`` number
between the probe and the child's bind. ``wait_listening`` therefore sends a request and
waits for a status line, then checks that our child is still the one alive; ``start_server``
retries on a fresh port when the child lost the port race. Every process started during a
test is recorded in ``STARTED`` so the test folder's ``conftest`` can attach each child's
log to the report of a failing test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0
PORT_ATTEMPTS = 4
PORT_IN_USE = ("address already in use", "that port is already in use")
PROBE = b"GET /favicon.ico HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"

STARTED: list[ServerProcess] = []
"""Processes started since the current test began (reset by tests/django/conftest.py)."""


class PortTaken(RuntimeError):
    """The child could not bind: another process took the port after free_port()."""


class ServerProcess:
    """A child process (in its own session, so its reloader children stop with it)."""

    def __init__(
        self, argv: Sequence[str], port: int, cwd: Path = REPO, env: dict[str, str] | None = None
    ) -> None:
        self.argv = list(argv)
        self.port = port
        self.output = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop())
        self.final_log: str | None = None
        full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        full_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO), full_env.get("PYTHONPATH", "")) if p
        )
        self.process = subprocess.Popen(
            [sys.executable, *argv],
            cwd=cwd,
            env=full_env,
            stdout=self.output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        STARTED.append(self)

    def wait_listening(self) -> None:
        """Return once the child answers HTTP; fail with its log if it exits or never does."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            self._raise_if_exited()
            if _answers_http(self.port, min(5.0, max(0.1, deadline - time.monotonic()))):
                self._raise_if_exited()  # an answer from a process that stole the port
                return
            time.sleep(0.1)
        raise TimeoutError(f"server did not answer within {START_TIMEOUT} s:\n{self.log()}")

    def _raise_if_exited(self) -> None:
        if self.process.poll() is None:
            return
        log = self.log()
        if any(marker in log.lower() for marker in PORT_IN_USE):
            raise PortTaken(f"port {self.port} was taken by another process:\n{log}")
        raise RuntimeError(f"server exited early with {self.process.returncode}:\n{log}")

    def log(self) -> str:
        if self.final_log is not None:
            return self.final_log
        self.output.seek(0)
        return self.output.read().decode(errors="replace")

    def stop(self) -> None:
        """SIGTERM the child's process group (it is its own session leader), then SIGKILL."""
        if self.final_log is not None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # reloader children, if any remain
        self.final_log = self.log()
        self.output.close()


def start_server(
    make_argv: Callable[[int], Sequence[str]],
    cwd: Path = REPO,
    env: dict[str, str] | None = None,
) -> ServerProcess:
    """Start ``make_argv(port)`` on a free port and wait until it answers HTTP; when another
    process wins the race for the port, try again on a new one."""
    for attempt in range(1, PORT_ATTEMPTS + 1):
        port = free_port()
        server = ServerProcess(make_argv(port), port, cwd=cwd, env=env)
        try:
            server.wait_listening()
        except PortTaken:
            server.stop()
            if attempt == PORT_ATTEMPTS:
                raise
            continue
        except BaseException:
            server.stop()
            raise
        return server
    raise AssertionError("unreachable")


def _answers_http(port: int, timeout: float) -> bool:
    """True once a request on ``port`` gets a status line back within ``timeout``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(PROBE)
            return sock.recv(16).startswith(b"HTTP/")
    except OSError:
        return False
