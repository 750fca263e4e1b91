"""Real interface servers and workers for the redeploy tests, started and stopped by PID.

A :class:`Deployment` owns a scratch copy of ``project/`` (so a test can rewrite its consumers
without touching the tree or other tests), the environment every process shares (the layer
settings), one log file per process, and the processes: interface servers
(``python -m headrace redeploy_site.asgi:channel_layer``) and workers
(``python manage.py runworker``). Python writes no bytecode in these processes, so a rewritten
module is always read from source. Waiting is done on conditions with generous deadlines.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TEMPLATE = HERE / "project"
WAIT = 60.0


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@dataclass
class Running:
    """One started process and the log it writes to."""

    role: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Deployment:
    """The processes of one site: interface servers and workers over one layer."""

    workdir: Path
    layer_env: dict[str, str]
    project: Path = field(init=False)
    running: list[Running] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.project = self.workdir / "project"
        shutil.copytree(TEMPLATE, self.project, ignore=shutil.ignore_patterns("__pycache__"))

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            **self.layer_env,
            "PYTHONPATH": os.pathsep.join((str(self.project), str(ROOT))),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "DJANGO_SETTINGS_MODULE": "redeploy_site.settings",
        }

    def _start(self, role: str, command: list[str]) -> Running:
        log = self.workdir / f"{role}-{len(self.running)}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                command, cwd=self.project, env=self.env, stdout=output, stderr=subprocess.STDOUT
            )
        started = Running(role, process, log)
        self.running.append(started)
        return started

    def start_interface(self) -> int:
        """An interface server on a free port; returns the port once it accepts connections."""
        port = free_port()
        server = self._start(
            "interface",
            [
                sys.executable,
                "-m",
                "headrace",
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                "--websocket_connect_timeout",
                "120",
                "redeploy_site.asgi:channel_layer",
            ],
        )
        wait_until(lambda: self._accepts(port, server), f"interface server on port {port}")
        return port

    def _accepts(self, port: int, server: Running) -> bool:
        import socket

        if server.process.poll() is not None:
            raise AssertionError(f"interface server exited:\n{server.output()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    def start_worker(self) -> Running:
        """A ``runworker`` process, returned once it listens on its channels (so a SIGTERM
        reaches a running worker, not one still importing Django)."""
        worker = self._start("worker", [sys.executable, "manage.py", "runworker"])
        wait_until(lambda: self._listening(worker), f"worker {worker.log.name} to listen")
        return worker

    @staticmethod
    def _listening(worker: Running) -> bool:
        if worker.process.poll() is not None:
            raise AssertionError(f"worker exited {worker.process.returncode}:\n{worker.output()}")
        return "Listening on" in worker.output()

    def workers(self) -> list[Running]:
        return [r for r in self.running if r.role == "worker" and r.process.poll() is None]

    def stop_workers(self) -> None:
        """SIGTERM every worker, as a process manager does on a redeploy; each must exit 0."""
        workers = self.workers()
        for worker in workers:
            worker.process.send_signal(signal.SIGTERM)
        for worker in workers:
            self._exited_cleanly(worker)

    def stop_worker(self, worker: Running) -> None:
        """SIGTERM one worker (a rolling restart's step); it must finish and exit 0."""
        worker.process.send_signal(signal.SIGTERM)
        self._exited_cleanly(worker)

    @staticmethod
    def _exited_cleanly(worker: Running) -> None:
        try:
            code = worker.process.wait(WAIT)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"worker ignored SIGTERM:\n{worker.output()}") from exc
        assert code == 0, f"worker exited {code} on SIGTERM:\n{worker.output()}"

    def ship(self, version: str) -> None:
        """New code: rewrite the consumers module's VERSION in the scratch project."""
        module = self.project / "redeploy_site" / "consumers.py"
        text = module.read_text()
        current = next(line for line in text.splitlines() if line.startswith("VERSION = "))
        module.write_text(text.replace(current, f"VERSION = {version!r}"))

    def wait_for_log(self, role: str, text: str, count: int) -> None:
        """Until the logs of the ``role`` processes hold ``text`` at least ``count`` times."""

        def seen() -> int:
            return sum(r.output().count(text) for r in self.running if r.role == role)

        wait_until(lambda: seen() >= count, f"{count} x {text!r} in the {role} logs")

    def check_alive(self) -> None:
        for started in self.running:
            code = started.process.poll()
            if code is not None and started.role == "interface":
                raise AssertionError(f"interface server exited {code}:\n{started.output()}")

    def logs(self) -> str:
        return "\n".join(f"--- {r.role} {r.log.name}\n{r.output()[-4000:]}" for r in self.running)

    def close(self) -> None:
        for started in self.running:
            if started.process.poll() is None:
                started.process.terminate()
        for started in self.running:
            try:
                started.process.wait(15)
            except subprocess.TimeoutExpired:
                started.process.kill()
                started.process.wait(10)
