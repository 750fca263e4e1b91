"""BaseMiddleware and the exception tree."""

from __future__ import annotations

from typing import Any

from headrace import exceptions
from headrace._types import Receive, Scope, Send
from headrace.generic.websocket import WebsocketConsumer
from headrace.middleware import BaseMiddleware
from headrace.testing import WebsocketCommunicator


class AddsUser(BaseMiddleware):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        scope = dict(scope, user="ada")
        return await super().__call__(scope, receive, send)


async def test_middleware_adds_keys_without_leaking_them() -> None:
    seen: list[Scope] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> str:
        seen.append(scope)
        scope["inner_only"] = True
        return "result"

    outer_scope: Scope = {"type": "http", "path": "/"}
    assert await AddsUser(inner)(outer_scope, receive=None, send=None) == "result"  # type: ignore[arg-type]
    assert seen[0]["user"] == "ada"
    assert outer_scope == {"type": "http", "path": "/"}


def test_exception_tree() -> None:
    assert issubclass(exceptions.ChannelFull, exceptions.ChannelLayerError)
    assert issubclass(exceptions.InvalidChannelLayerError, ValueError)
    assert issubclass(exceptions.InvalidChannelName, TypeError)
    assert issubclass(exceptions.RequestTimeout, exceptions.RequestAborted)
    assert issubclass(exceptions.ConfigError, ValueError)
    for name in exceptions.__all__:
        assert issubclass(getattr(exceptions, name), exceptions.HeadraceError)
    for control in (
        exceptions.StopConsumer,
        exceptions.AcceptConnection,
        exceptions.DenyConnection,
    ):
        assert issubclass(control, exceptions.ConsumerControl)


class OverridesHandlers(WebsocketConsumer):
    """A sync consumer overriding framework handlers and calling super(), as Channels code does."""

    events: list[str] = []

    def websocket_connect(self, message: dict[str, Any]) -> None:
        OverridesHandlers.events.append("connect")
        super().websocket_connect(message)

    def websocket_receive(self, message: dict[str, Any]) -> None:
        OverridesHandlers.events.append("receive")
        super().websocket_receive(message)

    def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        self.send(text_data=f"got {text_data}")

    def websocket_disconnect(self, message: dict[str, Any]) -> None:
        OverridesHandlers.events.append("disconnect")
        super().websocket_disconnect(message)


async def test_sync_overrides_calling_super(no_channel_layer: None) -> None:
    OverridesHandlers.events = []
    communicator = WebsocketCommunicator(OverridesHandlers.as_asgi(), "/")
    assert (await communicator.connect())[0]
    await communicator.send_to(text_data="x")
    assert await communicator.receive_from() == "got x"
    await communicator.disconnect()
    assert OverridesHandlers.events == ["connect", "receive", "disconnect"]


async def test_consumer_instance_as_application(no_channel_layer: None) -> None:
    class Echo(WebsocketConsumer):
        def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
            self.send(text_data=text_data)

    communicator = WebsocketCommunicator(Echo(), "/")  # type: ignore[arg-type]
    assert (await communicator.connect())[0]
    await communicator.send_to(text_data="instance")
    assert await communicator.receive_from() == "instance"
    await communicator.disconnect()
