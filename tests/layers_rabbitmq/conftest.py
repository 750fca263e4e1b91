"""Fixtures: the machine's RabbitMQ (5672) and throwaway brokers a test may stop and start."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Iterator

import aiormq
import pytest

from tests.conftest import require_service, service_reachable
from tests.layers_rabbitmq.broker import ThrowawayBroker

SYSTEM_RABBITMQ = ("127.0.0.1", 5672)
SYSTEM_URL = "amqp://guest:guest@127.0.0.1:5672/"


async def eventually(condition: Callable[[], bool], patience: float) -> bool:
    """Wait until ``condition`` holds or ``patience`` seconds pass; return whether it held."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while True:
        if condition():
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.05)


PREFIXES_USED: list[str] = []


def unique_prefix() -> str:
    """A prefix no other test (or agent) uses, so queues and exchanges never collide."""
    prefix = f"test-{os.getpid()}-{uuid.uuid4().hex[:10]}"
    PREFIXES_USED.append(prefix)
    return prefix


async def drop_exchanges(url: str, prefix: str) -> None:
    """Delete the two exchanges a layer with ``prefix`` declares (its queues go with
    ``flush()`` or with their connection), so the shared broker stays clean."""
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        for name in (f"{prefix}.groups", f"{prefix}.control"):
            await channel.exchange_delete(name)
    finally:
        await connection.close()


@pytest.fixture(scope="session", autouse=True)
def _drop_every_prefix_at_the_end() -> Iterator[None]:
    """Delete once more, at the end, the exchanges of every prefix the session used on the
    machine's broker (a layer still reconnecting in a background thread when its test ended
    may have declared them again after the test's own clean-up)."""
    yield
    if PREFIXES_USED and service_reachable(*SYSTEM_RABBITMQ):

        async def drop_all() -> None:
            for prefix in PREFIXES_USED:
                await drop_exchanges(SYSTEM_URL, prefix)

        asyncio.run(drop_all())


@pytest.fixture
def rabbitmq_prefix(rabbitmq_url: str) -> Iterator[str]:
    """A unique prefix for one test, whose exchanges are deleted afterwards."""
    prefix = unique_prefix()
    yield prefix
    asyncio.run(drop_exchanges(rabbitmq_url, prefix))


def require_rabbitmq_server() -> None:
    """Skip (fail under HEADRACE_REQUIRE_SERVICES=1) when no rabbitmq-server can be started."""
    if ThrowawayBroker.available():
        return
    message = "rabbitmq-server is not installed (needed for a throwaway node)"
    if os.environ.get("HEADRACE_REQUIRE_SERVICES") == "1":
        pytest.fail(message + " and HEADRACE_REQUIRE_SERVICES=1")
    pytest.skip(message)


@pytest.fixture
def rabbitmq_url() -> str:
    require_service("rabbitmq", *SYSTEM_RABBITMQ)
    return SYSTEM_URL


@pytest.fixture
def throwaway_broker() -> Iterator[ThrowawayBroker]:
    """A private RabbitMQ node on free ports; the test may stop and start it."""
    broker = ThrowawayBroker()
    require_rabbitmq_server()
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()
        broker.remove()
