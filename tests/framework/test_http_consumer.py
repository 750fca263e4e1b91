"""AsyncHttpConsumer through HttpCommunicator and ApplicationCommunicator: whole responses,
streaming, server-sent events pushed from the channel layer, disconnects."""

from __future__ import annotations

from typing import Any

import pytest

from headrace.generic.http import AsyncHttpConsumer
from headrace.layers import BaseChannelLayer
from headrace.testing import ApplicationCommunicator, HttpCommunicator


class Hello(AsyncHttpConsumer):
    async def handle(self, body: bytes) -> None:
        query = self.scope["query_string"].decode()
        await self.send_response(
            201,
            b"got " + body + b" " + query.encode(),
            headers={b"content-type": b"text/plain"},
        )


class Streamer(AsyncHttpConsumer):
    async def handle(self, body: bytes) -> None:
        await self.send_headers(headers=[(b"content-type", b"text/plain")])
        for part in (b"one ", b"two ", b"three"):
            await self.send_body(part, more_body=True)
        await self.send_body(b"")


class EventStream(AsyncHttpConsumer):
    """Server-sent events: the response stays open; layer messages push events."""

    disconnected = 0

    async def handle(self, body: bytes) -> None:
        await self.send_headers(headers=[(b"content-type", b"text/event-stream")])
        await self.send_body(b": open\n\n", more_body=True)
        assert self.channel_layer is not None
        await self.channel_layer.group_add("news", self.channel_name)

    async def http_request(self, message: dict[str, Any]) -> None:
        if not message.get("more_body"):
            await self.handle(message.get("body", b""))

    async def news_item(self, event: dict[str, Any]) -> None:
        await self.send_body(f"data: {event['text']}\n\n".encode(), more_body=not event["last"])

    async def disconnect(self) -> None:
        EventStream.disconnected += 1


async def test_whole_response() -> None:
    communicator = HttpCommunicator(Hello.as_asgi(), "POST", "/hello?x=1", body=b"data")
    response = await communicator.get_response()
    assert response == {
        "status": 201,
        "headers": [(b"content-type", b"text/plain")],
        "body": b"got data x=1",
    }


async def test_streamed_body_and_chunked_request() -> None:
    communicator = ApplicationCommunicator(
        Streamer.as_asgi(), {"type": "http", "method": "GET", "path": "/", "headers": []}
    )
    await communicator.send_input({"type": "http.request", "body": b"a", "more_body": True})
    await communicator.send_input({"type": "http.request", "body": b"b"})
    start = await communicator.receive_output()
    assert start["status"] == 200
    chunks = []
    while True:
        chunk = await communicator.receive_output()
        chunks.append(chunk["body"])
        if not chunk["more_body"]:
            break
    assert b"".join(chunks) == b"one two three"
    await communicator.wait()


async def test_server_sent_events_from_the_layer(channel_layer: BaseChannelLayer) -> None:
    EventStream.disconnected = 0
    communicator = HttpCommunicator(EventStream.as_asgi(), "GET", "/events")
    await communicator.send_input({"type": "http.request", "body": b""})
    assert (await communicator.receive_output())["type"] == "http.response.start"
    assert (await communicator.receive_output())["body"] == b": open\n\n"
    await channel_layer.group_send("news", {"type": "news.item", "text": "first", "last": False})
    assert (await communicator.receive_output())["body"] == b"data: first\n\n"
    await channel_layer.group_send("news", {"type": "news.item", "text": "last", "last": True})
    final = await communicator.receive_output()
    assert final == {"type": "http.response.body", "body": b"data: last\n\n", "more_body": False}
    await communicator.send_input({"type": "http.disconnect"})
    await communicator.wait()
    assert EventStream.disconnected == 1


async def test_send_body_requires_bytes() -> None:
    class Wrong(AsyncHttpConsumer):
        async def handle(self, body: bytes) -> None:
            await self.send_headers()
            await self.send_body("text")  # type: ignore[arg-type]

    communicator = HttpCommunicator(Wrong.as_asgi(), "GET", "/")
    with pytest.raises(TypeError, match="body must be bytes"):
        await communicator.get_response()


async def test_handle_must_be_implemented() -> None:
    communicator = HttpCommunicator(AsyncHttpConsumer.as_asgi(), "GET", "/")
    with pytest.raises(NotImplementedError):
        await communicator.get_response()
