"""Start ``python -m headrace`` with a supervisor in a subprocess and observe its workers."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from tests.conftest import terminate

ROOT = Path(__file__).resolve().parents[2]
WAIT = 20.0


def wait_until(condition: Callable[[], bool], timeout: float = WAIT, what: str = "") -> None:
    """Poll ``condition`` (a cheap check of process state) until true, or fail."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.02)


class Supervised:
    """A running supervisor process and helpers to inspect it.

    Each run gets its own ``HEADRACE_IPC_DIR``, so its IPC hub is private to the test."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path, base_url: str) -> None:
        self.process = process
        self.log = log
        self.base_url = base_url

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def children(self) -> set[int]:
        path = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        try:
            return {int(pid) for pid in path.read_text().split()}
        except (FileNotFoundError, ProcessLookupError):
            return set()

    def hub(self) -> int | None:
        """The IPC hub companion (the child running ``headrace.layers.ipc``), if any."""
        for pid in self.children():
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
            except (FileNotFoundError, ProcessLookupError):
                continue  # the child exited between listing and reading (a retired worker)
            if b"headrace.layers.ipc" in command:
                return pid
        return None

    def workers(self) -> set[int]:
        """The worker processes (every child but the IPC hub companion)."""
        return self.children() - {self.hub()}

    def ready_count(self) -> int:
        return self.output().count(" is ready")

    def wait_ready(self, total: int) -> None:
        """Wait until ``total`` workers (counted since start) have reported ready."""
        wait_until(lambda: self.ready_count() >= total, what=f"{total} ready workers")

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self) -> int:
        return terminate(self.process, WAIT)


@contextlib.contextmanager
def supervised(
    *arguments: str,
    base_url: str,
    ready: int,
    cwd: Path = ROOT,
    env: dict[str, str] | None = None,
    pass_fds: tuple[int, ...] = (),
) -> Iterator[Supervised]:
    """Run ``python -m headrace ARGUMENTS`` until the block ends; wait for ``ready`` workers."""
    folder = Path(tempfile.mkdtemp(prefix="hr-workers-"))
    log = folder / "supervisor.log"
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "HEADRACE_IPC_DIR": str(folder)}
    environment.update(env or {})
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "headrace", "-v", "1", *arguments],
            cwd=cwd,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=environment,
            pass_fds=pass_fds,
        )
    running = Supervised(process, log, base_url)
    try:
        if ready:
            running.wait_ready(ready)
        yield running
    finally:
        running.stop()
        shutil.rmtree(folder, ignore_errors=True)


def get_pid(client: httpx.Client, url: str) -> int:
    response = client.get(url, headers={"connection": "close"})
    assert response.status_code == 200
    return int(response.text)
