"""``/ws/<room>/``: a 1.x JSON consumer in group ``room.<room>`` with recovery and presence."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from headrace.generic.websockets import JsonWebsocketConsumer
from headrace.routing import route_class


class Room(JsonWebsocketConsumer):
    group_recovery = True
    forward_presence = True

    def connection_groups(self, **kwargs: Any) -> list[str]:
        return [f"room.{kwargs['room']}"]

    def connection_presence(self, **kwargs: Any) -> dict[str, Any]:
        query = parse_qs(bytes(self.message.content.get("query_string") or b"").decode())
        return {"name": query.get("name", ["anonymous"])[0]}


channel_routing = [route_class(Room, path=r"^/ws/(?P<room>[a-z0-9]+)/$")]
