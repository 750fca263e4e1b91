"""WebSocket over HTTP/2 (RFC 8441) with an ``h2``-based client, permessage-deflate included."""

from __future__ import annotations

import asyncio
import os
import struct
import zlib
from typing import Any

from headrace._types import Receive, Scope, Send

from .support import ENABLE_CONNECT_PROTOCOL, H2Client, h2_client, serve

SCOPES: list[Scope] = []


async def echo_ws(scope: Scope, receive: Receive, send: Send) -> None:
    assert scope["type"] == "websocket"
    SCOPES.append(scope)
    message = await receive()
    assert message["type"] == "websocket.connect"
    if scope["path"] == "/deny":
        await send({"type": "websocket.close"})
        return
    subprotocol = scope["subprotocols"][0] if scope["subprotocols"] else None
    await send({"type": "websocket.accept", "subprotocol": subprotocol})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


def client_frame(opcode: int, payload: bytes, compress: bool = False) -> bytes:
    first = 0x80 | opcode
    if compress:
        compressor = zlib.compressobj(wbits=-15)
        payload = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
        payload = payload[:-4]
        first |= 0x40
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", first, 0x80 | length)
    elif length < 65536:
        head = struct.pack("!BBH", first, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, length)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def parse_frames(data: bytes) -> list[tuple[int, bool, bytes]]:
    frames = []
    while data:
        first, second = data[0], data[1]
        length = second & 0x7F
        offset = 2
        if length == 126:
            (length,) = struct.unpack("!H", data[2:4])
            offset = 4
        elif length == 127:
            (length,) = struct.unpack("!Q", data[2:10])
            offset = 10
        frames.append((first & 0x0F, bool(first & 0x40), data[offset : offset + length]))
        data = data[offset + length :]
    return frames


def inflate(payload: bytes) -> bytes:
    return zlib.decompressobj(wbits=-15).decompress(payload + b"\x00\x00\xff\xff")


async def wait_for_body(client: H2Client, stream_id: int, size: int) -> bytes:
    response = client.responses[stream_id]
    while len(response.body) < size and not response.done.is_set():
        response.data_arrived.clear()
        await asyncio.wait_for(response.data_arrived.wait(), 10)
    return bytes(response.body)


def connect_pseudo(path: str) -> list[tuple[bytes, bytes]]:
    return [
        (b":method", b"CONNECT"),
        (b":protocol", b"websocket"),
        (b":scheme", b"http"),
        (b":path", path.encode()),
        (b":authority", b"localhost"),
    ]


async def test_websocket_over_http2_echo_with_deflate() -> None:
    headers = [
        (b"sec-websocket-version", b"13"),
        (b"sec-websocket-protocol", b"chat, other"),
        (b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits"),
    ]
    async with serve(echo_ws) as (port, _), h2_client(port) as client:
        assert client.conn.remote_settings[ENABLE_CONNECT_PROTOCOL] == 1
        stream_id = client.start(headers=headers, end_stream=False, pseudo=connect_pseudo("/ws"))
        response = client.responses[stream_id]
        await asyncio.wait_for(response.head_arrived.wait(), 10)
        assert response.status == 200
        assert response.header(b"sec-websocket-protocol") == b"chat"
        assert (response.header(b"sec-websocket-extensions") or b"").startswith(
            b"permessage-deflate"
        )
        text = "héllo over h2 " * 40
        await client.send_body(stream_id, client_frame(0x1, text.encode(), True), False)
        await wait_for_body(client, stream_id, 1)
        binary = os.urandom(70000)
        await client.send_body(stream_id, client_frame(0x2, binary), False)
        await wait_for_body(client, stream_id, 70000)
        await client.send_body(stream_id, client_frame(0x8, struct.pack("!H", 1000)), False)
        await client.response(stream_id)
        received = bytes(response.body)
    frames = parse_frames(received)
    opcodes = [frame[0] for frame in frames]
    assert opcodes == [0x1, 0x2, 0x8]
    first = frames[0]
    assert (inflate(first[2]) if first[1] else first[2]).decode() == text
    second = frames[1]
    assert (inflate(second[2]) if second[1] else second[2]) == binary
    scope = SCOPES[-1]
    assert scope["http_version"] == "2"
    assert scope["scheme"] == "ws"
    assert scope["subprotocols"] == ["chat", "other"]


async def test_websocket_over_http2_denial_and_bad_handshake() -> None:
    async with serve(echo_ws) as (port, server), h2_client(port) as client:
        version = [(b"sec-websocket-version", b"13")]
        denied = client.start(headers=version, end_stream=False, pseudo=connect_pseudo("/deny"))
        bad = client.start(headers=[], end_stream=False, pseudo=connect_pseudo("/ws"))
        denied_response = await client.response(denied)
        bad_response = await client.response(bad)
        [connection] = server.state.connections
        handler: Any = connection.handler
        # A refused handshake leaves nothing behind on the connection (no per-stream leak).
        assert bad not in handler.streams
    assert denied_response.status == 403
    assert bad_response.status == 426


async def test_websocket_over_http2_bad_accept_header_is_500_and_never_sent() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept", "headers": [(b"x-evil", b"a\x01b")]})

    async with serve(app) as (port, _), h2_client(port) as client:
        version = [(b"sec-websocket-version", b"13")]
        stream_id = client.start(headers=version, end_stream=False, pseudo=connect_pseudo("/ws"))
        response = await client.response(stream_id)
    assert response.status == 500
    assert response.header(b"x-evil") is None


async def test_plain_connect_is_refused() -> None:
    async with serve(echo_ws) as (port, _), h2_client(port) as client:
        pseudo = [(b":method", b"CONNECT"), (b":authority", b"example.com:443")]
        stream_id = client.start(end_stream=False, pseudo=pseudo)
        response = await client.response(stream_id)
        version = [(b"sec-websocket-version", b"13")]
        other = [
            *connect_pseudo("/ws")[:1],
            (b":protocol", b"webtransport"),
            *connect_pseudo("/ws")[2:],
        ]
        unknown = client.start(headers=version, end_stream=False, pseudo=other)
        no_stream = client.start(headers=version, end_stream=True, pseudo=connect_pseudo("/ws"))
        unknown_response = await client.response(unknown)
        no_stream_response = await client.response(no_stream)
    assert response.status == 405
    assert unknown_response.status == 501
    assert no_stream_response.status == 400


async def test_websocket_over_http2_backpressure_closes_the_window() -> None:
    accepted = asyncio.Event()
    release = asyncio.Event()

    async def lazy(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        accepted.set()
        await release.wait()  # reads nothing meanwhile: messages pile up, reading pauses

    async with (
        serve(lazy, http2_initial_window_size=65536) as (port, _),
        h2_client(port) as client,
    ):
        headers = [(b"sec-websocket-version", b"13")]
        stream_id = client.start(headers=headers, end_stream=False, pseudo=connect_pseudo("/"))
        await asyncio.wait_for(accepted.wait(), 10)
        message = client_frame(0x2, b"m" * 4000)
        for _ in range(200):
            if client.conn.local_flow_control_window(stream_id) < len(message):
                break
            await client.send_body(stream_id, message, end_stream=False)
            await asyncio.sleep(0.005)
        # The app read nothing: after the stream's queue limit the window is not reopened.
        assert client.conn.local_flow_control_window(stream_id) < len(message)
        release.set()
