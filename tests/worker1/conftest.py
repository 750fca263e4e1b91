"""Fixtures for the Channels-1 worker tests: a layer per test (IPC or Redis, own prefix), the
driver's ASGI-1 view of it, and ``manage.py runworker`` subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from headrace.asgi import AsgiChannelLayer
from tests.conftest import require_service

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = "tests.worker1.site.settings"
WAIT = 30.0


class WorkerProcess:
    """One ``manage.py runworker`` subprocess with its output captured to files."""

    def __init__(self, env: dict[str, str], args: tuple[str, ...], tmp: Path, n: int) -> None:
        self.stdout_path = tmp / f"worker{n}.out"
        self.stderr_path = tmp / f"worker{n}.err"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "django", "runworker", *args],
            cwd=ROOT,
            env=env,
            stdout=self.stdout_path.open("wb"),
            stderr=self.stderr_path.open("wb"),
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.stdout() or text in self.stderr():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(
            f"{text!r} not in the worker's output:\n{self.stdout()}\n{self.stderr()}"
        )

    def stop(self, signum: int = signal.SIGTERM, timeout: float = WAIT) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.process.wait(timeout)


def make_backend(kind: str, prefix: str) -> Any:
    if kind == "ipc":
        from headrace.layers.ipc import IPCChannelLayer

        return IPCChannelLayer(prefix=prefix)
    from headrace.layers.redis import RedisChannelLayer

    return RedisChannelLayer(hosts=[("127.0.0.1", 6379)], prefix=prefix)


def drop_redis_keys(prefix: str) -> None:
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379)
    try:
        keys = list(client.scan_iter(match=f"*{prefix}*"))
        if keys:
            client.unlink(*keys)
    finally:
        client.close()


@pytest.fixture(params=["ipc", "redis"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    if kind == "redis":
        require_service("redis", "127.0.0.1", 6379)
    return kind


@pytest.fixture
def layer_prefix() -> str:
    return f"w1-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def view(backend_kind: str, layer_prefix: str) -> Iterator[AsgiChannelLayer]:
    """The driver's view of the test's layer. It is used once before any worker starts, so
    with IPC this (long-lived) process holds the hub and a killed worker takes no queue along."""
    layer = AsgiChannelLayer(make_backend(backend_kind, layer_prefix))
    layer.new_channel("warmup!")
    layer.send("worker1.warmup", {"hello": True})
    layer.receive(["worker1.warmup"], block=True)
    try:
        yield layer
    finally:
        layer.close()
        if backend_kind == "redis":
            drop_redis_keys(layer_prefix)


@pytest.fixture
def start_worker(
    backend_kind: str, layer_prefix: str, tmp_path: Path, view: AsgiChannelLayer
) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "WORKER1_BACKEND": backend_kind,
        "WORKER1_PREFIX": layer_prefix,
    }

    def start(*args: str, ready: bool = True, **extra_env: str) -> WorkerProcess:
        worker = WorkerProcess({**env, **extra_env}, args, tmp_path, len(started))
        started.append(worker)
        if ready:
            worker.wait_for_output("Listening on")
        return worker

    yield start
    for worker in started:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait(WAIT)


def receive(view: AsgiChannelLayer, channel: str, timeout: float = WAIT) -> dict[str, Any]:
    """The next message on ``channel``, waiting up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        name, message = view.receive([channel], block=True)
        if name is not None:
            assert message is not None
            return message
    raise AssertionError(f"nothing arrived on {channel} in {timeout} s")
