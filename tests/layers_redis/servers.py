"""redis-server processes for the Redis layer tests: plain, Sentinel and Cluster.

Every process runs in the foreground of a ``subprocess.Popen`` (so we hold its PID), binds
127.0.0.1 on a free port, keeps nothing on disk (``--save "" --appendonly no``) and is stopped
by PID. Readiness is awaited by polling PING / CLUSTER INFO with a deadline, never by sleeping
a fixed time.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import redis

from tests.conftest import free_port

READY_TIMEOUT = 15.0


def wait_until(condition: Callable[[], bool], what: str, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (redis.RedisError, OSError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_port() -> int:
    """A free port P <= 55535 whose cluster bus port P + 10000 is free too."""
    for _ in range(200):
        port = random.randint(20000, 45000)
        if _bindable(port) and _bindable(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisProcess:
    """One redis-server (or sentinel) on 127.0.0.1:port, started and stopped by PID."""

    def __init__(self, workdir: Path, extra: Sequence[str] = (), port: int | None = None) -> None:
        self.port = port or free_port()
        self.workdir = workdir
        self.extra = list(extra)
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            *self.extra,
        ]

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def start(self) -> RedisProcess:
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until(self._answers, f"redis on port {self.port}")
        return self

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"redis-server on port {self.port} exited")
        with self.client() as client:
            return bool(client.ping())

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"


class SentinelProcess(RedisProcess):
    """A Redis Sentinel watching one master under ``master_name``."""

    def __init__(
        self, workdir: Path, master: RedisProcess, master_name: str, failover: bool = False
    ) -> None:
        super().__init__(workdir)
        self.config = workdir / f"sentinel-{self.port}.conf"
        fast_failover = (
            f"sentinel failover-timeout {master_name} 2000\n"
            f"sentinel parallel-syncs {master_name} 1\n"
            if failover
            else ""
        )
        self.config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {workdir}\n"
            f"sentinel monitor {master_name} 127.0.0.1 {master.port} 1\n"
            f"sentinel down-after-milliseconds {master_name} 1000\n" + fast_failover
        )
        self.master_name = master_name

    def command(self) -> list[str]:
        return ["redis-server", str(self.config), "--sentinel"]

    def _answers(self) -> bool:
        if not super()._answers():
            return False
        with self.client() as client:
            return client.sentinel_get_master_addr_by_name(self.master_name) is not None


class Cluster:
    """Three master nodes joined with ``redis-cli --cluster create``."""

    def __init__(self, workdir: Path, size: int = 3) -> None:
        self.nodes = [
            RedisProcess(
                workdir,
                port=free_cluster_port(),
                extra=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "2000",
                    "--cluster-config-file",
                    f"nodes-{index}-{time.monotonic_ns()}.conf",
                ],
            )
            for index in range(size)
        ]

    def start(self) -> Cluster:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "0"],
            input=b"yes\n",
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        for node in self.nodes:
            wait_until(lambda n=node: _cluster_ok(n), f"cluster node {node.port}")
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _cluster_ok(node: RedisProcess) -> bool:
    with node.client() as client:
        info = client.execute_command("CLUSTER INFO")
        return bool(info.get("cluster_state") == "ok")


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="headrace-redis-"))


def remove_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
