"""The 1.x routings: demultiplexed ``websocket.receive`` messages straight to the 1.x card
binding (``channel_routing``), and the real 1.x demultiplexer in front of it (``demux_routing``)."""

from typing import Any

from headrace.generic.websockets import WebsocketDemultiplexer
from headrace.routing import route, route_class
from tests.live.cards.bindings import CardBinding1x

channel_routing = [route("websocket.receive", CardBinding1x.consumer)]


class BoardDemultiplexer(WebsocketDemultiplexer):
    """The 1.x shape of the manual: one stream per binding, the board's group on connect."""

    consumers = {"cards1": CardBinding1x.consumer}

    def connection_groups(self, **kwargs: Any) -> list[str]:
        return [f"board1-{kwargs['board']}"]


demux_routing = [route_class(BoardDemultiplexer, path=r"^/demux/(?P<board>[a-z]+)/$")]
