"""RFC 9113 rules, one case each: the frame layer against ``h2``'s encoder and raw frames.

Every case names the section it checks and the error the RFC asks for: a connection error
(``GOAWAY`` with the code, the connection ends) or a stream error (``RST_STREAM`` with the code,
the connection lives on and serves the next stream).
"""

from __future__ import annotations

import struct

import h2.events
import h2.settings
import pytest
from h2.errors import ErrorCodes

from headrace.server.protocols.http2 import H2Settings

from .test_protocol import (
    POST,
    REQUEST,
    Pair,
    goaway_code,
    headers_frame,
    of_type,
    parse_frames,
    raw_frame,
    reset_codes,
)

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS = 0x0, 0x1, 0x2, 0x3, 0x4
PING, WINDOW_UPDATE, CONTINUATION = 0x6, 0x8, 0x9
END_STREAM, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x4, 0x8, 0x20


def setting(key: int, value: int) -> bytes:
    return raw_frame(SETTINGS, 0, 0, struct.pack(">HL", key, value))


def window_update(stream_id: int, increment: int) -> bytes:
    return raw_frame(WINDOW_UPDATE, 0, stream_id, struct.pack(">L", increment))


def open_post(pair: Pair, stream_id: int = 1) -> None:
    pair.client.send_headers(stream_id, POST)
    pair.pump()


def still_serves(pair: Pair, stream_id: int) -> bool:
    """The connection lives on: a new stream reaches the application."""
    pair.server.receive_data(headers_frame(pair, stream_id, REQUEST, END_STREAM))
    return any(request[0] == stream_id for request in pair.recorder.requests)


# -- connection errors -------------------------------------------------------------------------

