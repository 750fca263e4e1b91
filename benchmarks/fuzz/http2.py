"""Fuzz the HTTP/2 server path with atheris (libFuzzer): arbitrary frames in, only answers out.

Not a test: a long-running harness. Run it bounded, e.g.::

    pip install atheris
    python3 benchmarks/fuzz/http2.py --make-seeds /tmp/h2-corpus   # valid h2 client traffic
    python3 benchmarks/fuzz/http2.py -max_total_time=300 -rss_limit_mb=4096 /tmp/h2-corpus
    python3 benchmarks/fuzz/http2.py -runs=1 CRASH_FILE              # replay one finding

Every input follows the client preface and a client SETTINGS frame. Its first byte picks how
the rest is read: even, as raw bytes (the fuzzer mutates real traffic from the seeds); odd, as
a list of frames whose lengths are made consistent (type, flags, a small stream id, 0-255
payload bytes each), so mutations reach stream states, flow control and HPACK rather than the
frame-length check. The bytes go through a real :class:`~headrace.server.connection.Connection`
(prior-knowledge detection, ``HTTP2Handler``, the shared HTTP and WebSocket stream layers) over
an in-memory transport, with an app that reads bodies, sends an early hint, a body and
trailers, and accepts WebSockets. Then the client goes away. Checked after every input:

- nothing escapes ``data_received`` / ``connection_lost`` and nothing is logged at ERROR;
- every byte written parses as HTTP/2 frames (``hyperframe``), no frame is larger than the
  16 KiB default, header blocks decode (``hpack``) and carry a documented ``:status``;
- GOAWAY and RST_STREAM carry only documented error codes (never ``INTERNAL_ERROR``: the app
  here never fails), and nothing follows a GOAWAY that reports an error;
- no app task survives the disconnect (no hang).
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import sys
from pathlib import Path

import atheris  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ErrorRecorder, FindingError, MemoryTransport

with atheris.instrument_imports():
    import hpack
    from hyperframe.exceptions import HyperframeError
    from hyperframe.frame import (
        ContinuationFrame,
        DataFrame,
        Frame,
        GoAwayFrame,
        HeadersFrame,
        RstStreamFrame,
    )

    from headrace._types import Receive, Scope, Send
    from headrace.server.config import Config
    from headrace.server.connection import Connection
    from headrace.server.protocols.http2 import PREFACE, ErrorCode
    from headrace.server.server import WIRES
    from headrace.server.state import ServerState
    from headrace.server.wires import http2, http11, websocket_h2  # noqa: F401

CLIENT_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
ALLOWED_STATUSES = frozenset({100, 103, 200, 400, 405, 413, 426, 431, 501})
GOAWAY_CODES = frozenset(
    {
        ErrorCode.NO_ERROR,
        ErrorCode.PROTOCOL_ERROR,
        ErrorCode.FLOW_CONTROL_ERROR,
        ErrorCode.STREAM_CLOSED,
        ErrorCode.FRAME_SIZE_ERROR,
        ErrorCode.COMPRESSION_ERROR,
        ErrorCode.ENHANCE_YOUR_CALM,
    }
)
RESET_CODES = frozenset(
    {
        ErrorCode.NO_ERROR,
        ErrorCode.PROTOCOL_ERROR,
        ErrorCode.FLOW_CONTROL_ERROR,
        ErrorCode.STREAM_CLOSED,
        ErrorCode.FRAME_SIZE_ERROR,
        ErrorCode.REFUSED_STREAM,
    }
)
MAX_LOOP_TURNS = 200


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        if (await receive())["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
            event = await receive()
            if event["type"] == "websocket.receive":
                await send({"type": "websocket.send", "bytes": event.get("bytes") or b"x"})
                await send({"type": "websocket.close", "code": 1000})
        return
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.early_hint", "links": [b"</s.css>; rel=preload"]})
    await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
    await send({"type": "http.response.body", "body": body[:100], "more_body": True})
    await send({"type": "http.response.body", "body": body[100:]})
    await send({"type": "http.response.trailers", "headers": [(b"x-size", b"%d" % len(body))]})


LOOP = asyncio.new_event_loop()
asyncio.set_event_loop(LOOP)
RECORDER = ErrorRecorder()
logging.getLogger("headrace").addHandler(RECORDER)
logging.getLogger("headrace").propagate = False
CONFIG = Config(max_request_header_size=16384, max_request_body_size=8192, timeout_keep_alive=30)


def structured_frames(data: bytes) -> bytes:
    """Read ``data`` as (type, flags, stream, length, payload) records with consistent lengths."""
    out = bytearray()
    offset = 0
    while offset + 4 <= len(data):
        kind, flags, stream, length = data[offset : offset + 4]
        offset += 4
        payload = data[offset : offset + length]
        offset += length
        head = struct.pack(">BHBBL", 0, len(payload), kind % 11, flags, stream % 12)
        out += head + payload
    return bytes(out)


def client_bytes(data: bytes) -> bytes:
    if not data:
        return PREFACE + CLIENT_SETTINGS
    body = structured_frames(data[1:]) if data[0] & 1 else data[1:]
    return PREFACE + CLIENT_SETTINGS + body


async def settle(state: ServerState) -> None:
    """Let the loop run until no app task is left (bounded)."""
    for _ in range(MAX_LOOP_TURNS):
        await asyncio.sleep(0)
        if not state.tasks:
            return


async def drive(data: bytes) -> None:
    """Feed the bytes in two reads inside the running loop, then hang up."""
    RECORDER.records.clear()
    state = ServerState(CONFIG, app)
    transport = MemoryTransport(half_close=False)
    conn = Connection(state, LOOP, WIRES)
    conn.connection_made(transport)
    payload = client_bytes(data)
    middle = len(PREFACE) + len(CLIENT_SETTINGS) + (len(payload) - len(PREFACE)) // 2
    for chunk in (payload[:middle], payload[middle:]):
        if transport.closed or not chunk:
            break
        conn.data_received(chunk)
        await settle(state)
    await settle(state)
    conn.connection_lost(None)
    await settle(state)
    if state.tasks:
        raise FindingError(f"{len(state.tasks)} app task(s) still running after disconnect")
    if RECORDER.records:
        raise FindingError(f"server logged an error: {RECORDER.records[0].getMessage()}")
    check_output(bytes(transport.output))


def parse_frames(output: bytes) -> list[Frame]:
    frames: list[Frame] = []
    view = memoryview(output)
    while view:
        if len(view) < 9:
            raise FindingError(f"truncated frame head: {bytes(view)!r}")
        frame, length = Frame.parse_frame_header(view[:9])
        if length > 16_384:
            raise FindingError(f"frame of {length} bytes exceeds the default maximum")
        if len(view) < 9 + length:
            raise FindingError("truncated frame payload")
        frame.parse_body(view[9 : 9 + length])
        frames.append(frame)
        view = view[9 + length :]
    return frames


def check_output(output: bytes) -> None:
    try:
        frames = parse_frames(output)
    except HyperframeError as exc:
        raise FindingError(f"unparseable frame: {exc}") from exc
    decoder = hpack.Decoder()
    block = bytearray()
    for index, frame in enumerate(frames):
        if isinstance(frame, GoAwayFrame):
            check_goaway(frame, frames[index + 1 :])
        elif isinstance(frame, RstStreamFrame) and frame.error_code not in RESET_CODES:
            raise FindingError(f"RST_STREAM with error code {frame.error_code}")
        elif isinstance(frame, HeadersFrame | ContinuationFrame):
            block += frame.data
            if "END_HEADERS" in frame.flags:
                check_header_block(decoder, bytes(block))
                block.clear()
        elif isinstance(frame, DataFrame) and block:
            raise FindingError("DATA inside a header block")


def check_goaway(frame: GoAwayFrame, after: list[Frame]) -> None:
    if frame.error_code not in GOAWAY_CODES:
        raise FindingError(f"GOAWAY with error code {frame.error_code}")
    if frame.error_code != ErrorCode.NO_ERROR and after:
        raise FindingError(f"{type(after[0]).__name__} sent after GOAWAY({frame.error_code})")


def check_header_block(decoder: hpack.Decoder, block: bytes) -> None:
    try:
        headers = dict(decoder.decode(block, raw=True))
    except hpack.HPACKError as exc:
        raise FindingError(f"undecodable response header block: {exc}") from exc
    status = headers.get(b":status")
    if status is None:
        return  # trailers
    if int(status) not in ALLOWED_STATUSES:
        raise FindingError(f"unexpected :status {status!r}")


def test_one_input(data: bytes) -> None:
    LOOP.run_until_complete(drive(data))
    for handle in list(getattr(LOOP, "_scheduled", ())):
        handle.cancel()  # timers (keep-alive) belong to dead connections


def make_seeds(folder: str) -> None:
    """Write valid client traffic produced by the ``h2`` library as a starting corpus."""
    import h2.config
    import h2.connection

    def connection() -> h2.connection.H2Connection:
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        conn = h2.connection.H2Connection(config)
        conn.initiate_connection()
        conn.data_to_send()  # preface and SETTINGS are prepended by the harness
        return conn

    request = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"h")]
    seeds: dict[str, bytes] = {}
    conn = connection()
    conn.send_headers(1, [*request, (b":path", b"/")], end_stream=True)
    conn.send_headers(3, [*request, (b":path", b"/"), (b"cookie", b"a=b")], end_stream=True)
    seeds["get"] = conn.data_to_send()
    conn = connection()
    post = [(b":method", b"POST"), *request[1:], (b":path", b"/p"), (b"content-length", b"5")]
    conn.send_headers(1, post)
    conn.send_data(1, b"he", pad_length=3)
    conn.send_data(1, b"llo")
    conn.send_headers(1, [(b"x-trailer", b"1")], end_stream=True)
    conn.increment_flow_control_window(1000)
    conn.ping(b"12345678")
    conn.prioritize(3, weight=10, depends_on=1)
    conn.send_headers(5, [*request, (b":path", b"/r")])
    conn.reset_stream(5)
    seeds["post"] = conn.data_to_send()
    conn = connection()
    connect = [(b":method", b"CONNECT"), (b":protocol", b"websocket"), *request[1:]]
    conn.send_headers(1, [*connect, (b":path", b"/ws"), (b"sec-websocket-version", b"13")])
    conn.send_data(1, b"\x82\x83abcd" + bytes(x ^ y for x, y in zip(b"hey", b"abc", strict=True)))
    seeds["websocket"] = conn.data_to_send()
    conn = connection()
    big = [*request, (b":path", b"/big"), *((b"x-h%d" % i, b"v" * 200) for i in range(120))]
    conn.send_headers(1, big, end_stream=True)
    seeds["continuation"] = conn.data_to_send()
    os.makedirs(folder, exist_ok=True)
    for name, traffic in seeds.items():
        with open(os.path.join(folder, name), "wb") as handle:
            handle.write(b"\x00" + traffic)  # even first byte: raw mode


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--make-seeds":
        make_seeds(sys.argv[2])
        return
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
