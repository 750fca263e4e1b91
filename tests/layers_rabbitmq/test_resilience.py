"""The RabbitMQ layer against a throwaway broker that the tests kill and start again, and
over TLS (amqps) with a certificate made by trustme."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from headrace.layers.rabbitmq import RabbitMQChannelLayer
from tests.layers_rabbitmq.broker import ThrowawayBroker
from tests.layers_rabbitmq.conftest import eventually, require_rabbitmq_server, unique_prefix

WAIT = 60.0


async def until_delivered(sender: RabbitMQChannelLayer, receiver: RabbitMQChannelLayer) -> None:
    """Send probes on a worker channel until one gets through (the broker is back)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while loop.time() < deadline:
        try:
            await sender.send("probe", {"type": "probe"})
            await asyncio.wait_for(receiver.receive("probe"), 5)
            return
        except (ConnectionError, TimeoutError):
            await asyncio.sleep(0.2)
    raise AssertionError("the layer did not recover")


async def test_broker_restart_mid_traffic(throwaway_broker: ThrowawayBroker) -> None:
    """Kill the broker while messages flow and start it again: both instances reconnect by
    themselves, callers see only ConnectionErrors meanwhile, group memberships (process-local
    and worker-channel) work again, and nothing arrives twice."""
    url = throwaway_broker.url
    prefix = unique_prefix()
    sender = RabbitMQChannelLayer(url=url, prefix=prefix, capacity=10_000, connect_timeout=1)
    receiver = RabbitMQChannelLayer(url=url, prefix=prefix, capacity=10_000, connect_timeout=1)
    try:
        local = await receiver.new_channel()
        await receiver.group_add("room", local)
        await receiver.group_add("room", "room-worker")
        sent_ok: list[int] = []
        maybe_sent: list[int] = []
        other_errors: list[BaseException] = []
        received: list[int] = []
        stop = asyncio.Event()

        async def send_forever() -> None:
            number = 0
            while not stop.is_set():
                try:
                    await sender.send("stream", {"type": "n", "n": number})
                    sent_ok.append(number)
                except ConnectionError:
                    maybe_sent.append(number)
                    await asyncio.sleep(0.05)
                except Exception as exc:
                    other_errors.append(exc)
                number += 1
                await asyncio.sleep(0.005)

        async def receive_forever() -> None:
            while True:
                received.append((await receiver.receive("stream"))["n"])

        sending = asyncio.ensure_future(send_forever())
        receiving = asyncio.ensure_future(receive_forever())
        await asyncio.sleep(1.0)
        assert received, "traffic flows before the restart"
        throwaway_broker.stop()
        await asyncio.sleep(1.0)
        throwaway_broker.start()
        await until_delivered(sender, receiver)
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.wait_for(sending, WAIT)
        after = [number for number in sent_ok if number > max(maybe_sent, default=-1)]
        await eventually(lambda: set(after) <= set(received), WAIT)
        receiving.cancel()
        await asyncio.gather(receiving, return_exceptions=True)

        assert other_errors == []
        assert maybe_sent, "some sends saw the broker down"
        assert len(received) == len(set(received)), "no message arrives twice"
        assert set(received) <= set(sent_ok) | set(maybe_sent)
        assert after and set(after) <= set(received), "traffic after recovery is delivered"

        await sender.group_send("room", {"type": "after.restart"})
        assert await asyncio.wait_for(receiver.receive(local), WAIT) == {"type": "after.restart"}
        assert await asyncio.wait_for(receiver.receive("room-worker"), WAIT) == {
            "type": "after.restart"
        }
    finally:
        await sender.flush()
        await sender.close()
        await receiver.close()


async def test_broker_down_at_start_then_up(throwaway_broker: ThrowawayBroker) -> None:
    """A layer built while the broker is down raises ConnectionError, then works once the
    broker is up, without being rebuilt."""
    throwaway_broker.stop()
    layer = RabbitMQChannelLayer(
        url=throwaway_broker.url, prefix=unique_prefix(), connect_timeout=0.5
    )
    try:
        with pytest.raises(ConnectionError):
            await layer.send("later", {"type": "m"})
        throwaway_broker.start()
        await until_delivered(layer, layer)
    finally:
        await layer.close()


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[ThrowawayBroker, ssl.SSLContext]]:
    require_rabbitmq_server()
    authority = trustme.CA()
    certificate = authority.issue_cert("localhost", "127.0.0.1")
    ca, cert, key = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    authority.cert_pem.write_to_path(str(ca))
    certificate.cert_chain_pems[0].write_to_path(str(cert))
    certificate.private_key_pem.write_to_path(str(key))
    broker = ThrowawayBroker(tls_files=(str(ca), str(cert), str(key)))
    context = ssl.create_default_context()
    authority.configure_trust(context)
    try:
        broker.start()
        yield broker, context
    finally:
        broker.stop()
        broker.remove()


async def test_amqps_with_ssl_context(tls_broker: tuple[ThrowawayBroker, ssl.SSLContext]) -> None:
    broker, context = tls_broker
    prefix = unique_prefix()
    layer = RabbitMQChannelLayer(url=broker.tls_url, ssl_context=context, prefix=prefix)
    try:
        channel = await layer.new_channel()
        await layer.group_add("secure", channel)
        await layer.group_send("secure", {"type": "over.tls"})
        assert await asyncio.wait_for(layer.receive(channel), WAIT) == {"type": "over.tls"}
        assert layer._core is not None
        assert layer._core.link.connected_url == broker.tls_url
    finally:
        await layer.flush()
        await layer.close()


async def test_amqps_refuses_an_untrusted_certificate(
    tls_broker: tuple[ThrowawayBroker, ssl.SSLContext],
) -> None:
    broker, _ = tls_broker
    layer = RabbitMQChannelLayer(
        url=broker.tls_url, ssl_context=ssl.create_default_context(), connect_timeout=1
    )
    try:
        with pytest.raises(ConnectionError, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
            await layer.send("secure", {"type": "m"})
    finally:
        await layer.close()
