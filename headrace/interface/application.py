"""The interface bridge as one ASGI 3 application.

Theory of operation
-------------------
``headrace my_project.asgi:channel_layer`` imports a Channels-1 layer; the server asks it for
an application (``as_asgi_application()``) and gets an :class:`InterfaceApplication`. The
server then runs it exactly like any other ASGI 3 app, one instance per HTTP request or
WebSocket connection, so ``headrace/server/`` knows nothing of layers and every server feature
(HTTP/2, TLS, proxy headers, root path, access log, limits, ``--workers``) applies unchanged.

Each instance talks to the **async** backend (:class:`~headrace.layers.base.BaseChannelLayer`)
directly, on the server's own event loop: ``new_channel()`` for its reply channel, ``send()``
for what the client did, and ONE ``receive()`` at a time on its reply channel for what the
workers answer. No thread hops and no polling: the backends multiplex process-local (``!``)
channels themselves (the Redis layer reads one inbox per process, the IPC layer has the hub
push watched channels), so a thousand idle sockets cost a thousand parked futures.

The HTTP side lives in :mod:`headrace.interface.http`, the WebSocket side in
:mod:`headrace.interface.websocket`, the message formats in :mod:`headrace.interface.messages`.

``layer`` is either the ASGI-1 view from :mod:`headrace.asgi` (its ``.backend`` is used, and its
``max_message_size`` bounds request-body chunks) or a plain async backend.
"""

from __future__ import annotations

import logging
from typing import Any

from headrace._types import Receive, Scope, Send
from headrace.interface.http import HttpBridge
from headrace.interface.websocket import WebSocketBridge
from headrace.layers.base import BaseChannelLayer

__all__ = ["DEFAULT_BODY_CHUNK_SIZE", "DEFAULT_HTTP_TIMEOUT", "InterfaceApplication"]

logger = logging.getLogger("headrace.interface")

DEFAULT_HTTP_TIMEOUT = 120.0
"""Seconds an HTTP request waits for its response (Daphne 1.x's default); then 503."""

DEFAULT_BODY_CHUNK_SIZE = 512 * 1024
"""Request body bytes per message: more than this goes through a body channel."""

DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024


class InterfaceApplication:
    """The ASGI 3 application of a Channels-1 interface server (see module docs).

    ``http_timeout``: seconds an HTTP request may wait for its response to finish (``None``:
    no limit); a response not started by then gets a 503, one started is cut off. The server's
    own ``--http-timeout`` applies as well when it is shorter. ``body_chunk_size``: how many
    request body bytes travel per message (default: 512 KiB, at most half the layer's message
    size limit).
    """

    def __init__(
        self,
        layer: Any,
        *,
        http_timeout: float | None = DEFAULT_HTTP_TIMEOUT,
        body_chunk_size: int | None = None,
    ) -> None:
        if http_timeout is not None and not http_timeout > 0:
            raise ValueError(f"http_timeout must be positive or None, not {http_timeout!r}")
        if body_chunk_size is not None and body_chunk_size < 1:
            raise ValueError(f"body_chunk_size must be at least 1, not {body_chunk_size!r}")
        if not isinstance(layer, BaseChannelLayer) and not hasattr(layer, "backend"):
            raise TypeError(
                "InterfaceApplication needs a channel layer (an ASGI-1 layer or an async "
                f"BaseChannelLayer), not {type(layer).__name__}"
            )
        self.layer = layer
        self.http_timeout = http_timeout
        limit = int(getattr(layer, "max_message_size", DEFAULT_MAX_MESSAGE_SIZE))
        self.body_chunk_size = body_chunk_size or max(1, min(DEFAULT_BODY_CHUNK_SIZE, limit // 2))
        self._backend: BaseChannelLayer | None = (
            layer if isinstance(layer, BaseChannelLayer) else None
        )

    def __repr__(self) -> str:
        return f"<InterfaceApplication over {self.layer!r}>"

    @property
    def backend(self) -> BaseChannelLayer:
        """The async layer every connection talks to (looked up once, on first use)."""
        backend = self._backend
        if backend is None:
            backend = self._backend = self.layer.backend
        return backend

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await HttpBridge(self, scope, receive, send).run()
        elif kind == "websocket":
            await WebSocketBridge(self, scope, receive, send).run()
        elif kind == "lifespan":
            await _lifespan(receive, send)
        else:
            raise ValueError(f"the interface bridge does not serve {kind!r} connections")


async def _lifespan(receive: Receive, send: Send) -> None:
    """Nothing to start or stop: the layer connects on first use and each backend releases
    its per-loop resources when the server's loop closes."""
    while True:
        event = await receive()
        if event["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif event["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
