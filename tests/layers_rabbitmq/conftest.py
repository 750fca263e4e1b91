"""Fixtures: the machine's RabbitMQ (5672) and throwaway brokers a test may stop and start."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import require_service
from tests.layers_rabbitmq.broker import ThrowawayBroker

SYSTEM_RABBITMQ = ("127.0.0.1", 5672)
SYSTEM_URL = "amqp://guest:guest@127.0.0.1:5672/"


def unique_prefix() -> str:
    """A prefix no other test (or agent) uses, so queues and exchanges never collide."""
    return f"test-{os.getpid()}-{uuid.uuid4().hex[:10]}"


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
