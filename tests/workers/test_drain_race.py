"""The graceful drain serves connections that were accepted in the instant it began.

During a ``SIGHUP`` reload the old workers drain while clients keep opening connections on the
shared socket. A connection an old worker accepted just before its listener closed must still
get its response; these tests pin each way that instant can fall, in process, without timing.
"""

from __future__ import annotations

import asyncio

from headrace._types import Receive, Scope, Send
from headrace.server.config import Config
from headrace.server.server import Server
from tests.conftest import free_port

WAIT = 10.0
REQUEST = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"served"})


async def _started_server() -> tuple[Server, asyncio.Task[None], int]:
    port = free_port()
    # A keep-alive timeout far above WAIT: a dropped request shows as a timeout, not as a close.
    config = Config(host="127.0.0.1", port=port, lifespan="off", timeout_keep_alive=60)
    server = Server(config, hello)
    task = asyncio.create_task(server.serve())
    await asyncio.wait_for(server.ready.wait(), WAIT)
    return server, task, port


async def _answer(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.read(), WAIT)


async def test_connection_made_after_the_drain_began_is_served() -> None:
    server, task, port = await _started_server()
    try:
        # The accept callback ran before the listener closed, the connection object is made
        # after the drain flagged the server as shutting down.
        server.state.shutting_down = True
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(REQUEST)
        answer = await _answer(reader)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200")
        assert b"connection: close" in answer.lower()
        assert answer.endswith(b"served")
    finally:
        server.shutdown(force=True)
        await asyncio.wait_for(task, WAIT)


async def test_fresh_connection_whose_request_arrives_after_shutdown_is_served() -> None:
    server, task, port = await _started_server()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.wait_for(_until_connected(server), WAIT)
        server.shutdown()
        await asyncio.wait_for(_until_draining(server), WAIT)
        writer.write(REQUEST)
        answer = await _answer(reader)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200")
        assert answer.endswith(b"served")
    finally:
        await asyncio.wait_for(task, WAIT)


async def test_request_head_split_across_the_drain_is_served() -> None:
    server, task, port = await _started_server()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(REQUEST[:10])
        await asyncio.wait_for(_until_reading(server), WAIT)
        server.shutdown()
        await asyncio.wait_for(_until_draining(server), WAIT)
        writer.write(REQUEST[10:])
        answer = await _answer(reader)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200")
        assert answer.endswith(b"served")
    finally:
        await asyncio.wait_for(task, WAIT)


# The conditions below observe server state that offers no event to await; each is bounded by
# the caller's wait_for.


async def _until_connected(server: Server) -> None:
    while not server.state.connections:  # noqa: ASYNC110
        await asyncio.sleep(0.005)


async def _until_reading(server: Server) -> None:
    def head_started() -> bool:
        return any(
            getattr(connection.handler, "_head_incomplete", False)
            for connection in server.state.connections
        )

    while not head_started():  # noqa: ASYNC110
        await asyncio.sleep(0.005)


async def _until_draining(server: Server) -> None:
    while not server.state.shutting_down:  # noqa: ASYNC110
        await asyncio.sleep(0.005)
