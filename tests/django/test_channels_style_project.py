"""A small Channels-style project, written against the documented Channels 4 API with only
``channels`` → ``headrace`` changed in the imports, tested the way a Channels project tests
itself: communicators, ``override_settings(CHANNEL_LAYERS=...)``, ``database_sync_to_async``.

The project: a JSON chat consumer behind ``OriginValidator(AuthMiddlewareStack(URLRouter))``
that only logged-in users may join and that records each post count in the session user's
``last_login`` (a database write through ``database_sync_to_async``); a synchronous echo
consumer choosing a subprotocol; an HTTP consumer; and a background ``SyncConsumer`` on a
``ChannelNameRouter`` replying over the layer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.test import Client, override_settings
from django.urls import path, re_path

from headrace.auth import AuthMiddlewareStack
from headrace.consumer import SyncConsumer
from headrace.db import database_sync_to_async
from headrace.generic.http import AsyncHttpConsumer
from headrace.generic.websocket import AsyncJsonWebsocketConsumer, WebsocketConsumer
from headrace.layers import InMemoryChannelLayer, get_channel_layer
from headrace.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter
from headrace.security.websocket import OriginValidator
from headrace.testing import ApplicationCommunicator, HttpCommunicator, WebsocketCommunicator

IN_MEMORY = {"default": {"BACKEND": "headrace.layers.InMemoryChannelLayer"}}
ORIGIN = (b"origin", b"http://allowed.test")


# --- consumers.py ---------------------------------------------------------------------------
class ChatConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        if not self.scope["user"].is_authenticated:
            await self.close()
            return
        self.group_name = "chat_" + self.scope["url_route"]["kwargs"]["room"]
        await self.channel_layer.group_add(self.group_name, self.channel_name)  # type: ignore[union-attr]
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group_name"):
            await self.channel_layer.group_discard(self.group_name, self.channel_name)  # type: ignore[union-attr]

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        username = await self.touch_user()
        event = {"type": "chat.message", "message": content["message"], "user": username}
        await self.channel_layer.group_send(self.group_name, event)  # type: ignore[union-attr]

    async def chat_message(self, event: dict[str, Any]) -> None:
        await self.send_json({"message": event["message"], "user": event["user"]})

    @database_sync_to_async
    def touch_user(self) -> str:
        user = get_user_model().objects.get(pk=self.scope["user"].pk)
        user.first_name = "posted"
        user.save(update_fields=["first_name"])
        return str(user.username)


class ShoutConsumer(WebsocketConsumer):
    def connect(self) -> None:
        self.accept("shout.v2" if "shout.v2" in self.scope["subprotocols"] else None)

    def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        self.send(text_data=(text_data or "").upper())


class HelloConsumer(AsyncHttpConsumer):
    async def handle(self, body: bytes) -> None:
        name = self.scope["url_route"]["kwargs"]["name"]
        await self.send_response(
            200,
            f"hello {name}: {body.decode()}".encode(),
            headers=[(b"content-type", b"text/plain")],
        )


class DoublerWorker(SyncConsumer):
    def double_it(self, message: dict[str, Any]) -> None:
        reply = {"type": "doubled", "value": message["value"] * 2}
        async_to_sync(self.channel_layer.send)(message["reply_to"], reply)  # type: ignore[union-attr]


# --- routing.py / asgi.py -------------------------------------------------------------------
application = ProtocolTypeRouter(
    {
        "http": URLRouter([path("hello/<str:name>/", HelloConsumer.as_asgi())]),
        "websocket": OriginValidator(
            AuthMiddlewareStack(
                URLRouter(
                    [
                        path("ws/chat/<str:room>/", ChatConsumer.as_asgi()),
                        re_path(r"^ws/shout/$", ShoutConsumer.as_asgi()),
                    ]
                )
            ),
            ["http://allowed.test"],
        ),
        "channel": ChannelNameRouter({"doubler": DoublerWorker.as_asgi()}),
    }
)


# --- tests.py -------------------------------------------------------------------------------
def session_cookie(user: Any) -> tuple[bytes, bytes]:
    client = Client()
    client.force_login(user)
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


async def logged_in(
    user_factory: Callable[[str], Any], name: str
) -> tuple[Any, tuple[bytes, bytes]]:
    user = await database_sync_to_async(user_factory)(name)
    return user, await database_sync_to_async(session_cookie)(user)


async def test_http_consumer_through_the_router() -> None:
    communicator = HttpCommunicator(application, "POST", "/hello/ada/", body=b"hi")
    response = await communicator.get_response(timeout=5)
    assert response["status"] == 200
    assert response["body"] == b"hello ada: hi"
    assert [b"content-type", b"text/plain"] in [list(h) for h in response["headers"]]


@override_settings(CHANNEL_LAYERS=IN_MEMORY)
async def test_two_logged_in_users_chat_and_the_database_is_written(
    user_factory: Callable[[str], Any],
) -> None:
    alice, alice_cookie = await logged_in(user_factory, "cs-alice")
    _, bob_cookie = await logged_in(user_factory, "cs-bob")
    first = WebsocketCommunicator(application, "/ws/chat/lobby/", headers=[ORIGIN, alice_cookie])
    second = WebsocketCommunicator(application, "/ws/chat/lobby/", headers=[ORIGIN, bob_cookie])
    other_room = WebsocketCommunicator(application, "/ws/chat/attic/", headers=[ORIGIN, bob_cookie])
    for communicator in (first, second, other_room):
        connected, _ = await communicator.connect(timeout=5)
        assert connected
    await first.send_json_to({"message": "hello"})
    expected = {"message": "hello", "user": "cs-alice"}
    assert await first.receive_json_from(timeout=5) == expected
    assert await second.receive_json_from(timeout=5) == expected
    assert await other_room.receive_nothing()
    for communicator in (first, second, other_room):
        await communicator.disconnect(timeout=5)
    await database_sync_to_async(alice.refresh_from_db)()
    assert alice.first_name == "posted"


@override_settings(CHANNEL_LAYERS=IN_MEMORY)
async def test_anonymous_and_foreign_origin_are_refused(user_factory: Callable[[str], Any]) -> None:
    _, cookie = await logged_in(user_factory, "cs-carol")
    anonymous = WebsocketCommunicator(application, "/ws/chat/lobby/", headers=[ORIGIN])
    foreign = WebsocketCommunicator(
        application, "/ws/chat/lobby/", headers=[(b"origin", b"http://evil.test"), cookie]
    )
    assert (await anonymous.connect(timeout=5))[0] is False
    assert (await foreign.connect(timeout=5))[0] is False


async def test_sync_consumer_with_a_subprotocol() -> None:
    communicator = WebsocketCommunicator(
        application, "/ws/shout/", headers=[ORIGIN], subprotocols=["shout.v1", "shout.v2"]
    )
    connected, subprotocol = await communicator.connect(timeout=5)
    assert (connected, subprotocol) == (True, "shout.v2")
    await communicator.send_to(text_data="quiet")
    assert await communicator.receive_from(timeout=5) == "QUIET"
    await communicator.disconnect(timeout=5)


async def test_background_worker_replies_over_the_layer() -> None:
    with override_settings(CHANNEL_LAYERS=IN_MEMORY):
        layer = get_channel_layer()
        assert isinstance(layer, InMemoryChannelLayer)
        reply_to = await layer.new_channel()
        worker = ApplicationCommunicator(application, {"type": "channel", "channel": "doubler"})
        await worker.send_input({"type": "double.it", "value": 21, "reply_to": reply_to})
        reply = await asyncio.wait_for(layer.receive(reply_to), timeout=5)
        assert reply == {"type": "doubled", "value": 42}
        await worker.wait(timeout=0.1)  # a worker never ends by itself: cancelled here
    assert get_channel_layer() is None  # the override is gone, and so is its layer
