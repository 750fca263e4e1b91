"""The Channels-1 interface bridge: connections in, channel-layer messages out (and back).

``InterfaceApplication(layer)`` is an ordinary ASGI 3 application; the server runs one instance
per connection and learns nothing about layers. Each HTTP request and WebSocket event becomes a
Channels 1.x message on the layer (``http.request``, ``websocket.connect`` ...), and what the
workers send to the connection's reply channel becomes ASGI events again. See
``docs/interface.md`` and :mod:`headrace.interface.application`.
"""

from __future__ import annotations

from headrace.interface.application import (
    DEFAULT_BODY_CHUNK_SIZE,
    DEFAULT_HTTP_TIMEOUT,
    InterfaceApplication,
)
from headrace.interface.messages import BODY_CHANNEL_PREFIX, body_channel_names

__all__ = [
    "BODY_CHANNEL_PREFIX",
    "DEFAULT_BODY_CHUNK_SIZE",
    "DEFAULT_HTTP_TIMEOUT",
    "InterfaceApplication",
    "body_channel_names",
]
