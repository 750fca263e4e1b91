"""Redeploy without dropping a socket: real interface servers, workers and clients.

Every worker is stopped with SIGTERM (and must exit 0) while WebSockets stay open on the
interface server; in the gap the clients keep sending, an HTTP request is made and a new
WebSocket is opened; then workers with changed code (``VERSION = "v2"``) start, and everything
sent in the gap is answered by the new code on the same, still-open connections. Over Redis
(our own server, a unique prefix) and over IPC (a standalone hub); the two-interface-server test
is two hosts' worth of processes sharing one Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.protocol import State

from tests.redeploy.support import WAIT, Deployment

pytestmark = pytest.mark.timeout(180)


async def receive_text(socket: ClientConnection) -> str:
    message = await asyncio.wait_for(socket.recv(), WAIT)
    assert isinstance(message, str), message
    return message


@contextlib.asynccontextmanager
async def websockets(url: str, count: int) -> AsyncIterator[list[ClientConnection]]:
    async with contextlib.AsyncExitStack() as stack:
        sockets = [
            await stack.enter_async_context(connect(url, open_timeout=WAIT)) for _ in range(count)
        ]
        yield sockets


async def send_raw_request(
    port: int, path: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Write a whole HTTP/1.1 request now; the response is read later."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    return reader, writer


async def read_raw_response(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
    """Status line and body of a response to a ``Connection: close`` request."""
    try:
        raw = await asyncio.wait_for(reader.read(), WAIT)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].decode()
    if b"transfer-encoding: chunked" in head.lower():
        body = dechunk(body)
    return f"{status} {body.decode()}"


def dechunk(body: bytes) -> bytes:
    content = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        content += rest[:size]
        body = rest[size + 2 :]
    return content


async def open_websocket(url: str) -> ClientConnection:
    return await connect(url, open_timeout=WAIT)


async def start_workers(deployment: Deployment, count: int) -> None:
    for _ in range(count):
        await asyncio.to_thread(deployment.start_worker)


async def test_sockets_stay_open_across_a_redeploy(deployment: Deployment) -> None:
    port = await asyncio.to_thread(deployment.start_interface)
    await start_workers(deployment, 2)
    url = f"ws://127.0.0.1:{port}/chat/"
    try:
        async with websockets(url, 3) as sockets:
            for index, socket in enumerate(sockets):
                await socket.send(f"before-{index}")
                assert await receive_text(socket) == f"v1:before-{index}"
            assert await read_raw_response(*await send_raw_request(port, "/version")) == (
                "HTTP/1.1 200 OK v1"
            )

            await asyncio.to_thread(deployment.stop_workers)
            assert not deployment.workers()
            # The gap: no worker anywhere. Clients keep talking; nothing is lost.
            for index, socket in enumerate(sockets):
                await socket.send(f"gap-{index}")
            pending_request = await send_raw_request(port, "/version")
            opening = asyncio.create_task(open_websocket(url))
            # The interface server has the new handshake (its access log says so) before any
            # new worker exists; it waits for a worker's accept.
            await asyncio.to_thread(deployment.wait_for_log, "interface", "WSCONNECTING", 4)

            deployment.ship("v2")
            await start_workers(deployment, 2)

            for index, socket in enumerate(sockets):
                assert await receive_text(socket) == f"v2:gap-{index}"
            assert await read_raw_response(*pending_request) == "HTTP/1.1 200 OK v2"
            async with await opening as late:
                await late.send("late")
                assert await receive_text(late) == "v2:late"
            for index, socket in enumerate(sockets):
                assert socket.state is State.OPEN
                await socket.send(f"after-{index}")
                assert await receive_text(socket) == f"v2:after-{index}"
            deployment.check_alive()
    except BaseException:
        print(deployment.logs())
        raise


async def test_group_send_reaches_every_interface_server_across_a_redeploy(
    redis_deployment: Deployment,
) -> None:
    deployment = redis_deployment
    ports = [await asyncio.to_thread(deployment.start_interface) for _ in range(2)]
    await start_workers(deployment, 2)
    try:
        async with (
            websockets(f"ws://127.0.0.1:{ports[0]}/room/", 2) as first,
            websockets(f"ws://127.0.0.1:{ports[1]}/room/", 2) as second,
        ):
            everyone = [*first, *second]
            await first[0].send("all:hello")
            for socket in everyone:
                assert await receive_text(socket) == "v1:all:hello"

            await asyncio.to_thread(deployment.stop_workers)
            await second[1].send("all:in the gap")
            deployment.ship("v2")
            await start_workers(deployment, 2)

            # The memberships live in Redis: the new workers' group send reaches sockets on
            # both interface servers, joined while the old code ran.
            for socket in everyone:
                assert await receive_text(socket) == "v2:all:in the gap"
            await second[0].send("just me")
            assert await receive_text(second[0]) == "v2:just me"
            deployment.check_alive()
    except BaseException:
        print(deployment.logs())
        raise
