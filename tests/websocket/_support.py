"""Helpers for the WebSocket tests: a real headrace server in the test's loop, raw frames."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

from headrace._types import ASGIApp
from headrace.server.accesslog import AccessLogger
from headrace.server.config import Config
from headrace.server.server import Server

TIMEOUT = 5.0


@contextlib.asynccontextmanager
async def serve(
    app: ASGIApp, access_log: AccessLogger | None = None, **options: Any
) -> AsyncIterator[tuple[int, Server]]:
    """Run headrace on a free loopback port in this event loop; yield (port, server)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = int(sock.getsockname()[1])
    options.setdefault("lifespan", "off")
    server = Server(Config(**options), app, access_log)
    task = asyncio.create_task(server.serve([sock]))
    ready = asyncio.create_task(server.ready.wait())
    await asyncio.wait({task, ready}, timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    try:
        yield port, server
    finally:
        ready.cancel()
        server.shutdown()
        await asyncio.wait_for(task, TIMEOUT * 2)


def upgrade_request(
    port: int,
    path: str = "/",
    extra: list[tuple[str, str]] | None = None,
    key: str | None = None,
    version: str = "13",
) -> bytes:
    key = key or base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        f"Sec-WebSocket-Version: {version}",
    ]
    lines.extend(f"{name}: {value}" for name, value in extra or [])
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def client_frame(
    opcode: int, payload: bytes, fin: bool = True, rsv: int = 0, mask: bytes = b"\x01\x02\x03\x04"
) -> bytes:
    """A masked client frame."""
    first = (0x80 if fin else 0) | rsv | opcode
    length = len(payload)
    if length < 126:
        head = bytes((first, 0x80 | length))
    elif length < 65536:
        head = struct.pack("!BBH", first, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, length)
    masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
    return head + mask + masked


class RawClient:
    """A raw-socket WebSocket client that reads server frames one by one."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.response_head = b""

    @classmethod
    async def connect(cls, port: int, request: bytes | None = None) -> RawClient:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), TIMEOUT)
        client = cls(reader, writer)
        writer.write(request if request is not None else upgrade_request(port))
        client.response_head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        return client

    @property
    def status(self) -> int:
        return int(self.response_head.split(b" ", 2)[1])

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def read_frame(self) -> tuple[int, bytes]:
        """(first byte, payload) of the next server frame (server frames are unmasked)."""
        head = await asyncio.wait_for(self.reader.readexactly(2), TIMEOUT)
        assert not head[1] & 0x80, "server frames must not be masked"
        length = head[1] & 0x7F
        if length == 126:
            length = struct.unpack("!H", await self.reader.readexactly(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", await self.reader.readexactly(8))[0]
        payload = await asyncio.wait_for(self.reader.readexactly(length), TIMEOUT)
        return head[0], payload

    async def read_close(self) -> tuple[int, str]:
        """Skip data frames until a close frame; return its code and reason."""
        while True:
            first, payload = await self.read_frame()
            if first & 0x0F == 0x8:
                if not payload:
                    return 1005, ""
                return struct.unpack("!H", payload[:2])[0], payload[2:].decode()

    async def read_eof(self) -> bytes:
        """Everything until the server closes the TCP connection."""
        return await asyncio.wait_for(self.reader.read(), TIMEOUT)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await asyncio.wait_for(self.writer.wait_closed(), TIMEOUT)


async def echo_app(scope: Any, receive: Any, send: Any) -> None:
    """Echo every message with its type (and accept with the first offered subprotocol)."""
    assert scope["type"] == "websocket"
    await receive()
    subprotocols = scope.get("subprotocols") or [None]
    await send({"type": "websocket.accept", "subprotocol": subprotocols[0]})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
