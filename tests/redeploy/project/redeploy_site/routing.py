"""1.x routing: WebSocket echo and group chat, ``/version`` answered by a consumer."""

from __future__ import annotations

from headrace.routing import route
from redeploy_site import consumers

channel_routing = [
    route("websocket.connect", consumers.connect),
    route("websocket.receive", consumers.receive),
    route("websocket.disconnect", consumers.disconnect),
    route("http.request", consumers.version, path=r"^/version$"),
]
