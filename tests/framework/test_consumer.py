"""AsyncConsumer / SyncConsumer: dispatch, layer wiring, as_asgi, sync wrapping."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from headrace.consumer import AsyncConsumer, SyncConsumer, get_handler_name
from headrace.exceptions import StopConsumer
from headrace.layers import BaseChannelLayer
from headrace.testing import ApplicationCommunicator


class Recorder(AsyncConsumer):
    greeting = "hello"

    async def test_ping(self, message: dict[str, Any]) -> None:
        await self.send({"type": "test.pong", "greeting": self.greeting, "n": message["n"]})

    async def test_stop(self, message: dict[str, Any]) -> None:
        raise StopConsumer()

    async def test_whoami(self, message: dict[str, Any]) -> None:
        await self.send({"type": "test.name", "name": self.channel_name})


def test_handler_name_rules() -> None:
    assert get_handler_name({"type": "chat.message"}) == "chat_message"
    with pytest.raises(ValueError, match="leading underscore"):
        get_handler_name({"type": "_private"})
    with pytest.raises(ValueError, match="leading underscore"):
        get_handler_name({"type": ".hidden"})
    with pytest.raises(ValueError, match="no 'type'"):
        get_handler_name({"text": "x"})


async def test_dispatch_by_type(no_channel_layer: None) -> None:
    communicator = ApplicationCommunicator(Recorder.as_asgi(), {"type": "test"})
    await communicator.send_input({"type": "test.ping", "n": 1})
    assert await communicator.receive_output() == {"type": "test.pong", "greeting": "hello", "n": 1}
    await communicator.send_input({"type": "test.stop"})
    await communicator.wait()


async def test_unknown_type_raises(no_channel_layer: None) -> None:
    communicator = ApplicationCommunicator(Recorder.as_asgi(), {"type": "test"})
    await communicator.send_input({"type": "test.unknown"})
    with pytest.raises(ValueError, match=r"No handler for message type 'test\.unknown'"):
        await communicator.wait()


async def test_private_method_cannot_be_reached(no_channel_layer: None) -> None:
    communicator = ApplicationCommunicator(Recorder.as_asgi(), {"type": "test"})
    await communicator.send_input({"type": "_handler_for"})
    with pytest.raises(ValueError, match="leading underscore"):
        await communicator.wait()


async def test_as_asgi_kwargs_become_attributes(no_channel_layer: None) -> None:
    app = Recorder.as_asgi(greeting="ahoy")
    assert app.consumer_class is Recorder  # type: ignore[attr-defined]
    assert app.consumer_initkwargs == {"greeting": "ahoy"}  # type: ignore[attr-defined]
    communicator = ApplicationCommunicator(app, {"type": "test"})
    await communicator.send_input({"type": "test.ping", "n": 2})
    assert (await communicator.receive_output())["greeting"] == "ahoy"
    await communicator.send_input({"type": "test.stop"})
    await communicator.wait()


async def test_as_asgi_rejects_unknown_kwargs(no_channel_layer: None) -> None:
    communicator = ApplicationCommunicator(Recorder.as_asgi(nonsense=1), {"type": "test"})
    with pytest.raises(TypeError, match="invalid keyword 'nonsense'"):
        await communicator.wait()


async def test_layer_messages_are_dispatched(channel_layer: BaseChannelLayer) -> None:
    communicator = ApplicationCommunicator(Recorder.as_asgi(), {"type": "test"})
    await communicator.send_input({"type": "test.whoami"})
    name = (await communicator.receive_output())["name"]
    assert "!" in name
    await channel_layer.send(name, {"type": "test.ping", "n": 3})
    assert (await communicator.receive_output())["n"] == 3
    await channel_layer.send(name, {"type": "test.stop"})
    await communicator.wait()


class OnSecondLayer(AsyncConsumer):
    channel_layer_alias = "second"

    async def test_describe(self, message: dict[str, Any]) -> None:
        await self.send({"type": "test.described", "name": self.channel_name})

    async def test_drain(self, message: dict[str, Any]) -> None:
        # channel_receive reads this instance's own channel on its layer.
        await self.send({"type": "test.drained", "got": await self.channel_receive()})


async def test_channel_layer_alias_and_channel_receive() -> None:
    from headrace.layers import channel_layers, get_channel_layer

    channel_layers.configure(
        {
            "default": {"BACKEND": "headrace.layers.InMemoryChannelLayer"},
            "second": {"BACKEND": "headrace.layers.InMemoryChannelLayer"},
        }
    )
    try:
        second = get_channel_layer("second")
        assert second is not None and second is not get_channel_layer()
        communicator = ApplicationCommunicator(OnSecondLayer.as_asgi(), {"type": "test"})
        await communicator.send_input({"type": "test.describe"})
        name = (await communicator.receive_output(timeout=5))["name"]
        await second.send(name, {"type": "test.drain"})
        await second.send(name, {"type": "payload", "n": 1})
        drained = await communicator.receive_output(timeout=5)
        assert drained == {"type": "test.drained", "got": {"type": "payload", "n": 1}}
        await communicator.wait(timeout=0.1)
    finally:
        channel_layers.configure(None)


async def test_consumer_without_layer_has_none(no_channel_layer: None) -> None:
    seen: list[object] = []

    class Probe(AsyncConsumer):
        async def probe(self, message: dict[str, Any]) -> None:
            seen.append(self.channel_layer)
            raise StopConsumer()

    communicator = ApplicationCommunicator(Probe.as_asgi(), {"type": "test"})
    await communicator.send_input({"type": "probe"})
    await communicator.wait()
    assert seen == [None]


class Blocking(SyncConsumer):
    def test_ping(self, message: dict[str, Any]) -> None:
        self.send({"type": "test.pong", "thread": threading.current_thread().name})

    def test_stop(self, message: dict[str, Any]) -> None:
        raise StopConsumer()


async def test_sync_consumer_runs_handlers_in_a_thread(no_channel_layer: None) -> None:
    communicator = ApplicationCommunicator(Blocking.as_asgi(), {"type": "test"})
    await communicator.send_input({"type": "test.ping"})
    reply = await communicator.receive_output()
    assert reply["type"] == "test.pong"
    assert reply["thread"] != threading.current_thread().name
    await communicator.send_input({"type": "test.stop"})
    await communicator.wait()


async def test_sync_consumer_layer_send_from_sync_code(channel_layer: BaseChannelLayer) -> None:
    from asgiref.sync import async_to_sync

    class Relay(SyncConsumer):
        def relay(self, message: dict[str, Any]) -> None:
            assert self.channel_layer is not None
            async_to_sync(self.channel_layer.send)(message["to"], {"type": "relayed"})

    communicator = ApplicationCommunicator(Relay.as_asgi(), {"type": "test"})
    await communicator.send_input({"type": "relay", "to": "target"})
    received = await asyncio.wait_for(channel_layer.receive("target"), 2)
    assert received == {"type": "relayed"}
    communicator.stop()
