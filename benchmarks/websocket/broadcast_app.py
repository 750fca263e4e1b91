"""The ASGI app of ``bench_idle_broadcast.py``: idle WebSockets and one broadcast trigger.

Every accepted WebSocket registers its ``send`` and then only waits for its disconnect (an idle
connection). ``POST /broadcast`` sends one text message to every registered WebSocket, one
``await send(...)`` after the other in the request's own task, and answers with how many it
sent; the fan-out is the server's work, not a channel layer's.
"""

from __future__ import annotations

from typing import Any

SENDS: dict[int, Any] = {}
MESSAGE = {"type": "websocket.send", "text": "broadcast: the one message every socket gets"}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        await idle_websocket(receive, send)
    elif scope["type"] == "http":
        await broadcast(receive, send)
    elif scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})


async def idle_websocket(receive: Any, send: Any) -> None:
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    key = id(send)
    SENDS[key] = send
    try:
        while (await receive())["type"] != "websocket.disconnect":
            pass
    finally:
        SENDS.pop(key, None)


async def broadcast(receive: Any, send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    sent = 0
    for websocket_send in list(SENDS.values()):
        try:
            await websocket_send(MESSAGE)
        except Exception:  # closed meanwhile: not delivered, and not counted
            continue
        sent += 1
    body = str(sent).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
