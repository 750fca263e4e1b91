"""An async HTTP consumer for streaming responses, server-sent events and long polling.

Theory of operation
-------------------
:class:`AsyncHttpConsumer` collects ``http.request`` body chunks and, once the body is complete,
calls :meth:`AsyncHttpConsumer.handle` with it. ``handle`` answers with ``send_headers`` then one
or more ``send_body(..., more_body=True)`` calls and a final ``send_body``; or with
``send_response``. ``handle`` may stream for as long as it likes. Messages are dispatched one at
a time, so channel-layer handlers run only once ``handle`` has returned; and, as in Channels,
the instance stops after ``handle`` returns. Server-sent events and long polling therefore
start the response in ``handle`` (headers, perhaps a first ``more_body=True`` chunk, a
``group_add``), override ``http_request`` so the instance stays alive, and send further chunks
from layer handlers, finishing with ``more_body=False``. ``http.disconnect`` (the client went
away) calls :meth:`disconnect` and stops the instance.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from headrace.consumer import AsyncConsumer
from headrace.exceptions import StopConsumer

__all__ = ["AsyncHttpConsumer"]

HeaderInput = Iterable[tuple[bytes, bytes]] | Iterable[list[bytes]] | Mapping[bytes, bytes]


class AsyncHttpConsumer(AsyncConsumer):
    """Base class for async HTTP endpoints; subclasses implement :meth:`handle`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.body: list[bytes] = []

    async def send_headers(self, *, status: int = 200, headers: HeaderInput | None = None) -> None:
        """Start the response. ``headers`` is a list of (name, value) byte pairs or a dict.

        The server sends nothing to the client before the first :meth:`send_body`."""
        if headers is None:
            header_list: list[Any] = []
        elif isinstance(headers, Mapping):
            header_list = list(headers.items())
        else:
            header_list = list(headers)
        await self.send({"type": "http.response.start", "status": status, "headers": header_list})

    async def send_body(self, body: bytes, *, more_body: bool = False) -> None:
        """Send a body chunk; ``more_body=True`` keeps the response open for more."""
        if not isinstance(body, bytes | bytearray | memoryview):
            raise TypeError(f"body must be bytes, not {type(body).__name__}")
        await self.send({"type": "http.response.body", "body": bytes(body), "more_body": more_body})

    async def send_response(self, status: int, body: bytes, **kwargs: Any) -> None:
        """Send a whole response at once: ``send_headers(status=..., **kwargs)`` + ``send_body``."""
        await self.send_headers(status=status, **kwargs)
        await self.send_body(body)

    async def handle(self, body: bytes) -> None:
        """Called with the complete request body; respond with the ``send_*`` methods."""
        raise NotImplementedError("Subclasses of AsyncHttpConsumer must provide a handle() method.")

    async def disconnect(self) -> None:
        """Called when the request is over or the client left; do not send from here."""

    async def http_request(self, message: dict[str, Any]) -> None:
        """Collect body chunks; call :meth:`handle` once the body is complete, then stop."""
        if "body" in message:
            self.body.append(message["body"])
        if not message.get("more_body"):
            try:
                await self.handle(b"".join(self.body))
            finally:
                await self.disconnect()
            raise StopConsumer()

    async def http_disconnect(self, message: dict[str, Any]) -> None:
        """The client went away: run :meth:`disconnect` and stop the instance."""
        await self.disconnect()
        raise StopConsumer()
