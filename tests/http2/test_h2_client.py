"""The ``h2`` library as the client over a real socket: frame features a browser rarely uses.

One connection carries client SETTINGS changes (larger frames, a bigger window, no HPACK
table), PRIORITY frames, a header block split into CONTINUATION frames, padded DATA, request
trailers and PINGs; the responses must honour the new settings. A client RST_STREAM mid-response
reaches the app as ``http.disconnect`` and the connection serves on.
"""

from __future__ import annotations

import asyncio
import hashlib

import h2.errors
import h2.events
import h2.settings
from hyperframe.frame import GoAwayFrame, PingFrame

from headrace._types import Receive, Scope, Send

from .support import TIMEOUT, Response, h2_client, serve
from .test_server import echo_app

SETTINGS = h2.settings.SettingCodes


async def test_client_frame_features_on_one_connection() -> None:
    settings = {
        SETTINGS.MAX_FRAME_SIZE: 65_536,
        SETTINGS.INITIAL_WINDOW_SIZE: 1 << 20,
        SETTINGS.HEADER_TABLE_SIZE: 0,
    }
    body = bytes(range(256)) * 300
    async with (
        serve(echo_app, max_request_header_size=64 * 1024) as (port, _),
        h2_client(port, settings=settings) as client,
    ):
        conn = client.conn
        conn.increment_flow_control_window(1 << 20)
        conn.prioritize(101, weight=32)  # PRIORITY on an idle stream
        stream_id = conn.get_next_available_stream_id()
        client.responses[stream_id] = Response()
        big = [(b"x-filler-%d" % index, b"f" * 400) for index in range(60)]  # > 16 KiB
        pseudo = [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":authority", b"localhost"),
            (b":path", b"/upload"),
        ]
        conn.prioritize(stream_id, weight=200)  # (h2 cannot combine priority and CONTINUATION)
        conn.send_headers(stream_id, [*pseudo, *big])
        for offset in range(0, len(body), 10_000):
            conn.send_data(stream_id, body[offset : offset + 10_000], pad_length=17)
        conn.send_headers(stream_id, [(b"x-checksum", b"ignored")], end_stream=True)
        conn.ping(b"featured")
        client.flush()
        upload = await client.response(stream_id)
        download = await client.request("/big/200000")
        assert client.ping_acks == 1
    fields = upload.body.decode().split("|")
    assert fields[0] == "POST"
    assert (fields[5], fields[6]) == (str(len(body)), hashlib.sha256(body).hexdigest())
    assert len(download.body) == 200_000


async def test_response_frames_grow_with_the_client_max_frame_size() -> None:
    sizes: list[int] = []
    settings = {SETTINGS.MAX_FRAME_SIZE: 65_536, SETTINGS.INITIAL_WINDOW_SIZE: 1 << 20}
    async with serve(echo_app) as (port, _), h2_client(port, settings=settings) as client:
        client.conn.increment_flow_control_window(1 << 20)
        original = client._handle

        def record(event: h2.events.Event) -> None:
            if isinstance(event, h2.events.DataReceived):
                sizes.append(len(event.data))
            original(event)

        client._handle = record  # type: ignore[method-assign]
        response = await client.request("/big/300000")
    assert len(response.body) == 300_000
    assert max(sizes) > 16_384  # frames beyond the default size: the SETTINGS was honoured
    assert max(sizes) <= 65_536


async def test_client_reset_mid_response_is_http_disconnect() -> None:
    seen: asyncio.Queue[str] = asyncio.Queue()

    async def streaming(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        message = await receive()
        await seen.put(message["type"])

    async with serve(streaming) as (port, _), h2_client(port) as client:
        stream_id = client.start("/stream")
        response = client.responses[stream_id]
        await asyncio.wait_for(response.data_arrived.wait(), TIMEOUT)
        client.conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
        client.flush()
        assert await asyncio.wait_for(seen.get(), TIMEOUT) == "http.disconnect"
        # The connection lives on.
        again = client.start("/again")
        await asyncio.wait_for(client.responses[again].data_arrived.wait(), TIMEOUT)
        assert client.responses[again].status == 200


async def test_client_goaway_drains_its_requests_then_the_connection_closes() -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        started.set()
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"still answered"})

    async with serve(slow) as (port, _), h2_client(port) as client:
        stream_id = client.start("/")
        await asyncio.wait_for(started.wait(), TIMEOUT)
        goaway = GoAwayFrame(0, last_stream_id=0, error_code=0).serialize()
        client.send_raw(goaway + PingFrame(0, opaque_data=b"in order").serialize())
        await asyncio.wait_for(client.ping_acked.wait(), TIMEOUT)  # so the GOAWAY was read
        release.set()
        response = await client.response(stream_id)
        await asyncio.wait_for(client.closed.wait(), TIMEOUT)
    assert bytes(response.body) == b"still answered"
    assert client.goaway is not None
    assert client.goaway.error_code == h2.errors.ErrorCodes.NO_ERROR
