"""Fixtures: extra redis-server processes (shards, Sentinel, Cluster) and the system Redis."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.conftest import require_service
from tests.layers_redis.servers import (
    Cluster,
    RedisProcess,
    SentinelProcess,
    remove_dir,
    scratch_dir,
)

SYSTEM_REDIS = ("127.0.0.1", 6379)
MASTER_NAME = "headrace-master"


def unique_prefix() -> str:
    return f"test-{os.getpid()}-{uuid.uuid4().hex[:10]}"


async def close_and_drop(address: tuple[str, int], prefix: str, *layers: Any) -> None:
    """Close every layer, then delete what they left under ``prefix`` (statistics written by
    a closing layer's last settlement included), so the shared Redis stays clean."""
    for layer in layers:
        await layer.close()
    async with aioredis.Redis(host=address[0], port=address[1]) as raw:
        keys = [key async for key in raw.scan_iter(match="{" + prefix + ".*")]
        if keys:
            await raw.unlink(*keys)


@pytest.fixture
def system_redis() -> tuple[str, int]:
    require_service("redis", *SYSTEM_REDIS)
    return SYSTEM_REDIS


@pytest.fixture(scope="session")
def shard_servers() -> Iterator[list[RedisProcess]]:
    workdir = scratch_dir()
    servers = [RedisProcess(workdir) for _ in range(3)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()
        remove_dir(workdir)


@pytest.fixture(scope="session")
def sentinel_setup() -> Iterator[tuple[RedisProcess, SentinelProcess]]:
    workdir = scratch_dir()
    master = RedisProcess(workdir)
    sentinel: SentinelProcess | None = None
    try:
        master.start()
        sentinel = SentinelProcess(workdir, master, MASTER_NAME)
        sentinel.start()
        yield master, sentinel
    finally:
        if sentinel is not None:
            sentinel.stop()
        master.stop()
        remove_dir(workdir)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    workdir = scratch_dir()
    nodes = Cluster(workdir)
    try:
        yield nodes.start()
    finally:
        nodes.stop()
        remove_dir(workdir)


@pytest.fixture
def restartable_server() -> Iterator[RedisProcess]:
    """A private server a test may restart (never the system one)."""
    workdir = scratch_dir()
    server = RedisProcess(workdir)
    try:
        yield server.start()
    finally:
        server.stop()
        remove_dir(workdir)


HOST_SETUPS = ["one host", "three shards", "cluster"]


def hosts_of_setup(request: pytest.FixtureRequest) -> list[Any]:
    """The ``hosts`` option of the setup named by ``request.param`` (one of HOST_SETUPS)."""
    if request.param == "one host":
        return [request.getfixturevalue("system_redis")]
    if request.param == "three shards":
        servers: list[RedisProcess] = request.getfixturevalue("shard_servers")
        return [server.url for server in servers]
    cluster: Cluster = request.getfixturevalue("cluster")
    return [{"cluster": True, "address": cluster.nodes[0].url}]
