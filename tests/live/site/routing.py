"""The 1.x routing: demultiplexed ``websocket.receive`` messages to the 1.x card binding."""

from headrace.routing import route
from tests.live.cards.bindings import CardBinding1x

channel_routing = [route("websocket.receive", CardBinding1x.consumer)]
