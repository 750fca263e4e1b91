"""Fixtures: a scratch deployment over our own redis-server, or over a standalone IPC hub."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redeploy.support import Deployment, wait_until


def _scratch() -> Path:
    # Short and under /tmp: the IPC hub's Unix socket path must fit in 107 bytes.
    return Path(tempfile.mkdtemp(prefix="hr-redeploy-"))


@pytest.fixture
def scratch() -> Iterator[Path]:
    path = _scratch()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def redis_url(scratch: Path) -> Iterator[str]:
    """Our own redis-server on a free port (the tests kill processes, not Redis, but a private
    server keeps them off the shared one); skipped only when redis-server is not installed."""
    if shutil.which("redis-server") is None:
        if os.environ.get("HEADRACE_REQUIRE_SERVICES") == "1":
            pytest.fail("redis-server is not installed and HEADRACE_REQUIRE_SERVICES=1")
        pytest.skip("redis-server is not installed")
    from tests.layers_redis.servers import RedisProcess

    server = RedisProcess(scratch).start()
    try:
        yield f"{server.url}/0"
    finally:
        server.stop()


@pytest.fixture
def ipc_hub(scratch: Path) -> Iterator[str]:
    """A standalone IPC hub process, as docs/deploying.md runs it (its own unit), so the queues
    and group memberships live outside every worker and interface server."""
    path = str(scratch / "hub.sock")
    log = (scratch / "hub.log").open("wb")
    hub = subprocess.Popen(
        [sys.executable, "-m", "headrace.layers.ipc", "--path", path],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: Path(path).exists() or hub.poll() is not None, "the IPC hub socket")
        assert hub.poll() is None, (scratch / "hub.log").read_text()
        yield path
    finally:
        hub.terminate()
        hub.wait(15)
        log.close()


def _deployment(scratch: Path, layer_env: dict[str, str]) -> Iterator[Deployment]:
    deployment = Deployment(scratch, layer_env)
    try:
        yield deployment
    finally:
        deployment.close()


@pytest.fixture(params=["redis", "ipc"])
def deployment(request: pytest.FixtureRequest, scratch: Path) -> Iterator[Deployment]:
    """A deployment over Redis (own server, unique prefix) or over IPC (standalone hub)."""
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        env = {"REDEPLOY_LAYER": "redis", "REDEPLOY_REDIS": url, "REDEPLOY_PREFIX": _prefix()}
    else:
        env = {"REDEPLOY_LAYER": "ipc", "REDEPLOY_IPC_PATH": request.getfixturevalue("ipc_hub")}
    yield from _deployment(scratch, env)


@pytest.fixture
def redis_deployment(scratch: Path, redis_url: str) -> Iterator[Deployment]:
    env = {"REDEPLOY_LAYER": "redis", "REDEPLOY_REDIS": redis_url, "REDEPLOY_PREFIX": _prefix()}
    yield from _deployment(scratch, env)


def _prefix() -> str:
    return f"redeploy-{uuid.uuid4().hex[:10]}"
