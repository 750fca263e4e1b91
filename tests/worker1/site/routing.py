"""The project's Channels-1 routing."""

from headrace.routing import route
from tests.worker1.site import consumers

channel_routing = [
    route("worker1.echo", consumers.echo),
    route("worker1.other", consumers.echo),
    route("worker1.rooms", consumers.room, path=r"^/rooms/(?P<room>[a-z]+)/(?P<number>\d+)/$"),
    route("worker1.crash", consumers.crash),
    route("worker1.held", consumers.held),
    route("worker1.rendezvous", consumers.rendezvous),
    route("worker1.async", consumers.async_echo),
    route("http.request", consumers.short_upload_wait, path=r"^/slow-upload/"),
    route("websocket.connect", consumers.ws_connect),
    route("websocket.receive", consumers.ws_echo),
]
