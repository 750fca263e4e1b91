from typing import Any

from headrace.binding import BindingConsumer
from headrace.generic.multiplexer import AsyncJsonWebsocketDemultiplexer
from headrace.generic.websocket import AsyncJsonWebsocketConsumer
from tests.live.cards.bindings import CardBinding


class BoardCards(BindingConsumer):
    """Watches one board: joins its group, then serves the card binding."""

    bindings = [CardBinding]

    async def connect(self) -> None:
        board = self.scope["url_route"]["kwargs"]["board"]
        assert self.channel_layer is not None
        await self.channel_layer.group_add(f"board-{board}", self.channel_name)
        await self.accept()


class Echo(AsyncJsonWebsocketConsumer):
    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        await self.send_json(content)


class BoardMux(AsyncJsonWebsocketDemultiplexer):
    applications = {"cards": BoardCards.as_asgi(), "echo": Echo.as_asgi()}
