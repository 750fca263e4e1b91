"""The 1.x channel routing, identical on both stacks: only the ``route`` import differs.

``http.request`` for ``/raw`` goes to a plain consumer; every other path falls through to the
stack's view consumer (Django's URLconf, see urls.py). The echo keeps no state, so
``websocket.disconnect`` has no route.
"""

from benchproj import consumers
from benchproj.stack import STACK

if STACK == "channels":
    from channels.routing import route
else:
    from headrace.routing import route

channel_routing = [
    route("websocket.connect", consumers.ws_connect),
    route("websocket.receive", consumers.ws_receive),
    route("http.request", consumers.http_raw, path=r"^/raw$"),
]