CONNECTION_ERRORS = [
    # §6.5 SETTINGS: a length not a multiple of 6, an ACK with a payload, on a stream.
    ("settings length", raw_frame(SETTINGS, 0, 0, b"\0" * 5), ErrorCodes.FRAME_SIZE_ERROR),
    ("settings ack payload", raw_frame(SETTINGS, 1, 0, b"\0" * 6), ErrorCodes.FRAME_SIZE_ERROR),
    ("settings on stream", raw_frame(SETTINGS, 0, 1, b""), ErrorCodes.PROTOCOL_ERROR),
    # §6.5.2 setting values.
    ("enable_push 2", setting(0x2, 2), ErrorCodes.PROTOCOL_ERROR),
    ("connect_protocol 2", setting(0x8, 2), ErrorCodes.PROTOCOL_ERROR),
    ("initial window 2**31", setting(0x4, 2**31), ErrorCodes.FLOW_CONTROL_ERROR),
    ("max frame size small", setting(0x5, 16_383), ErrorCodes.PROTOCOL_ERROR),
    ("max frame size big", setting(0x5, 2**24), ErrorCodes.PROTOCOL_ERROR),
    # §4.2 / §6.x frame sizes of fixed-length frames.
    ("ping length", raw_frame(PING, 0, 0, b"1234567"), ErrorCodes.FRAME_SIZE_ERROR),
    ("rst length", raw_frame(RST_STREAM, 0, 1, b"\0\0\0"), ErrorCodes.FRAME_SIZE_ERROR),
    ("window length", raw_frame(WINDOW_UPDATE, 0, 0, b"\0\0\1"), ErrorCodes.FRAME_SIZE_ERROR),
    ("goaway length", raw_frame(0x7, 0, 0, b"\0" * 7), ErrorCodes.FRAME_SIZE_ERROR),
    ("oversized frame", raw_frame(PING, 0, 0, b"\0" * 16_385), ErrorCodes.FRAME_SIZE_ERROR),
    # §5.1 stream states: frames on idle streams, stream 0 where a stream is needed.
    ("rst on idle", raw_frame(RST_STREAM, 0, 5, b"\0\0\0\x08"), ErrorCodes.PROTOCOL_ERROR),
    ("window on idle", window_update(5, 1), ErrorCodes.PROTOCOL_ERROR),
    ("data on stream 0", raw_frame(DATA, 0, 0, b"x"), ErrorCodes.PROTOCOL_ERROR),
    ("headers on stream 0", raw_frame(HEADERS, END_HEADERS, 0, b"\x82"), ErrorCodes.PROTOCOL_ERROR),
    ("priority on 0", raw_frame(PRIORITY, 0, 0, b"\0\0\0\1\x10"), ErrorCodes.PROTOCOL_ERROR),
    ("ping on stream", raw_frame(PING, 0, 1, b"\0" * 8), ErrorCodes.PROTOCOL_ERROR),
    ("goaway on stream", raw_frame(0x7, 0, 1, b"\0" * 8), ErrorCodes.PROTOCOL_ERROR),
    ("push_promise", raw_frame(0x5, END_HEADERS, 1, b"\0\0\0\2"), ErrorCodes.PROTOCOL_ERROR),
    ("lone continuation", raw_frame(CONTINUATION, END_HEADERS, 1, b""), ErrorCodes.PROTOCOL_ERROR),
    # §6.9.1 flow control on the connection.
    ("zero increment", window_update(0, 0), ErrorCodes.PROTOCOL_ERROR),
    ("window overflow", window_update(0, 2**31 - 1), ErrorCodes.FLOW_CONTROL_ERROR),
    # §4.3 HPACK: an index past both tables is a compression error.
    ("bad index", raw_frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\xff\x7f"), 0x9),
    # §6.1 / §6.2 padding longer than the payload.
    ("data padding", raw_frame(DATA, PADDED, 1, b"\x05abc"), ErrorCodes.PROTOCOL_ERROR),
    ("headers padding", raw_frame(HEADERS, PADDED | END_HEADERS, 1, b"\x09\x82"), 0x1),
]


@pytest.mark.parametrize(
    ("name", "frame", "code"), CONNECTION_ERRORS, ids=[case[0] for case in CONNECTION_ERRORS]
)
def test_connection_errors(name: str, frame: bytes, code: int) -> None:
    pair = Pair()
    if frame[3] == DATA and frame[5:9] != b"\0\0\0\0":
        open_post(pair)
    assert goaway_code(pair, frame) == code
    assert pair.server.terminated


def test_header_block_interrupted_by_another_frame() -> None:
    pair = Pair()
    block = pair.client.encoder.encode(REQUEST)
    data = raw_frame(HEADERS, END_STREAM, 1, block[:3]) + raw_frame(PING, 0, 0, b"\0" * 8)
    assert goaway_code(pair, data) == ErrorCodes.PROTOCOL_ERROR
    pair = Pair()
    block = pair.client.encoder.encode(REQUEST)
    data = raw_frame(HEADERS, END_STREAM, 1, block[:3])
    data += raw_frame(CONTINUATION, END_HEADERS, 3, block[3:])
    assert goaway_code(pair, data) == ErrorCodes.PROTOCOL_ERROR


def test_settings_window_change_overflowing_a_stream_is_flow_control_error() -> None:
    pair = Pair()
    pair.client.send_headers(1, REQUEST, end_stream=True)
    pair.pump()
    data = window_update(1, 2**31 - 1 - 65_535) + setting(0x4, 65_536)
    assert goaway_code(pair, data) == ErrorCodes.FLOW_CONTROL_ERROR


def test_data_beyond_the_connection_window_is_flow_control_error() -> None:
    settings = H2Settings(
        initial_window_size=100_000, max_concurrent_streams=1, max_connection_window=65_535
    )
    pair = Pair(settings)
    open_post(pair)
    chunk = raw_frame(DATA, 0, 1, b"x" * 16_384)
    data = chunk * 4  # 65,536 bytes: within the stream's window, past the connection's
    assert goaway_code(pair, data) == ErrorCodes.FLOW_CONTROL_ERROR


# -- stream errors -----------------------------------------------------------------------------

MALFORMED = [
    ("connection", [*REQUEST, (b"connection", b"keep-alive")]),
    ("keep-alive", [*REQUEST, (b"keep-alive", b"5")]),
    ("proxy-connection", [*REQUEST, (b"proxy-connection", b"x")]),
    ("transfer-encoding", [*REQUEST, (b"transfer-encoding", b"chunked")]),
    ("upgrade", [*REQUEST, (b"upgrade", b"websocket")]),
    ("te gzip", [*REQUEST, (b"te", b"gzip")]),
    ("upper-case name", [*REQUEST, (b"X-Upper", b"1")]),
    ("space in name", [*REQUEST, (b"x y", b"1")]),
    ("newline in value", [*REQUEST, (b"x", b"a\nb")]),
    ("nul in value", [*REQUEST, (b"x", b"a\0b")]),
    ("leading space", [*REQUEST, (b"x", b" a")]),
    ("missing :method", REQUEST[1:]),
    ("missing :scheme", [REQUEST[0], *REQUEST[2:]]),
    ("missing :path", REQUEST[:3]),
    ("empty :path", [*REQUEST[:3], (b":path", b"")]),
    ("relative :path", [*REQUEST[:3], (b":path", b"x")]),
    ("space in :path", [*REQUEST[:3], (b":path", b"/a b")]),
    ("newline in :path", [*REQUEST[:3], (b":path", b"/a\r\nx: y")]),
    ("bad :method", [(b":method", b"GE T"), *REQUEST[1:]]),
    ("duplicate :path", [*REQUEST, (b":path", b"/y")]),
    ("pseudo after field", [*REQUEST[:3], (b"x", b"1"), REQUEST[3]]),
    ("response pseudo", [*REQUEST, (b":status", b"200")]),
    ("unknown pseudo", [*REQUEST, (b":foo", b"1")]),
    ("host differs", [*REQUEST, (b"host", b"evil.example")]),
    ("userinfo", [*REQUEST[:2], (b":authority", b"user@localhost"), REQUEST[3]]),
    ("two content-lengths", [*POST, (b"content-length", b"1"), (b"content-length", b"2")]),
    ("signed content-length", [*POST, (b"content-length", b"+1")]),
    ("asterisk for GET", [*REQUEST[:3], (b":path", b"*")]),
    ("connect with path", [(b":method", b"CONNECT"), *REQUEST[1:]]),
    (":protocol without CONNECT", [*REQUEST, (b":protocol", b"websocket")]),
]


@pytest.mark.parametrize(("name", "headers"), MALFORMED, ids=[case[0] for case in MALFORMED])
def test_malformed_requests_are_stream_errors(
    name: str, headers: list[tuple[bytes, bytes]]
) -> None:
    pair = Pair()
    codes = reset_codes(pair, headers_frame(pair, 1, headers, END_STREAM))
    assert codes == [(1, ErrorCodes.PROTOCOL_ERROR)]
    assert pair.recorder.requests == []
    assert still_serves(pair, 3)


def test_host_and_authority_agreeing_is_accepted() -> None:
    pair = Pair()
    options = [(b":method", b"OPTIONS"), *REQUEST[1:3], (b":path", b"*")]
    data = headers_frame(pair, 1, [*REQUEST, (b"host", b"LocalHost")], END_STREAM)
    data += headers_frame(pair, 3, options, END_STREAM)
    data += headers_frame(pair, 5, [*REQUEST, (b"te", b"trailers")], END_STREAM)
    assert reset_codes(pair, data) == []
    assert [request[0] for request in pair.recorder.requests] == [1, 3, 5]
    assert (b"host", b"LocalHost") in pair.recorder.requests[0][1]


STREAM_ERRORS = [
    # §8.1.1 content-length against the DATA received.
    ("body shorter", [*POST, (b"content-length", b"5")], raw_frame(DATA, END_STREAM, 1, b"abc")),
    ("body longer", [*POST, (b"content-length", b"2")], raw_frame(DATA, END_STREAM, 1, b"abc")),
    ("trailers early", [*POST, (b"content-length", b"3")], b""),
    # §5.1 half-closed (remote): DATA after END_STREAM.
    ("data after end", REQUEST, raw_frame(DATA, 0, 1, b"late")),
    # §6.9 a zero increment and an overflow on a stream.
    ("zero stream increment", POST, window_update(1, 0)),
    ("stream window overflow", POST, window_update(1, 2**31 - 1)),
    # §5.3.1 a stream depending on itself.
    ("self dependency", POST, raw_frame(PRIORITY, 0, 1, b"\0\0\0\1\x10")),
    ("priority length", POST, raw_frame(PRIORITY, 0, 1, b"\0\0\0\3")),
]
STREAM_ERROR_CODES = {
    "data after end": ErrorCodes.STREAM_CLOSED,
    "stream window overflow": ErrorCodes.FLOW_CONTROL_ERROR,
    "priority length": ErrorCodes.FRAME_SIZE_ERROR,
}


@pytest.mark.parametrize(
    ("name", "headers", "then"), STREAM_ERRORS, ids=[case[0] for case in STREAM_ERRORS]
)
def test_stream_errors(name: str, headers: list[tuple[bytes, bytes]], then: bytes) -> None:
    pair = Pair()
    end = END_STREAM if headers is REQUEST else 0
    data = headers_frame(pair, 1, headers, end) + then
    if name == "trailers early":  # trailers end the stream before the announced body
        data += headers_frame(pair, 1, [(b"x-t", b"1")], END_STREAM)
    codes = reset_codes(pair, data)
    assert codes == [(1, STREAM_ERROR_CODES.get(name, ErrorCodes.PROTOCOL_ERROR))]
    assert not pair.server.terminated
    assert still_serves(pair, 3)


def test_trailers_with_pseudo_header_or_without_end_stream_are_stream_errors() -> None:
    pair = Pair()
    data = headers_frame(pair, 1, POST, 0)
    data += headers_frame(pair, 1, [(b":path", b"/t")], END_STREAM)
    data += headers_frame(pair, 3, POST, 0) + headers_frame(pair, 3, [(b"x-t", b"1")], 0)
    assert reset_codes(pair, data) == [
        (1, ErrorCodes.PROTOCOL_ERROR),
        (3, ErrorCodes.PROTOCOL_ERROR),
    ]


def test_padding_is_stripped_and_its_window_returned_at_once() -> None:
    pair = Pair(H2Settings(initial_window_size=400))
    pair.client.send_headers(1, POST)
    pair.client.send_data(1, b"abc", pad_length=255)
    pair.pump()
    assert pair.recorder.data == [(1, b"abc", False)]
    # 259 flow-controlled bytes arrived; all but the 3 the app has not read yet came back.
    assert pair.client.local_flow_control_window(1) == 400 - 3


def test_headers_with_priority_padding_and_continuation_from_h2() -> None:
    pair = Pair()
    pair.client.prioritize(1, weight=200)  # a PRIORITY frame on an idle stream is fine
    big = [*REQUEST, *((b"x-h%d" % index, b"v" * 300) for index in range(60))]
    pair.client.send_headers(3, big, end_stream=True, priority_weight=10, priority_depends_on=1)
    pair.pump()
    block = pair.client.encoder.encode(REQUEST)
    padded = bytes([20]) + block + b"\0" * 20
    pair.server.receive_data(raw_frame(HEADERS, PADDED | END_HEADERS | END_STREAM, 5, padded))
    [(first, headers, _), (second, _, _)] = pair.recorder.requests
    assert (first, second) == (3, 5)
    assert (b"x-h59", b"v" * 300) in headers
    assert pair.server.terminated is False


def test_unknown_frame_types_and_settings_are_ignored() -> None:
    pair = Pair()
    data = raw_frame(0xFA, 0xFF, 0, b"whatever") + setting(0x99, 12345)
    pair.server.receive_data(data)
    assert not pair.server.terminated
    assert still_serves(pair, 1)


def test_client_settings_are_honoured_for_frames_and_windows() -> None:
    pair = Pair()
    pair.client.update_settings(
        {
            h2.settings.SettingCodes.MAX_FRAME_SIZE: 65_536,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 200_000,
        }
    )
    pair.client.increment_flow_control_window(200_000)
    pair.pump()
    pair.client.send_headers(1, REQUEST, end_stream=True)
    pair.pump()
    pair.server.send_headers(1, 200, [], end_stream=False)
    assert pair.server.send_data(1, b"x" * 150_000, end_stream=True)
    sizes = [len(event.data) for event in of_type(pair.pump(), h2.events.DataReceived)]
    assert sum(sizes) == 150_000
    assert max(sizes) == 65_536


def test_431_to_a_finished_request_is_not_followed_by_a_reset() -> None:
    pair = Pair(H2Settings(max_header_list_size=1000))
    pair.client.send_headers(1, [*REQUEST, (b"x-big", b"b" * 2000)], end_stream=True)
    events = pair.pump()
    [response] = of_type(events, h2.events.ResponseReceived)
    assert dict(response.headers)[b":status"] == b"431"
    assert of_type(events, h2.events.StreamEnded)
    assert not of_type(events, h2.events.StreamReset)


def test_clients_ignoring_refused_stream_are_enhance_your_calm() -> None:
    pair = Pair(H2Settings(max_concurrent_streams=1, reset_burst=5, resets_per_second=0.1))
    pair.client.send_headers(1, POST)  # stays open: every later stream is refused
    pair.pump()
    data = b"".join(headers_frame(pair, sid, REQUEST, END_STREAM) for sid in range(3, 23, 2))
    assert goaway_code(pair, data) == ErrorCodes.ENHANCE_YOUR_CALM


def test_floods_of_malformed_requests_are_enhance_your_calm() -> None:
    pair = Pair(H2Settings(reset_burst=5, resets_per_second=0.1))
    bad = [*REQUEST, (b"connection", b"close")]
    data = b"".join(headers_frame(pair, sid, bad, END_STREAM) for sid in range(1, 21, 2))
    assert goaway_code(pair, data) == ErrorCodes.ENHANCE_YOUR_CALM


def test_client_goaway_no_error_lets_its_requests_finish() -> None:
    pair = Pair()
    pair.client.send_headers(1, REQUEST, end_stream=True)
    pair.pump()
    goaway = raw_frame(0x7, 0, 0, struct.pack(">LL", 0, ErrorCodes.NO_ERROR))
    late = headers_frame(pair, 3, REQUEST, END_STREAM)
    assert reset_codes(pair, goaway + late) == [(3, ErrorCodes.REFUSED_STREAM)]
    assert not pair.server.terminated
    pair.server.send_headers(1, 200, [], end_stream=False)
    pair.server.send_data(1, b"answer", end_stream=True)
    frames = parse_frames(pair.server.data_to_send())
    assert [type(frame).__name__ for frame in frames] == ["HeadersFrame", "DataFrame"]
    pair.server.stream_finished(1)
    assert pair.server.is_idle()  # the handler now closes: draining_after is set
    assert pair.server.draining_after == 1


def test_client_goaway_with_an_error_ends_everything_at_once() -> None:
    pair = Pair()
    pair.client.send_headers(1, REQUEST, end_stream=True)
    pair.pump()
    goaway = raw_frame(0x7, 0, 0, struct.pack(">LL", 0, ErrorCodes.PROTOCOL_ERROR))
    pair.server.receive_data(goaway)
    assert pair.server.terminated
    assert pair.recorder.resets == [(1, ErrorCodes.PROTOCOL_ERROR)]


def test_client_goaway_on_an_idle_connection_is_answered_and_ends_it() -> None:
    pair = Pair()
    goaway = raw_frame(0x7, 0, 0, struct.pack(">LL", 0, ErrorCodes.NO_ERROR))
    assert goaway_code(pair, goaway) == ErrorCodes.NO_ERROR
    assert pair.server.terminated
