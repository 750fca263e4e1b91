"""Why the RabbitMQ layer refuses ``history`` and ``presence``: the refusal itself, and the
broker behaviour it rests on (docs/history-presence-backends.md, "RabbitMQ"), checked on the
machine's broker so that a broker that no longer behaves this way fails here and the refusal
gets revisited."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import aiormq
import aiormq.abc
import pytest

from headrace.exceptions import ConfigError
from headrace.layers.rabbitmq import RabbitMQChannelLayer

WAIT = 20.0
REVISIT = "the refusal's reason no longer holds: revisit docs/history-presence-backends.md"


@pytest.fixture
async def channel(rabbitmq_url: str) -> AsyncIterator[aiormq.abc.AbstractChannel]:
    connection = await aiormq.connect(rabbitmq_url)
    try:
        yield await connection.channel(publisher_confirms=True)
    finally:
        await connection.close()


@pytest.fixture
async def stream(channel: aiormq.abc.AbstractChannel) -> AsyncIterator[str]:
    """A fresh stream queue on the machine's broker, deleted afterwards."""
    name = f"test-stream-{uuid.uuid4().hex[:12]}"
    await channel.queue_declare(name, durable=True, arguments={"x-queue-type": "stream"})
    yield name
    await channel.queue_delete(name)


@pytest.mark.parametrize(
    ("option", "value"),
    [("history", {"chat.*": {"size": 10, "ttl": 60}}), ("presence", {"chat.*": {"ttl": 30}})],
)
def test_the_refusal_says_why_and_where_to_read_more(option: str, value: Any) -> None:
    with pytest.raises(ConfigError) as refused:
        RabbitMQChannelLayer(**{option: value})
    text = str(refused.value)
    assert f"'{option}'" in text
    assert "newest offset" in text
    assert "docs/history-presence-backends.md" in text


async def test_a_stream_does_not_tell_its_length_over_amqp(
    channel: aiormq.abc.AbstractChannel, stream: str
) -> None:
    """No read in another process can know it has reached what was sent before it."""
    for number in range(5):
        confirm = await channel.basic_publish(f"m{number}".encode(), routing_key=stream)
        assert confirm is not None
    assert await _offsets_from_first(channel, stream, 5) == [0, 1, 2, 3, 4]
    declared = await channel.queue_declare(stream, passive=True)
    assert declared.message_count == 0, REVISIT


async def _offsets_from_first(
    channel: aiormq.abc.AbstractChannel, stream: str, count: int
) -> list[int]:
    """The ``x-stream-offset`` of the first ``count`` messages, read by a consumer."""
    reader = await channel.connection.channel()
    await reader.basic_qos(prefetch_count=count)
    offsets: list[int] = []
    arrived = asyncio.Event()

    async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
        headers = message.header.properties.headers or {}
        offsets.append(int(cast(int, headers["x-stream-offset"])))
        await reader.basic_ack(message.delivery.delivery_tag)
        if len(offsets) == count:
            arrived.set()

    await reader.basic_consume(stream, on_message, arguments={"x-stream-offset": "first"})
    await asyncio.wait_for(arrived.wait(), WAIT)
    await reader.close()
    return offsets


async def test_a_custom_queue_argument_is_not_checked_on_redeclare(
    channel: aiormq.abc.AbstractChannel, stream: str
) -> None:
    """An epoch kept in a queue argument could be neither read back nor compared."""
    arguments: dict[str, aiormq.abc.FieldValue] = {
        "x-queue-type": "stream",
        "x-headrace-epoch": "another",
    }
    declared = await channel.queue_declare(stream, durable=True, arguments=arguments)
    assert declared.queue == stream, REVISIT
