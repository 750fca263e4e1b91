"""The app every server runs in the HTTP benchmark: plaintext, a 64 KiB body, a POST echo."""

from __future__ import annotations

from headrace._types import Receive, Scope, Send

PLAIN = b"Hello, World!"
BIG = b"x" * (64 * 1024)
TEXT = [(b"content-type", b"text/plain")]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/echo":
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
    else:
        body = BIG if path == "/64k" else PLAIN
    await send({"type": "http.response.start", "status": 200, "headers": TEXT})
    await send({"type": "http.response.body", "body": body})
