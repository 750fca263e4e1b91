"""Generic WebSocket consumers through WebsocketCommunicator: async, sync, JSON, groups."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest

from headrace.exceptions import AcceptConnection, DenyConnection, InvalidChannelLayerError
from headrace.generic.websocket import (
    AsyncJsonWebsocketConsumer,
    AsyncWebsocketConsumer,
    JsonWebsocketConsumer,
    WebsocketConsumer,
)
from headrace.layers import BaseChannelLayer, InMemoryChannelLayer
from headrace.testing import WebsocketCommunicator


class AsyncEcho(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        subprotocols = self.scope["subprotocols"]
        await self.accept(
            subprotocol=subprotocols[0] if subprotocols else None,
            headers=[(b"x-echo", b"yes")],
        )

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data == "close-me":
            await self.send(text_data="bye", close=4001)
        elif text_data is not None:
            await self.send(text_data=text_data.upper())
        else:
            await self.send(bytes_data=bytes_data)


class SyncEcho(WebsocketConsumer):
    disconnected: list[int] = []

    def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        self.send(text_data=f"{text_data}@{threading.current_thread() is threading.main_thread()}")

    def disconnect(self, code: int) -> None:
        SyncEcho.disconnected.append(code)


async def test_async_echo_text_bytes_subprotocol_headers(no_channel_layer: None) -> None:
    communicator = WebsocketCommunicator(AsyncEcho.as_asgi(), "/ws/?x=1", subprotocols=["chat"])
    assert await communicator.connect() == (True, "chat")
    assert communicator.response_headers == [(b"x-echo", b"yes")]
    await communicator.send_to(text_data="hello")
    assert await communicator.receive_from() == "HELLO"
    await communicator.send_to(bytes_data=b"\x00\x01")
    assert await communicator.receive_from() == b"\x00\x01"
    assert await communicator.receive_nothing()
    await communicator.disconnect()


async def test_send_with_close_code(no_channel_layer: None) -> None:
    communicator = WebsocketCommunicator(AsyncEcho.as_asgi(), "/ws/")
    await communicator.connect()
    await communicator.send_to(text_data="close-me")
    assert await communicator.receive_from() == "bye"
    assert await communicator.receive_output() == {"type": "websocket.close", "code": 4001}
    await communicator.disconnect()


async def test_sync_consumer_runs_in_thread_and_disconnects(no_channel_layer: None) -> None:
    SyncEcho.disconnected.clear()
    communicator = WebsocketCommunicator(SyncEcho.as_asgi(), "/ws/")
    connected, subprotocol = await communicator.connect()
    assert connected and subprotocol is None
    await communicator.send_to(text_data="ping")
    assert await communicator.receive_from() == "ping@False"
    await communicator.disconnect(code=4321)
    assert SyncEcho.disconnected == [4321]


class Denier(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        raise DenyConnection()


class RaisesAccept(WebsocketConsumer):
    def connect(self) -> None:
        raise AcceptConnection()


class ClosesWithReason(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()
        await self.close(code=4000, reason="go away")


async def test_deny_connection(no_channel_layer: None) -> None:
    communicator = WebsocketCommunicator(Denier.as_asgi(), "/ws/")
    assert await communicator.connect() == (False, 1000)
    await communicator.disconnect()


async def test_accept_connection_exception(no_channel_layer: None) -> None:
    communicator = WebsocketCommunicator(RaisesAccept.as_asgi(), "/ws/")
    assert await communicator.connect() == (True, None)
    await communicator.disconnect()


async def test_close_code_and_reason(no_channel_layer: None) -> None:
    communicator = WebsocketCommunicator(ClosesWithReason.as_asgi(), "/ws/")
    assert await communicator.connect() == (True, None)
    closing = await communicator.receive_output()
    assert closing == {"type": "websocket.close", "code": 4000, "reason": "go away"}
    await communicator.disconnect()


async def test_send_requires_data(no_channel_layer: None) -> None:
    class Empty(AsyncWebsocketConsumer):
        async def receive(
            self, text_data: str | None = None, bytes_data: bytes | None = None
        ) -> None:
            await self.send()

    communicator = WebsocketCommunicator(Empty.as_asgi(), "/ws/")
    await communicator.connect()
    await communicator.send_to(text_data="x")
    with pytest.raises(ValueError, match="one of bytes_data or text_data"):
        await communicator.wait()


class AsyncJson(AsyncJsonWebsocketConsumer):
    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        await self.send_json({"echo": content, "async": True})


class SyncJson(JsonWebsocketConsumer):
    def receive_json(self, content: Any, **kwargs: Any) -> None:
        self.send_json({"echo": content, "async": False}, close=True)


class SortedJson(AsyncJsonWebsocketConsumer):
    @classmethod
    async def encode_json(cls, content: Any) -> str:
        return json.dumps(content, sort_keys=True, separators=(",", ":"))

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        await self.send_json(content)


async def test_async_json(no_channel_layer: None) -> None:
    communicator = WebsocketCommunicator(AsyncJson.as_asgi(), "/ws/")
    await communicator.connect()
    await communicator.send_json_to({"n": [1, 2]})
    assert await communicator.receive_json_from() == {"echo": {"n": [1, 2]}, "async": True}
    await communicator.disconnect()


async def test_sync_json_with_close(no_channel_layer: None) -> None:
    communicator = WebsocketCommunicator(SyncJson.as_asgi(), "/ws/")
    await communicator.connect()
    await communicator.send_json_to("hi")
    assert await communicator.receive_json_from() == {"echo": "hi", "async": False}
    assert (await communicator.receive_output())["type"] == "websocket.close"
    await communicator.disconnect()


async def test_custom_encode_json(no_channel_layer: None) -> None:
    communicator = WebsocketCommunicator(SortedJson.as_asgi(), "/ws/")
    await communicator.connect()
    await communicator.send_json_to({"b": 1, "a": 2})
    assert await communicator.receive_from() == '{"a":2,"b":1}'
    await communicator.disconnect()


class LenientJson(AsyncJsonWebsocketConsumer):
    """decode_json is overridable: single-quoted payloads are accepted."""

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        return json.loads(text_data.replace("'", '"'))

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        await self.send_json(content)


class SyncLenientJson(JsonWebsocketConsumer):
    @classmethod
    def decode_json(cls, text_data: str) -> Any:
        return {"decoded_by": "sync", "raw": text_data}

    def receive_json(self, content: Any, **kwargs: Any) -> None:
        self.send_json(content)


@pytest.mark.parametrize(
    ("consumer", "expected"),
    [
        (LenientJson, {"a": 1}),
        (SyncLenientJson, {"decoded_by": "sync", "raw": "{'a': 1}"}),
    ],
)
async def test_custom_decode_json(no_channel_layer: None, consumer: Any, expected: Any) -> None:
    communicator = WebsocketCommunicator(consumer.as_asgi(), "/ws/")
    await communicator.connect()
    await communicator.send_to(text_data="{'a': 1}")
    assert await communicator.receive_json_from() == expected
    await communicator.disconnect()


async def test_json_consumer_refuses_binary(no_channel_layer: None) -> None:
    communicator = WebsocketCommunicator(AsyncJson.as_asgi(), "/ws/")
    await communicator.connect()
    await communicator.send_to(bytes_data=b"{}")
    with pytest.raises(ValueError, match="No text section"):
        await communicator.wait()


class Room(AsyncWebsocketConsumer):
    groups = ["room"]

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        assert self.channel_layer is not None
        await self.channel_layer.group_send("room", {"type": "room.message", "text": text_data})

    async def room_message(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["text"])


class SyncRoom(WebsocketConsumer):
    groups = ["room"]

    def room_message(self, event: dict[str, Any]) -> None:
        self.send(text_data="sync:" + event["text"])


async def test_groups_join_broadcast_and_leave(channel_layer: BaseChannelLayer) -> None:
    alice = WebsocketCommunicator(Room.as_asgi(), "/ws/")
    bob = WebsocketCommunicator(SyncRoom.as_asgi(), "/ws/")
    await alice.connect()
    await bob.connect()
    await alice.send_to(text_data="hi all")
    assert await alice.receive_from() == "hi all"
    assert await bob.receive_from() == "sync:hi all"
    await bob.disconnect()
    await channel_layer.group_send("room", {"type": "room.message", "text": "after"})
    assert await alice.receive_from() == "after"
    await alice.disconnect()
    await channel_layer.group_send("room", {"type": "room.message", "text": "nobody"})
    assert getattr(channel_layer, "groups", {}).get("room") is None


async def test_groups_without_layer_is_a_clear_error(no_channel_layer: None) -> None:
    communicator = WebsocketCommunicator(Room.as_asgi(), "/ws/")
    await communicator.send_input({"type": "websocket.connect"})
    with pytest.raises(InvalidChannelLayerError, match="doesn't support groups"):
        await communicator.wait()


async def test_group_send_from_sync_code(channel_layer: BaseChannelLayer) -> None:
    from asgiref.sync import async_to_sync, sync_to_async

    alice = WebsocketCommunicator(Room.as_asgi(), "/ws/")
    await alice.connect()

    def notify() -> None:
        async_to_sync(channel_layer.group_send)("room", {"type": "room.message", "text": "sync"})

    await asyncio.wait_for(sync_to_async(notify)(), 2)
    assert await alice.receive_from() == "sync"
    await alice.disconnect()


class CrashingRoom(AsyncWebsocketConsumer):
    groups = ["crashers"]

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        raise RuntimeError("handler broke")


class SyncCrashingRoom(WebsocketConsumer):
    groups = ["crashers"]

    def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        raise RuntimeError("handler broke")


@pytest.mark.parametrize("consumer", [CrashingRoom, SyncCrashingRoom])
async def test_a_crashed_consumer_leaves_its_groups(
    channel_layer: BaseChannelLayer, consumer: Any
) -> None:
    communicator = WebsocketCommunicator(consumer.as_asgi(), "/ws/")
    assert (await communicator.connect(timeout=5))[0]
    assert isinstance(channel_layer, InMemoryChannelLayer)
    assert len(channel_layer.groups.get("crashers", {})) == 1
    await communicator.send_to(text_data="boom")
    with pytest.raises(RuntimeError, match="handler broke"):
        await communicator.wait(timeout=5)
    assert not channel_layer.groups.get("crashers")
