"""The example's channel routing, one block per section of the Channels 1.x manual."""

from examples.channels1.chat import consumers
from headrace.routing import include, route, route_class

# Getting Started: an echo server, then a chat for everyone.
getting_started = [
    route("websocket.receive", consumers.ws_echo, path=r"^/echo/$"),
    route("websocket.connect", consumers.ws_add, path=r"^/chat/$"),
    route("websocket.receive", consumers.ws_message, path=r"^/chat/$"),
    route("websocket.disconnect", consumers.ws_disconnect, path=r"^/chat/$"),
]

# Authentication: users chat with those whose name starts with the same letter.
authentication = [
    route("websocket.connect", consumers.letters_add, path=r"^/$"),
    route("websocket.receive", consumers.letters_message, path=r"^/$"),
    route("websocket.disconnect", consumers.letters_disconnect, path=r"^/$"),
]

# Routing and Models: rooms from the path, messages saved by a consumer of their own channel.
rooms = [
    route("websocket.connect", consumers.room_connect, path=r"^/(?P<room>[a-z0-9_-]+)/$"),
    route("websocket.receive", consumers.room_message),
    route("websocket.disconnect", consumers.room_disconnect),
]

# Enforcing Ordering.
ordering = [
    route("websocket.connect", consumers.ordered_add, path=r"^/$"),
    route("websocket.receive", consumers.ordered_message, path=r"^/$"),
]

# Generic Consumers.
generic = [
    route_class(consumers.EchoServer, path=r"^/echo/$"),
    consumers.JsonEcho.as_route(path=r"^/json/$"),
    consumers.Demultiplexer.as_route(path=r"^/multiplex/$"),
]

# HTTP by routing filters: POST /poll/ is a consumer; everything else goes to the views.
http_routing = [
    route("http.request", consumers.poll_consumer, path=r"^/poll/$", method=r"^POST$"),
]

channel_routing = [
    include(getting_started),
    include(authentication, path=r"^/letters"),
    include(rooms, path=r"^/rooms"),
    route("chat-messages", consumers.msg_consumer),
    include(ordering, path=r"^/ordered"),
    include(generic, path=r"^/generic"),
    include(http_routing),
]
