"""The I/O-free HTTP/2 protocol against a real ``h2`` client connection (no sockets)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import (
    ContinuationFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
)

from headrace.server.protocols.http2 import (
    DISCARD_AFTER_RESPONSE,
    PREFACE,
    H2Protocol,
    H2Settings,
    split_request_headers,
)
from headrace.server.protocols.http2_states import (
    TRANSITIONS,
    IllegalTransition,
    StreamEvent,
    StreamState,
    next_state,
)

REQUEST = [
    (b":method", b"GET"),
    (b":scheme", b"http"),
    (b":authority", b"localhost"),
    (b":path", b"/x?y=1"),
]


@dataclass
class Recorder:
    requests: list[tuple[int, list[tuple[bytes, bytes]], bool]] = field(default_factory=list)
    data: list[tuple[int, bytes, bool]] = field(default_factory=list)
    resets: list[tuple[int, int]] = field(default_factory=list)
    writable: list[int] = field(default_factory=list)
    terminated: list[tuple[int, str]] = field(default_factory=list)

    def on_request(
        self,
        stream_id: int,
        pseudo: dict[bytes, bytes],
        headers: list[tuple[bytes, bytes]],
        end_stream: bool,
    ) -> None:
        self.requests.append((stream_id, [*pseudo.items(), *headers], end_stream))

    def on_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        self.data.append((stream_id, data, end_stream))

    def on_reset(self, stream_id: int, error_code: int) -> None:
        self.resets.append((stream_id, error_code))

    def on_writable(self, stream_id: int) -> None:
        self.writable.append(stream_id)

    def on_terminated(self, error_code: int, reason: str) -> None:
        self.terminated.append((error_code, reason))


class Pair:
    """A client ``H2Connection`` wired to an ``H2Protocol`` in memory."""

    def __init__(self, settings: H2Settings | None = None, **clock: float) -> None:
        self.now = 0.0
        self.recorder = Recorder()
        self.server = H2Protocol(self.recorder, settings, clock=lambda: self.now)
        self.server.initiate()
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.client = h2.connection.H2Connection(config)
        self.client.initiate_connection()
        self.events: list[h2.events.Event] = []
        self.pump()

    def pump(self) -> list[h2.events.Event]:
        new: list[h2.events.Event] = []
        for _ in range(100):
            outgoing = self.client.data_to_send()
            if outgoing:
                self.server.receive_data(outgoing)
            incoming = self.server.data_to_send()
            if incoming:
                new.extend(self.client.receive_data(incoming))
            if not outgoing and not incoming:
                break
        self.events.extend(new)
        return new

    def raw(self, data: bytes) -> list[h2.events.Event]:
        self.server.receive_data(data)
        return self.pump()


def of_type(events: list[h2.events.Event], kind: type) -> list:  # type: ignore[type-arg]
    return [event for event in events if isinstance(event, kind)]


def test_settings_advertise_limits_and_extended_connect() -> None:
    pair = Pair(H2Settings(max_concurrent_streams=7))
    remote = pair.client.remote_settings
    assert remote.max_concurrent_streams == 7
    assert remote[h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL] == 1
    assert remote.enable_push == 0
    assert pair.client.outbound_flow_control_window == pair.server.settings.connection_window


def test_request_response_round_trip() -> None:
    pair = Pair()
    pair.client.send_headers(1, REQUEST, end_stream=True)
    pair.pump()
    [(stream_id, headers, end)] = pair.recorder.requests
    pseudo, regular = split_request_headers(headers)
    assert (stream_id, end) == (1, True)
    assert pseudo[b":path"] == b"/x?y=1"
    assert regular == [(b"host", b"localhost")]
    pair.server.send_headers(1, 200, [(b"content-type", b"text/plain")], end_stream=False)
    assert pair.server.send_data(1, b"hello", end_stream=True)
    events = pair.pump()
    [response] = of_type(events, h2.events.ResponseReceived)
    assert dict(response.headers)[b":status"] == b"200"
    assert b"".join(e.data for e in of_type(events, h2.events.DataReceived)) == b"hello"
    assert of_type(events, h2.events.StreamEnded)


def test_body_window_reopens_only_as_consumed() -> None:
    pair = Pair(H2Settings(initial_window_size=1000))
    pair.client.send_headers(1, [(b":method", b"POST"), *REQUEST[1:]])
    pair.client.send_data(1, b"a" * 1000)
    pair.pump()
    assert pair.client.local_flow_control_window(1) == 0
    assert pair.recorder.data == [(1, b"a" * 1000, False)]
    pair.server.data_consumed(1, 1000)
    pair.pump()
    assert pair.client.local_flow_control_window(1) == 1000


def test_response_waits_for_peer_window_and_reports_writable() -> None:
    pair = Pair()
    pair.client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 10})
    pair.pump()
    pair.client.send_headers(1, REQUEST, end_stream=True)
    pair.pump()
    pair.server.send_headers(1, 200, [], end_stream=False)
    assert not pair.server.send_data(1, b"x" * 25, end_stream=False)
    pair.server.send_trailers(1, [(b"x-checksum", b"abc")])
    received = b""
    for _ in range(5):
        events = pair.pump()
        for event in of_type(events, h2.events.DataReceived):
            received += event.data
            pair.client.acknowledge_received_data(event.flow_controlled_length, 1)
    assert received == b"x" * 25
    assert pair.recorder.writable == [1]
    [trailers] = of_type(pair.events, h2.events.TrailersReceived)
    assert trailers.headers == [(b"x-checksum", b"abc")]


def test_early_hint_then_response() -> None:
    pair = Pair()
    pair.client.send_headers(1, REQUEST, end_stream=True)
    pair.pump()
    pair.server.send_informational(1, 103, [(b"link", b"</s.css>; rel=preload")])
    pair.server.send_headers(1, 204, [], end_stream=True)
    events = pair.pump()
    [hint] = of_type(events, h2.events.InformationalResponseReceived)
    assert dict(hint.headers)[b":status"] == b"103"
    assert of_type(events, h2.events.ResponseReceived)


def test_request_trailers_are_ignored_and_end_the_body() -> None:
    pair = Pair()
    pair.client.send_headers(1, [(b":method", b"POST"), *REQUEST[1:]])
    pair.client.send_data(1, b"body")
    pair.client.send_headers(1, [(b"x-trailer", b"1")], end_stream=True)
    pair.pump()
    assert pair.recorder.data == [(1, b"body", False), (1, b"", True)]


def test_peer_reset_reports_stream_and_returns_window() -> None:
    pair = Pair()
    pair.client.send_headers(1, [(b":method", b"POST"), *REQUEST[1:]])
    pair.client.send_data(1, b"z" * 5000)
    pair.pump()
    window_before = pair.client.outbound_flow_control_window
    pair.client.reset_stream(1, ErrorCodes.CANCEL)
    pair.pump()
    assert pair.recorder.resets == [(1, ErrorCodes.CANCEL)]
    assert pair.client.outbound_flow_control_window >= window_before


def parse_frames(data: bytes) -> list[Frame]:
    frames = []
    while data:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        frame.parse_body(memoryview(data[9 : 9 + length]))
        frames.append(frame)
        data = data[9 + length :]
    return frames


def test_graceful_shutdown_finishes_in_flight_and_refuses_new() -> None:
    pair = Pair()
    pair.client.send_headers(1, REQUEST, end_stream=True)
    pair.pump()
    pair.server.begin_graceful_shutdown()
    pair.server.send_headers(1, 200, [], end_stream=True)
    goaway, headers = parse_frames(pair.server.data_to_send())
    assert isinstance(goaway, GoAwayFrame)
    assert (goaway.error_code, goaway.last_stream_id) == (ErrorCodes.NO_ERROR, 1)
    assert isinstance(headers, HeadersFrame)
    assert "END_STREAM" in headers.flags
    assert not pair.server.is_idle()
    pair.server.stream_finished(1)
    assert pair.server.is_idle()


def test_refuses_stream_opened_after_goaway() -> None:
    pair = Pair()
    pair.server.begin_graceful_shutdown()
    pair.pump()
    pair.server.data_to_send()
    frame = HeadersFrame(1, flags=["END_HEADERS", "END_STREAM"])
    frame.data = pair.client.encoder.encode(REQUEST)
    pair.server.receive_data(frame.serialize())
    assert pair.recorder.requests == []
    [reset] = parse_frames(pair.server.data_to_send())
    assert isinstance(reset, RstStreamFrame)
    assert reset.error_code == ErrorCodes.REFUSED_STREAM


def test_malformed_request_is_reset_with_protocol_error() -> None:
    pair = Pair()
    pair.server.data_to_send()
    for stream_id, extra in ((1, (b"Upper", b"x")), (3, (b"connection", b"close"))):
        frame = HeadersFrame(stream_id, flags=["END_HEADERS", "END_STREAM"])
        frame.data = pair.client.encoder.encode([*REQUEST, extra])
        pair.server.receive_data(frame.serialize())
    resets = parse_frames(pair.server.data_to_send())
    assert [(f.stream_id, f.error_code) for f in resets] == [
        (1, ErrorCodes.PROTOCOL_ERROR),
        (3, ErrorCodes.PROTOCOL_ERROR),
    ]
    assert pair.recorder.requests == []
    assert pair.recorder.terminated == []


def test_protocol_violations_are_goaway_with_error_code() -> None:
    cases = [
        (b"\x00\x00\x08\x06\x00\x00\x00\x00\x01" + b"12345678", ErrorCodes.PROTOCOL_ERROR),
        (b"\x00\x00\x03\x06\x00\x00\x00\x00\x00abc", ErrorCodes.FRAME_SIZE_ERROR),
        (b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00", ErrorCodes.PROTOCOL_ERROR),
        (ContinuationFrame(1, data=b"").serialize(), ErrorCodes.PROTOCOL_ERROR),
    ]
    for data, code in cases:
        pair = Pair()
        pair.server.data_to_send()
        pair.server.receive_data(data)
        [goaway] = parse_frames(pair.server.data_to_send())
        assert isinstance(goaway, GoAwayFrame)
        assert goaway.error_code == code
        assert pair.recorder.terminated[0][0] == code


def test_hpack_bomb_is_enhance_your_calm() -> None:
    pair = Pair(H2Settings(max_header_list_size=4096, header_table_size=4096))
    pair.client.send_headers(1, [*REQUEST, (b"x-bomb", b"v" * 4000)], end_stream=True)
    pair.pump()  # the 4 KB field is now entry 62 of the dynamic table (and got a 431)
    assert pair.recorder.terminated == []
    # :method GET, :scheme http, :path / (static), :authority literal, then entry 62 x 200.
    block = b"\x82\x86\x84\x01\x09localhost" + b"\xbe" * 200
    pair.server.receive_data(raw_frame(0x1, 0x5, 3, block))
    assert pair.recorder.terminated[0][0] == ErrorCodes.ENHANCE_YOUR_CALM
    assert pair.recorder.requests == []


def test_continuation_flood_is_bounded() -> None:
    pair = Pair()
    frames = [HeadersFrame(1, data=b"")]
    frames += [ContinuationFrame(1, data=b"") for _ in range(100)]
    pair.server.receive_data(b"".join(frame.serialize() for frame in frames))
    assert pair.recorder.terminated[0][0] == ErrorCodes.ENHANCE_YOUR_CALM


def test_settings_flood_is_enhance_your_calm() -> None:
    pair = Pair(H2Settings(control_frame_burst=20, control_frames_per_second=1))
    pair.server.receive_data(b"".join(SettingsFrame(0).serialize() for _ in range(50)))
    assert pair.recorder.terminated == [(ErrorCodes.ENHANCE_YOUR_CALM, "too many control frames")]


def test_ping_and_priority_flood_is_bounded_but_pings_answered() -> None:
    pair = Pair(H2Settings(control_frame_burst=10, control_frames_per_second=1))
    pair.client.ping(b"12345678")
    assert of_type(pair.pump(), h2.events.PingAckReceived)
    flood = [PingFrame(0, opaque_data=b"abcdefgh") for _ in range(10)]
    flood += [PriorityFrame(1, depends_on=0) for _ in range(10)]
    pair.server.receive_data(b"".join(frame.serialize() for frame in flood))
    assert pair.recorder.terminated[0][0] == ErrorCodes.ENHANCE_YOUR_CALM


def test_control_budget_refills_over_time() -> None:
    pair = Pair(H2Settings(control_frame_burst=5, control_frames_per_second=10))
    for _ in range(20):
        pair.now += 0.5
        pair.client.ping(b"12345678")
        pair.pump()
    assert pair.recorder.terminated == []


def test_rapid_reset_is_enhance_your_calm() -> None:
    pair = Pair(H2Settings(reset_burst=10, resets_per_second=1))
    for index in range(30):
        stream_id = 2 * index + 1
        pair.client.send_headers(stream_id, REQUEST, end_stream=True)
        pair.client.reset_stream(stream_id, ErrorCodes.CANCEL)
        pair.pump()
        if pair.recorder.terminated:
            break
    assert pair.recorder.terminated[0][0] == ErrorCodes.ENHANCE_YOUR_CALM
    assert len(pair.recorder.requests) <= 12


def test_streams_over_the_limit_are_refused() -> None:
    pair = Pair(H2Settings(max_concurrent_streams=2))
    for stream_id in (1, 3):
        pair.client.send_headers(stream_id, REQUEST, end_stream=True)
    pair.pump()
    frame = HeadersFrame(5, flags=["END_HEADERS", "END_STREAM"])
    frame.data = pair.client.encoder.encode(REQUEST)
    pair.server.data_to_send()
    pair.server.receive_data(frame.serialize())
    assert len(pair.recorder.requests) == 2
    [reset] = parse_frames(pair.server.data_to_send())
    assert (reset.stream_id, reset.error_code) == (5, ErrorCodes.REFUSED_STREAM)
    assert pair.recorder.terminated == []


def test_streams_whose_app_still_runs_after_reset_keep_counting() -> None:
    pair = Pair(H2Settings(max_concurrent_streams=2, reset_burst=100))
    stream_id = 1
    for _ in range(6):
        pair.client.send_headers(stream_id, REQUEST, end_stream=True)
        pair.client.reset_stream(stream_id, ErrorCodes.CANCEL)
        pair.pump()
        stream_id += 2
    assert len(pair.recorder.requests) == 4
    assert pair.server.active_streams == 4


def test_upgrade_turns_http1_request_into_stream_one() -> None:
    recorder = Recorder()
    server = H2Protocol(recorder)
    client = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding=None))
    settings_header = client.initiate_upgrade_connection()
    server.initiate_upgrade(settings_header, REQUEST, b"payload")
    assert recorder.requests == [(1, REQUEST, False)]
    assert recorder.data == [(1, b"payload", True)]
    server.send_headers(1, 200, [], end_stream=True)
    client.receive_data(server.data_to_send())
    events = client.receive_data(server.data_to_send())
    del events
    assert client.streams[1].closed


def raw_frame(frame_type: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    length = len(payload)
    head = struct.pack(">BHBBL", length >> 16, length & 0xFFFF, frame_type, flags, stream_id)
    return head + payload


def goaway_code(pair: Pair, data: bytes) -> int | None:
    pair.server.data_to_send()
    pair.server.receive_data(data)
    frames = parse_frames(pair.server.data_to_send())
    codes = [frame.error_code for frame in frames if isinstance(frame, GoAwayFrame)]
    return codes[0] if codes else None


def reset_codes(pair: Pair, data: bytes) -> list[tuple[int, int]]:
    pair.server.data_to_send()
    pair.server.receive_data(data)
    frames = parse_frames(pair.server.data_to_send())
    return [(f.stream_id, f.error_code) for f in frames if isinstance(f, RstStreamFrame)]


def headers_frame(
    pair: Pair, stream_id: int, headers: list[tuple[bytes, bytes]], flags: int
) -> bytes:
    return raw_frame(0x1, flags | 0x4, stream_id, pair.client.encoder.encode(headers))


POST = [(b":method", b"POST"), *REQUEST[1:]]


def test_connection_level_violations() -> None:
    assert goaway_code(Pair(), headers_frame(Pair(), 2, REQUEST, 1)) == ErrorCodes.PROTOCOL_ERROR
    pair = Pair()
    pair.client.send_headers(3, REQUEST, end_stream=True)
    pair.pump()
    assert goaway_code(pair, headers_frame(pair, 1, REQUEST, 1)) == ErrorCodes.PROTOCOL_ERROR
    pair = Pair()
    pair.client.send_headers(1, REQUEST, end_stream=True)
    pair.pump()
    pair.server.send_headers(1, 204, [], end_stream=True)
    pair.server.stream_finished(1)
    assert goaway_code(pair, headers_frame(pair, 1, REQUEST, 1)) == ErrorCodes.STREAM_CLOSED
    overflow = raw_frame(0x8, 0, 0, struct.pack(">L", 2**31 - 1))
    assert goaway_code(Pair(), overflow) == ErrorCodes.FLOW_CONTROL_ERROR
    zero = raw_frame(0x8, 0, 0, struct.pack(">L", 0))
    assert goaway_code(Pair(), zero) == ErrorCodes.PROTOCOL_ERROR
    assert goaway_code(Pair(), raw_frame(0x0, 0, 9, b"x")) == ErrorCodes.PROTOCOL_ERROR
    assert goaway_code(Pair(), raw_frame(0x5, 0x4, 1, b"\0\0\0\2")) == ErrorCodes.PROTOCOL_ERROR
    bad_setting = raw_frame(0x4, 0, 0, struct.pack(">HL", 0x5, 100))
    assert goaway_code(Pair(), bad_setting) == ErrorCodes.PROTOCOL_ERROR
    too_big = raw_frame(0x0, 0, 1, b"x" * 20000)
    assert goaway_code(Pair(), too_big) == ErrorCodes.FRAME_SIZE_ERROR


def test_preface_and_first_frame_rules() -> None:
    recorder = Recorder()
    server = H2Protocol(recorder)
    server.initiate()
    server.receive_data(b"GET / HTTP/1.1\r\n\r\n")
    assert recorder.terminated[0][0] == ErrorCodes.PROTOCOL_ERROR
    recorder = Recorder()
    server = H2Protocol(recorder)
    server.receive_data(PREFACE + raw_frame(0x6, 0, 0, b"12345678"))
    assert recorder.terminated[0][0] == ErrorCodes.PROTOCOL_ERROR


def test_stream_level_violations() -> None:
    pair = Pair(H2Settings(initial_window_size=100))
    data = headers_frame(pair, 1, [*POST, (b"content-length", b"5")], 0)
    data += raw_frame(0x0, 0x1, 1, b"abc")
    data += headers_frame(pair, 3, POST, 0) + raw_frame(0x0, 0, 3, b"y" * 200)
    data += headers_frame(pair, 5, REQUEST, 0x1) + raw_frame(0x0, 0, 5, b"late")
    data += headers_frame(pair, 7, [*REQUEST, (b"x", b" padded ")], 0x1)
    data += headers_frame(pair, 9, [(b":protocol", b"chat"), *REQUEST], 0x1)
    assert reset_codes(pair, data) == [
        (1, ErrorCodes.PROTOCOL_ERROR),
        (3, ErrorCodes.FLOW_CONTROL_ERROR),
        (5, ErrorCodes.STREAM_CLOSED),
        (7, ErrorCodes.PROTOCOL_ERROR),
        (9, ErrorCodes.PROTOCOL_ERROR),
    ]
    assert (1, ErrorCodes.PROTOCOL_ERROR) in pair.recorder.resets
    assert pair.recorder.terminated == []


def test_cookies_joined_and_connect_rules() -> None:
    pair = Pair(H2Settings(enable_connect_protocol=False))
    cookies = [*REQUEST, (b"cookie", b"a=1"), (b"cookie", b"b=2")]
    pair.client.send_headers(1, cookies, end_stream=True)
    pair.pump()
    [(_, headers, _)] = pair.recorder.requests
    assert (b"cookie", b"a=1; b=2") in headers
    connect = [(b":method", b"CONNECT"), (b":authority", b"example.com:443")]
    websocket = [(b":method", b"CONNECT"), (b":protocol", b"websocket"), *REQUEST[1:]]
    data = headers_frame(pair, 3, connect, 0) + headers_frame(pair, 5, websocket, 0)
    assert reset_codes(pair, data) == [(5, ErrorCodes.PROTOCOL_ERROR)]
    assert pair.recorder.requests[-1][0] == 3


def test_big_response_headers_use_continuation_and_table_size_change() -> None:
    pair = Pair()
    pair.client.update_settings({h2.settings.SettingCodes.HEADER_TABLE_SIZE: 0})
    pair.pump()
    pair.client.send_headers(1, REQUEST, end_stream=True)
    pair.pump()
    big = [(b"x-big-%d" % index, b"v" * 1000) for index in range(40)]
    pair.server.send_headers(1, 200, big, end_stream=True)
    [response] = of_type(pair.pump(), h2.events.ResponseReceived)
    assert dict(response.headers)[b"x-big-39"] == b"v" * 1000


def answer_before_the_body(pair: Pair, headers: list[tuple[bytes, bytes]]) -> None:
    """A POST whose first body bytes arrived, answered (and its app finished) at once."""
    pair.client.send_headers(1, POST + headers)
    pair.client.send_data(1, b"part")
    pair.pump()
    pair.server.send_headers(1, 413, [], end_stream=True)
    pair.server.stream_finished(1)


def test_body_after_a_complete_response_is_read_then_the_client_is_asked_to_stop() -> None:
    pair = Pair()
    answer_before_the_body(pair, [])
    events = pair.pump()
    assert of_type(events, h2.events.ResponseReceived)
    assert not of_type(events, h2.events.StreamReset)  # a short rest is simply read
    chunk = b"x" * 16_000
    resets = []
    for _ in range(DISCARD_AFTER_RESPONSE // len(chunk) + 2):
        pair.client.send_data(1, chunk)  # never stalls: the dropped bytes' window comes back
        resets += of_type(pair.pump(), h2.events.StreamReset)
        if resets:
            break
    assert [reset.error_code for reset in resets] == [ErrorCodes.NO_ERROR]
    assert pair.recorder.data == [(1, b"part", False)]  # the app saw only what it was sent


def test_body_after_a_complete_response_is_still_checked() -> None:
    pair = Pair()
    answer_before_the_body(pair, [(b"content-length", b"5")])
    pair.pump()
    pair.client.send_data(1, b"toolong")
    [reset] = of_type(pair.pump(), h2.events.StreamReset)
    assert reset.error_code == ErrorCodes.PROTOCOL_ERROR
    pair = Pair()
    answer_before_the_body(pair, [])
    pair.pump()
    padded = raw_frame(0x0, 0x8, 1, bytes([9]) + b"short")  # pad length beyond the payload
    assert goaway_code(pair, padded) == ErrorCodes.PROTOCOL_ERROR


def test_header_list_over_the_limit_is_answered_431() -> None:
    pair = Pair(H2Settings(max_header_list_size=1000))
    pair.client.send_headers(1, [*REQUEST, (b"cookie", b"c" * 2000)], end_stream=True)
    events = pair.pump()
    [response] = of_type(events, h2.events.ResponseReceived)
    assert dict(response.headers)[b":status"] == b"431"
    assert pair.recorder.requests == []
    assert pair.recorder.terminated == []
    pair.client.send_headers(3, REQUEST, end_stream=True)
    pair.pump()
    assert [request[0] for request in pair.recorder.requests] == [3]


def test_finished_response_frees_its_slot_before_the_app_returns() -> None:
    pair = Pair(H2Settings(max_concurrent_streams=1))
    pair.client.send_headers(1, REQUEST, end_stream=True)
    pair.pump()
    pair.server.send_headers(1, 204, [], end_stream=True)  # the app has not returned yet
    pair.pump()
    pair.client.send_headers(3, REQUEST, end_stream=True)
    events = pair.pump()
    assert not of_type(events, h2.events.StreamReset)
    assert [request[0] for request in pair.recorder.requests] == [1, 3]


def test_frames_in_flight_after_our_reset_are_dropped() -> None:
    pair = Pair()
    pair.client.send_headers(1, POST)
    pair.pump()
    pair.server.reset_stream(1, ErrorCodes.INTERNAL_ERROR)
    pair.server.data_to_send()
    late = raw_frame(0x0, 0, 1, b"late") + headers_frame(pair, 1, [(b"x-t", b"1")], 0x1)
    pair.server.receive_data(late)
    assert pair.server.data_to_send() == b""  # no RST_STREAM, no GOAWAY
    assert pair.recorder.terminated == []


def test_stream_state_table_follows_rfc9113_section_5_1() -> None:
    s, e = StreamState, StreamEvent
    lifecycle = [e.RECV_HEADERS, e.RECV_END_STREAM, e.SEND_END_STREAM]
    state = s.IDLE
    seen = []
    for event in lifecycle:
        state = next_state(state, event)
        seen.append(state)
    assert seen == [s.OPEN, s.HALF_CLOSED_REMOTE, s.CLOSED]
    assert next_state(s.OPEN, e.SEND_END_STREAM) is s.HALF_CLOSED_LOCAL
    assert next_state(s.HALF_CLOSED_LOCAL, e.RECV_END_STREAM) is s.CLOSED
    for state in (s.OPEN, s.HALF_CLOSED_LOCAL, s.HALF_CLOSED_REMOTE):
        assert next_state(state, e.RECV_RST_STREAM) is s.CLOSED
    for illegal in [
        (s.IDLE, e.RECV_END_STREAM),
        (s.HALF_CLOSED_REMOTE, e.RECV_END_STREAM),
        (s.HALF_CLOSED_LOCAL, e.SEND_END_STREAM),
        (s.CLOSED, e.RECV_HEADERS),
    ]:
        assert illegal not in TRANSITIONS
        with pytest.raises(IllegalTransition):
            next_state(*illegal)


def test_protocol_streams_move_through_the_state_table() -> None:
    pair = Pair()
    assert pair.server.stream_state(1) is StreamState.IDLE
    pair.client.send_headers(1, [(b":method", b"POST"), *REQUEST[1:]])
    pair.pump()
    assert pair.server.stream_state(1) is StreamState.OPEN
    pair.server.send_headers(1, 200, [], end_stream=True)
    assert pair.server.stream_state(1) is StreamState.HALF_CLOSED_LOCAL
    pair.client.send_data(1, b"body", end_stream=True)
    pair.pump()
    assert pair.server.stream_state(1) is StreamState.CLOSED  # known while its app runs
    pair.server.stream_finished(1)
    assert pair.server.stream_state(1) is StreamState.CLOSED
    pair.client.send_headers(3, REQUEST, end_stream=True)
    pair.pump()
    assert pair.server.stream_state(3) is StreamState.HALF_CLOSED_REMOTE
    pair.server.reset_stream(3)
    assert pair.server.stream_state(3) is StreamState.CLOSED
