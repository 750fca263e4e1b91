"""Drive an ASGI application directly: build scopes, feed events, collect what it sends."""

from __future__ import annotations

import asyncio
from typing import Any

from headrace._types import ASGIApp, Message, Scope

TIMEOUT = 10.0


def http_scope(path: str = "/", headers: list[tuple[bytes, bytes]] | None = None) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers or [],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }


def websocket_scope(
    path: str = "/ws/",
    headers: list[tuple[bytes, bytes]] | None = None,
    query_string: bytes = b"",
    subprotocols: list[str] | None = None,
) -> Scope:
    return {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "ws",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query_string,
        "root_path": "",
        "headers": headers or [],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "subprotocols": subprotocols or [],
    }


async def call(app: ASGIApp, scope: Scope, events: list[Message]) -> list[Message]:
    """Run ``app`` until it returns, giving it ``events`` then a disconnect; return what it sent."""
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    for event in events:
        inbox.put_nowait(event)
    disconnect = "http.disconnect" if scope["type"] == "http" else "websocket.disconnect"
    sent: list[Message] = []

    async def receive() -> Message:
        if inbox.empty():
            return {"type": disconnect, "code": 1000}
        return await inbox.get()

    async def send(message: Message) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), TIMEOUT)
    return sent


class ScopeRecorder:
    """An ASGI app that records the scope it was called with and answers minimally."""

    def __init__(self) -> None:
        self.scope: dict[str, Any] = {}

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        self.scope = dict(scope)
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
        else:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
