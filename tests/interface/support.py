"""Shared pieces of the interface-bridge tests: layers from a JSON spec, the ``headrace``
server process serving the bridge, and helpers for the test-side "worker".

A *spec* (a dict, passed to subprocesses as JSON in ``$HEADRACE_INTERFACE_TEST``) names the
layer (``kind``: ``"ipc"`` with a hub ``path``, or ``"redis"`` with a unique ``prefix``), its
``channel_capacity`` and, optionally, the bridge's ``http_timeout``. The server process, the
worker process and the test itself build equal layers from it, so they share channels.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from headrace.layers.base import BaseChannelLayer
from tests.conftest import free_port, terminate

REPO = Path(__file__).resolve().parents[2]
SPEC_ENV = "HEADRACE_INTERFACE_TEST"
REDIS = ("127.0.0.1", 6379)
WAIT = 20.0
"""Generous deadline for anything a test waits on (the machine is shared and slow)."""


def new_spec(kind: str, **options: Any) -> dict[str, Any]:
    """A spec for a fresh, private layer of ``kind``."""
    unique = f"hrif-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    spec: dict[str, Any] = {"kind": kind, **options}
    if kind == "ipc":
        directory = tempfile.mkdtemp(prefix="hrif-", dir="/tmp")
        spec["path"] = os.path.join(directory, "hub.sock")
    else:
        spec["prefix"] = unique
    return spec


def build_layer(spec: dict[str, Any]) -> BaseChannelLayer:
    """The async layer a spec describes."""
    options = {"channel_capacity": spec.get("channel_capacity", {}), "capacity": 100}
    if spec["kind"] == "ipc":
        from headrace.layers.ipc import IPCChannelLayer

        return IPCChannelLayer(path=spec["path"], **options)
    from headrace.layers.redis import RedisChannelLayer

    hosts = [(REDIS[0], spec.get("redis_port", REDIS[1]))]
    reconnect_timeout = spec.get("reconnect_timeout", 10.0)
    return RedisChannelLayer(
        hosts=hosts, prefix=spec["prefix"], reconnect_timeout=reconnect_timeout, **options
    )


def spec_from_environment() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(os.environ[SPEC_ENV])
    return spec


async def drop_spec_state(spec: dict[str, Any]) -> None:
    """Remove what a spec's layer left behind (Redis keys, the IPC hub's directory)."""
    if spec["kind"] == "ipc":
        shutil.rmtree(os.path.dirname(spec["path"]), ignore_errors=True)
        return
    if "redis_port" in spec:
        return  # a Redis that does not run holds nothing
    import redis.asyncio as aioredis

    async with aioredis.Redis(host=REDIS[0], port=REDIS[1]) as raw:
        keys = [key async for key in raw.scan_iter(match="{" + spec["prefix"] + ".*")]
        if keys:
            await raw.unlink(*keys)


def _environment(spec: dict[str, Any]) -> dict[str, str]:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = str(REPO) + os.pathsep + environment.get("PYTHONPATH", "")
    environment[SPEC_ENV] = json.dumps(spec)
    return environment


class Process:
    """A subprocess with its output in a file; stopped by PID."""

    def __init__(self, command: list[str], spec: dict[str, Any], name: str) -> None:
        self.log = Path(tempfile.mkstemp(prefix=f"hrif-{name}-", suffix=".log")[1])
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                command, cwd=REPO, env=_environment(spec), stdout=output, stderr=output
            )

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL, as a crash or a hard redeploy would."""
        self.process.kill()
        self.process.wait(WAIT)

    def stop(self) -> int:
        return terminate(self.process, WAIT)

    def close(self) -> None:
        self.stop()
        self.log.unlink(missing_ok=True)


class InterfaceServer(Process):
    """``python -m headrace ... tests.interface.target:application`` on a free port."""

    def __init__(
        self,
        spec: dict[str, Any],
        *options: str,
        target: str = "tests.interface.target:application",
    ) -> None:
        self.port = free_port()
        command = [sys.executable, "-m", "headrace", "-b", "127.0.0.1", "-p", str(self.port)]
        command += [*options, target]
        super().__init__(command, spec, "server")
        self._wait_listening()

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.output}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
            except OSError:
                time.sleep(0.05)
                continue
            if "Listening on" in self.output:  # logged once the signal handlers are set up
                return
            time.sleep(0.05)
        raise TimeoutError(f"server did not listen:\n{self.output}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


class WorkerProcess(Process):
    """``python -m tests.interface.worker TAG``: the echo worker in its own process."""

    def __init__(self, spec: dict[str, Any], tag: str) -> None:
        command = [sys.executable, "-m", "tests.interface.worker", tag]
        super().__init__(command, spec, "worker")


async def next_message(
    layer: BaseChannelLayer, channel: str, path: str | None = None
) -> dict[str, Any]:
    """The next message on ``channel`` within :data:`WAIT` (skipping ones for other paths when
    ``path`` is given)."""
    async with asyncio.timeout(WAIT):
        return await _next_for(layer, channel, path)


async def _next_for(layer: BaseChannelLayer, channel: str, path: str | None) -> dict[str, Any]:
    while True:
        message = await layer.receive(channel)
        if path is None or message.get("path") == path:
            return message


async def nothing_on(layer: BaseChannelLayer, channel: str, path: str, within: float) -> bool:
    """True when no message for ``path`` arrives on ``channel`` within ``within`` seconds."""
    try:
        async with asyncio.timeout(within):
            await _next_for(layer, channel, path)
    except TimeoutError:
        return True
    return False


class Hub(Process):
    """A standalone IPC hub (``python -m headrace.layers.ipc --path P``), as a systemd unit
    would run it beside interface servers and workers."""

    def __init__(self, spec: dict[str, Any]) -> None:
        command = [sys.executable, "-m", "headrace.layers.ipc", "--path", spec["path"]]
        super().__init__(command, spec, "hub")
        deadline = time.monotonic() + WAIT
        while "listening" not in self.output:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"IPC hub did not start:\n{self.output}")
            time.sleep(0.05)


class Site:
    """Everything one spec needs: its layer's hub (IPC) and, on demand, interface servers."""

    def __init__(self, kind: str, **options: Any) -> None:
        self.spec = new_spec(kind, **options)
        self.hub = Hub(self.spec) if kind == "ipc" else None
        self.processes: list[Process] = []

    def server(self, *options: str, **keywords: str) -> InterfaceServer:
        server = InterfaceServer(self.spec, *options, **keywords)
        self.processes.append(server)
        return server

    def worker(self, tag: str) -> WorkerProcess:
        worker = WorkerProcess(self.spec, tag)
        self.processes.append(worker)
        return worker

    def layer(self) -> BaseChannelLayer:
        return build_layer(self.spec)

    def close(self) -> None:
        for process in reversed(self.processes):
            process.close()
        if self.hub is not None:
            self.hub.close()
        asyncio.run(drop_spec_state(self.spec))


async def open_websocket(url: str, **options: Any) -> Any:
    """``websockets.connect`` as a coroutine (for ``create_task``: the handshake completes only
    once the test-side worker answered ``websocket.connect``)."""
    import websockets

    return await websockets.connect(url, open_timeout=WAIT, **options)
