"""The real headrace server as a child process for tests/live, stopped by PID."""

from __future__ import annotations

import time
from collections.abc import Sequence

from tests.django.processes import ServerProcess, start_server


def serve_app(app: str, env: dict[str, str] | None = None) -> ServerProcess:
    """``python -m headrace -b 127.0.0.1 -p PORT app`` on a free port, once it answers."""
    return start_server(
        lambda port: ["-m", "headrace", "-b", "127.0.0.1", "-p", str(port), app], env=env
    )


def run_manage(argv: Sequence[str], env: dict[str, str] | None = None) -> ServerProcess:
    """A long-running child process that serves no HTTP (a worker)."""
    return ServerProcess(argv, 0, env=env)


def wait_for_log(process: ServerProcess, needle: str, timeout: float = 15.0) -> str:
    """The child's log once it contains ``needle``; AssertionError with the log if never."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = process.log()
        if needle in log:
            return log
        time.sleep(0.05)
    raise AssertionError(f"{needle!r} never appeared in the log:\n{process.log()}")
