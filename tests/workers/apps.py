"""ASGI applications the worker tests serve.

``pid_app`` answers ``/`` with the worker's pid and ``/slow?ms=N`` with it after N
milliseconds (from 500 ms on it first prints "slow request started"), so tests can tell
workers apart and keep requests in flight across a reload or a shutdown.
"""

from __future__ import annotations

import asyncio
import os
from urllib.parse import parse_qs

from headrace._types import Receive, Scope, Send


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def pid_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    assert scope["type"] == "http"
    if scope["path"] == "/slow":
        milliseconds = int(parse_qs(scope["query_string"].decode()).get("ms", ["200"])[0])
        if milliseconds >= 500:
            print(f"slow request started in {os.getpid()}", flush=True)
        await asyncio.sleep(milliseconds / 1000)
    body = str(os.getpid()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})
