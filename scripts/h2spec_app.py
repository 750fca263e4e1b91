"""The application scripts/h2spec-compliance serves: it reads the whole request, then answers.

Reading the body first keeps each h2spec case deterministic: the stream stays open until the
client ends it, so a malformed request (a wrong content-length, a flow-control overflow) is
judged by the server's HTTP/2 rules, not raced by a response that has already completed.
"""

from __future__ import annotations

from typing import Any


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = f"headrace read {size} bytes of {scope['method']} {scope['path']}\n".encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain; charset=utf-8")],
        }
    )
    await send({"type": "http.response.body", "body": body})
