"""ASGI apps imported by subprocess servers in the CLI tests (``tests.server.apps:NAME``)."""

from __future__ import annotations

import asyncio
import os
import sys

from headrace._types import Receive, Scope, Send


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello " + scope["path"].encode()})


async def slow(scope: Scope, receive: Receive, send: Send) -> None:
    """Announces the request on stdout, then takes a while to answer (a request in flight)."""
    if scope["type"] != "http":
        return
    sys.stdout.write("IN-FLIGHT\n")
    sys.stdout.flush()
    await asyncio.sleep(0.5)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"finished"})


async def failing_lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})


async def loop_name(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers with the module of the running event loop's class (``uvloop`` or ``asyncio``)."""
    if scope["type"] != "http":
        return
    module = type(asyncio.get_running_loop()).__module__.split(".")[0]
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": module.encode()})


async def slow_startup(scope: Scope, receive: Receive, send: Send) -> None:
    """Lifespan startup announces itself on stdout, then waits for the file named by
    ``HEADRACE_TEST_RELEASE`` (a migration that takes a while); requests get ``served``."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                sys.stdout.write("STARTING\n")
                sys.stdout.flush()
                release = os.environ["HEADRACE_TEST_RELEASE"]
                for _ in range(3000):  # at most 60 s
                    if os.path.exists(release):  # noqa: ASYNC240 - a tiny stat, on purpose
                        break
                    await asyncio.sleep(0.02)
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"served"})
