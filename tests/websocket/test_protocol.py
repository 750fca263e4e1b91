"""The I/O-free WebSocket protocol: handshake checks, framing, limits, permessage-deflate."""

from __future__ import annotations

import struct
import tracemalloc
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headrace.server.protocols.websocket import (
    DeflateConfig,
    HandshakeError,
    State,
    WebSocketProtocol,
    _apply_mask_python,
    accept_key,
    apply_mask,
    negotiate_deflate,
    validate_request,
)
from tests.websocket._support import client_frame

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
GOOD_HEADERS = [
    (b"host", b"example.com"),
    (b"upgrade", b"websocket"),
    (b"connection", b"keep-alive, Upgrade"),
    (b"sec-websocket-key", KEY),
    (b"sec-websocket-version", b"13"),
]


def _headers_without(name: bytes) -> list[tuple[bytes, bytes]]:
    return [(n, v) for n, v in GOOD_HEADERS if n != name]


def _server_frames(data: bytes) -> list[tuple[int, bytes]]:
    frames = []
    position = 0
    while position < len(data):
        first, length = data[position], data[position + 1] & 0x7F
        position += 2
        if length == 126:
            (length,) = struct.unpack("!H", data[position : position + 2])
            position += 2
        elif length == 127:
            (length,) = struct.unpack("!Q", data[position : position + 8])
            position += 8
        frames.append((first, data[position : position + length]))
        position += length
    return frames


# -- handshake ----------------------------------------------------------------------------------


def test_accept_key_matches_rfc_6455_example() -> None:
    assert accept_key(KEY) == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_valid_request_yields_key_subprotocols_and_offers() -> None:
    headers = [
        *GOOD_HEADERS,
        (b"sec-websocket-protocol", b"chat, superchat"),
        (b"sec-websocket-protocol", b"v3"),
        (b"sec-websocket-extensions", b"permessage-deflate"),
    ]
    request = validate_request(b"GET", headers)
    assert request.key == KEY
    assert request.subprotocols == ["chat", "superchat", "v3"]
    assert request.extension_offers == [b"permessage-deflate"]


@pytest.mark.parametrize(
    ("method", "headers", "status"),
    [
        (b"POST", GOOD_HEADERS, 400),
        (b"GET", _headers_without(b"upgrade"), 400),
        (b"GET", _headers_without(b"connection"), 400),
        (b"GET", _headers_without(b"sec-websocket-key"), 400),
        (b"GET", [*_headers_without(b"sec-websocket-key"), (b"sec-websocket-key", b"short")], 400),
        (b"GET", [*GOOD_HEADERS, (b"sec-websocket-key", KEY)], 400),
        (b"GET", _headers_without(b"sec-websocket-version"), 426),
        (
            b"GET",
            [*_headers_without(b"sec-websocket-version"), (b"sec-websocket-version", b"8")],
            426,
        ),
    ],
)
def test_invalid_handshakes_are_refused_with_status(
    method: bytes, headers: list[tuple[bytes, bytes]], status: int
) -> None:
    with pytest.raises(HandshakeError) as caught:
        validate_request(method, headers)
    assert caught.value.status == status
    if status == 426:
        assert (b"sec-websocket-version", b"13") in caught.value.headers


@pytest.mark.parametrize("bad", [b"a\x00b", b"a\rb", b"a\nb", b"a\x1bb", b"a\x7fb"])
def test_control_bytes_in_header_values_are_refused(bad: bytes) -> None:
    """CVE-2026-44546: control bytes in upgrade header values must not reach the app."""
    with pytest.raises(HandshakeError) as caught:
        validate_request(b"GET", [*GOOD_HEADERS, (b"sec-websocket-protocol", bad)])
    assert caught.value.status == 400


def test_tab_in_header_value_is_allowed() -> None:
    request = validate_request(b"GET", [*GOOD_HEADERS, (b"x-note", b"a\tb")])
    assert request.key == KEY


def test_http2_extended_connect_needs_no_key() -> None:
    request = validate_request(b"CONNECT", [(b"sec-websocket-version", b"13")], http2=True)
    assert request.key is None
    with pytest.raises(HandshakeError):
        validate_request(b"GET", [(b"sec-websocket-version", b"13")], http2=True)


# -- permessage-deflate negotiation -------------------------------------------------------------


def test_deflate_default_offer_is_accepted() -> None:
    params = negotiate_deflate([b"permessage-deflate; client_max_window_bits"], DeflateConfig())
    assert params is not None
    assert params.response_value == b"permessage-deflate; client_max_window_bits=12"
    assert not params.server_no_context_takeover


def test_deflate_parameters_are_honoured() -> None:
    offer = (
        b"permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        b"server_max_window_bits=10"
    )
    params = negotiate_deflate([offer], DeflateConfig())
    assert params is not None
    assert params.server_no_context_takeover and params.client_no_context_takeover
    assert params.server_max_window_bits == 10
    assert b"server_max_window_bits=10" in params.response_value
    assert b"client_max_window_bits" not in params.response_value


def test_invalid_offer_is_skipped_for_the_next_one() -> None:
    offers = [
        b"permessage-deflate; server_max_window_bits=99, permessage-deflate; foo=1",
        b"x-other",
    ]
    assert negotiate_deflate(offers, DeflateConfig()) is None
    offers = [b"permessage-deflate; server_max_window_bits=7, permessage-deflate"]
    params = negotiate_deflate(offers, DeflateConfig())
    assert params is not None and params.response_value == b"permessage-deflate"


@pytest.mark.parametrize("bits", ["\u00b9", "\u00b2", "\u0661\u0660", "+9", " 9", "9.0"])
def test_window_bits_that_are_not_ascii_digits_decline_the_offer(bits: str) -> None:
    """Fuzzing finding: "¹" (latin-1 0xB9) passed str.isdigit() and int() raised ValueError."""
    value = f'permessage-deflate; client_max_window_bits="{bits}", permessage-deflate'
    params = negotiate_deflate([value.encode("latin-1", "replace")], DeflateConfig())
    assert params is not None and params.response_value == b"permessage-deflate"


def test_deflate_can_be_switched_off() -> None:
    assert negotiate_deflate([b"permessage-deflate"], DeflateConfig(enabled=False)) is None


def test_window_bits_8_is_accepted_but_messages_go_uncompressed() -> None:
    params = negotiate_deflate([b"permessage-deflate; server_max_window_bits=8"], DeflateConfig())
    assert params is not None and b"server_max_window_bits=8" in params.response_value
    protocol = WebSocketProtocol(deflate=params)
    frame = protocol.encode_message("x" * 1000)
    assert not frame[0] & 0x40


# -- framing ------------------------------------------------------------------------------------


def test_masking_helpers_agree() -> None:
    data = bytes(range(256)) * 3
    mask = b"\xaa\x55\x0f\xf0"
    assert apply_mask(data, mask) == _apply_mask_python(data, mask)
    assert _apply_mask_python(_apply_mask_python(data, mask), mask) == data


def test_text_binary_and_empty_messages() -> None:
    protocol = WebSocketProtocol()
    protocol.receive_data(
        client_frame(1, "héllo".encode())
        + client_frame(2, b"\x00\xff")
        + client_frame(1, b"")
        + client_frame(2, b"")
    )
    assert protocol.messages == ["héllo", b"\x00\xff", "", b""]


def test_fragmented_message_with_control_frames_between_fragments() -> None:
    protocol = WebSocketProtocol()
    data = (
        client_frame(1, b"frag", fin=False)
        + client_frame(9, b"ping!")
        + client_frame(0, b"men", fin=False)
        + client_frame(10, b"unsolicited pong")
        + client_frame(0, b"ted", fin=True)
    )
    for index in range(len(data)):  # byte by byte: every split point
        protocol.receive_data(data[index : index + 1])
    assert protocol.messages == ["fragmented"]
    assert _server_frames(protocol.data_to_send()) == [(0x8A, b"ping!")]


def test_large_frame_lengths_16_and_64_bit() -> None:
    protocol = WebSocketProtocol(max_message_size=0, max_frame_size=0)
    protocol.receive_data(client_frame(2, b"a" * 300) + client_frame(2, b"b" * 70000))
    assert protocol.messages == [b"a" * 300, b"b" * 70000]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\x81\x05hello", 1002),  # unmasked
        (client_frame(1, b"x", rsv=0x20), 1002),  # RSV2 without extension
        (client_frame(1, b"x", rsv=0x40), 1002),  # RSV1 without permessage-deflate
        (client_frame(3, b"x"), 1002),  # reserved data opcode
        (client_frame(11, b"x"), 1002),  # reserved control opcode
        (client_frame(9, b"x" * 126), 1002),  # control payload > 125
        (client_frame(9, b"x", fin=False), 1002),  # fragmented control frame
        (client_frame(0, b"x"), 1002),  # continuation without a message
        (client_frame(1, b"a", fin=False) + client_frame(1, b"b"), 1002),  # new message mid-way
        (client_frame(1, b"\xff\xfe"), 1007),  # invalid UTF-8
        (client_frame(8, b"\x03"), 1002),  # one-byte close payload
        (client_frame(8, struct.pack("!H", 1005)), 1002),  # close code not for the wire
        (client_frame(8, struct.pack("!H", 999)), 1002),
        (client_frame(8, struct.pack("!H", 1000) + b"\xff"), 1007),  # bad UTF-8 reason
    ],
)
def test_protocol_errors_fail_with_the_right_code(data: bytes, code: int) -> None:
    protocol = WebSocketProtocol()
    protocol.receive_data(data)
    assert protocol.state == State.FAILED
    assert protocol.failure_code == code
    frames = _server_frames(protocol.data_to_send())
    assert frames[-1][0] == 0x88
    assert struct.unpack("!H", frames[-1][1][:2])[0] == code
    protocol.receive_data(client_frame(1, b"ignored after failure"))
    assert protocol.messages == [] or protocol.messages[-1] != "ignored after failure"


def test_invalid_utf8_fails_fast_inside_a_fragmented_message() -> None:
    protocol = WebSocketProtocol()
    protocol.receive_data(client_frame(1, b"ok \xce\xba\xff", fin=False))
    assert protocol.failure_code == 1007


def test_utf8_sequence_split_across_fragments_is_fine() -> None:
    protocol = WebSocketProtocol()
    encoded = "κόσμε".encode()
    protocol.receive_data(client_frame(1, encoded[:3], fin=False) + client_frame(0, encoded[3:]))
    assert protocol.messages == ["κόσμε"]


def test_oversized_frame_rejected_from_its_header_alone() -> None:
    """CVE-2026-44545: the announced length is refused before any payload is buffered."""
    protocol = WebSocketProtocol(max_message_size=1024, max_frame_size=1 << 20)
    header_only = struct.pack("!BBQ", 0x82, 0xFF, 1 << 40) + b"mask"
    protocol.receive_data(header_only)
    assert protocol.failure_code == 1009
    frame_limited = WebSocketProtocol(max_message_size=0, max_frame_size=100)
    frame_limited.receive_data(struct.pack("!BBH", 0x82, 0xFE, 200))
    assert frame_limited.failure_code == 1009


def test_message_limit_counts_all_fragments() -> None:
    protocol = WebSocketProtocol(max_message_size=10, max_frame_size=10)
    protocol.receive_data(client_frame(2, b"123456", fin=False))
    assert protocol.state == State.OPEN
    protocol.receive_data(client_frame(0, b"789012", fin=True)[:2])
    assert protocol.failure_code == 1009


def test_zero_limits_mean_unlimited() -> None:
    protocol = WebSocketProtocol(max_message_size=0, max_frame_size=0)
    protocol.receive_data(client_frame(2, b"x" * 200_000))
    assert protocol.messages == [b"x" * 200_000]


def test_close_initiated_by_client_is_echoed() -> None:
    protocol = WebSocketProtocol()
    protocol.receive_data(client_frame(8, struct.pack("!H", 4001) + b"bye") + client_frame(1, b"x"))
    assert (protocol.close_code, protocol.close_reason) == (4001, "bye")
    assert protocol.messages == []  # data after close is ignored
    assert _server_frames(protocol.data_to_send()) == [(0x88, struct.pack("!H", 4001))]
    assert protocol.state == State.CLOSED


def test_empty_close_gets_a_normal_close_and_reports_1005() -> None:
    protocol = WebSocketProtocol()
    protocol.receive_data(client_frame(8, b""))
    assert protocol.close_code == 1005
    assert _server_frames(protocol.data_to_send()) == [(0x88, struct.pack("!H", 1000))]


def test_close_initiated_by_server_completes_on_reply() -> None:
    protocol = WebSocketProtocol()
    frame = protocol.encode_close(1000, "done")
    assert frame == b"\x88\x06\x03\xe8done"
    assert protocol.state == State.CLOSING
    protocol.receive_data(client_frame(1, b"late message"))  # may still arrive
    protocol.receive_data(client_frame(8, struct.pack("!H", 1000)))
    assert protocol.state == State.CLOSED
    assert protocol.data_to_send() == b""


def test_close_reason_is_truncated_to_fit_a_control_frame() -> None:
    frame = WebSocketProtocol().encode_close(1000, "é" * 200)
    payload = _server_frames(frame)[0][1]
    assert len(payload) <= 125
    payload[2:].decode("utf-8")


def test_outgoing_frame_lengths() -> None:
    protocol = WebSocketProtocol()
    for size in (0, 125, 126, 65535, 65536):
        [(first, payload)] = _server_frames(protocol.encode_message(b"z" * size))
        assert first == 0x82 and len(payload) == size
    assert protocol.encode_message("hi") == b"\x81\x02hi"
    assert protocol.encode_ping(b"p") == b"\x89\x01p"


# -- permessage-deflate framing -----------------------------------------------------------------


def _client_deflate(message: bytes, compressor: zlib._Compress) -> bytes:
    data = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


def _deflate_protocol(offer: bytes = b"permessage-deflate", **limits: int) -> WebSocketProtocol:
    params = negotiate_deflate([offer], DeflateConfig())
    assert params is not None
    return WebSocketProtocol(deflate=params, **limits)


def test_compressed_messages_with_context_takeover() -> None:
    protocol = _deflate_protocol()
    compressor = zlib.compressobj(wbits=-15)
    for text in ("hello hello hello", "hello hello hello again"):
        protocol.receive_data(client_frame(1, _client_deflate(text.encode(), compressor), rsv=0x40))
    assert protocol.messages == ["hello hello hello", "hello hello hello again"]


def test_compressed_fragmented_message() -> None:
    protocol = _deflate_protocol()
    data = _client_deflate(b"abc" * 1000, zlib.compressobj(wbits=-15))
    half = len(data) // 2
    protocol.receive_data(
        client_frame(2, data[:half], fin=False, rsv=0x40) + client_frame(0, data[half:])
    )
    assert protocol.messages == [b"abc" * 1000]


def test_outgoing_messages_are_compressed_above_the_threshold() -> None:
    protocol = _deflate_protocol()
    decompressor = zlib.decompressobj(wbits=-15)
    for _ in range(2):  # context takeover across messages
        [(first, payload)] = _server_frames(protocol.encode_message("spam " * 200))
        assert first == 0xC1
        assert decompressor.decompress(payload + b"\x00\x00\xff\xff") == b"spam " * 200
    [(first, payload)] = _server_frames(protocol.encode_message("tiny"))
    assert first == 0x81 and payload == b"tiny"


def test_decompressed_size_is_limited_not_the_compressed_size() -> None:
    """A small compressed frame inflating past the limit (a zip bomb) is refused with 1009."""
    protocol = _deflate_protocol(max_message_size=100_000, max_frame_size=100_000)
    bomb = _client_deflate(b"\x00" * 10_000_000, zlib.compressobj(wbits=-15))
    assert len(bomb) < 100_000
    protocol.receive_data(client_frame(2, bomb, rsv=0x40))
    assert protocol.failure_code == 1009
    assert protocol.messages == []


def test_zip_bomb_in_a_later_fragment_is_bounded_when_the_budget_is_used_up() -> None:
    """Regression: once earlier fragments filled the limit exactly, inflation stayed bounded."""
    protocol = _deflate_protocol(max_message_size=1000, max_frame_size=1 << 20)
    compressor = zlib.compressobj(wbits=-15)
    first = compressor.compress(b"a" * 1000) + compressor.flush(zlib.Z_SYNC_FLUSH)
    bomb = compressor.compress(b"\x00" * 16_000_000) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert len(bomb) < 1 << 20
    tracemalloc.start()
    try:
        protocol.receive_data(client_frame(2, first, fin=False, rsv=0x40))
        protocol.receive_data(client_frame(0, bomb, fin=False))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert protocol.failure_code == 1009
    assert peak < 4_000_000, f"inflated {peak} bytes past a 1000-byte limit"


def test_compressed_frame_is_refused_on_its_header_when_the_frame_limit_is_off() -> None:
    """With --websocket-max-frame-size 0 a compressed frame is still bounded before buffering."""
    protocol = _deflate_protocol(max_message_size=1000, max_frame_size=0)
    protocol.receive_data(struct.pack("!BBQ", 0xC2, 0xFF, 1 << 40) + b"mask")
    assert protocol.failure_code == 1009
    assert protocol._buffer == bytearray()


def test_compressed_frame_slightly_bigger_than_the_limit_is_accepted() -> None:
    """Incompressible data grows a little under DEFLATE: the wire bound leaves room for that."""
    protocol = _deflate_protocol(max_message_size=5000, max_frame_size=0)
    data = bytes(range(256)) * 19  # 4,864 bytes
    stored = zlib.compressobj(0, wbits=-15)
    payload = stored.compress(data) + stored.flush(zlib.Z_SYNC_FLUSH)
    protocol.receive_data(client_frame(2, payload[:-4], rsv=0x40))
    assert protocol.messages == [data]


def test_message_ended_with_a_bfinal_block_then_context_takeover_continues() -> None:
    """RFC 7692 §7.2.3.5: a BFINAL block instead of a flush; the next stream refers back."""
    protocol = _deflate_protocol()
    first_text = b"the quick brown fox jumps over the lazy dog " * 3
    first = zlib.compressobj(wbits=-15)
    payload = first.compress(first_text) + first.flush(zlib.Z_FINISH)
    protocol.receive_data(client_frame(1, payload, rsv=0x40))
    second = zlib.compressobj(wbits=-15, zdict=first_text)
    payload = second.compress(b"the lazy dog again") + second.flush(zlib.Z_FINISH)
    protocol.receive_data(client_frame(2, payload, rsv=0x40))
    third = _client_deflate(b"fresh stream", zlib.compressobj(wbits=-15))
    protocol.receive_data(client_frame(2, third, rsv=0x40))
    assert protocol.failure_code is None
    assert protocol.messages == [first_text.decode(), b"the lazy dog again", b"fresh stream"]


def test_data_after_the_end_of_the_deflate_stream_inside_a_message_fails() -> None:
    protocol = _deflate_protocol()
    compressor = zlib.compressobj(wbits=-15)
    ended = compressor.compress(b"done") + compressor.flush(zlib.Z_FINISH)
    protocol.receive_data(client_frame(2, ended, fin=False, rsv=0x40))
    protocol.receive_data(client_frame(0, b"\x01\x02\x03"))
    assert protocol.failure_code == 1007
    assert protocol.messages == []


def test_corrupt_compressed_data_fails_the_connection() -> None:
    protocol = _deflate_protocol()
    protocol.receive_data(client_frame(2, b"\xff\xff\xff\xff", rsv=0x40))
    assert protocol.failure_code == 1007


# -- property: any fragmentation and any chunking give back the same messages -------------------

messages_strategy = st.lists(st.one_of(st.text(max_size=300), st.binary(max_size=300)), max_size=8)


@settings(max_examples=60, deadline=None)
@given(messages=messages_strategy, fragment_size=st.integers(1, 50), chunk=st.integers(1, 97))
def test_roundtrip_under_any_fragmentation_and_chunking(
    messages: list[str | bytes], fragment_size: int, chunk: int
) -> None:
    wire = b""
    for message in messages:
        payload = message.encode() if isinstance(message, str) else message
        opcode = 1 if isinstance(message, str) else 2
        pieces = [payload[i : i + fragment_size] for i in range(0, len(payload), fragment_size)]
        pieces = pieces or [b""]
        for index, piece in enumerate(pieces):
            wire += client_frame(opcode if index == 0 else 0, piece, fin=index == len(pieces) - 1)
            if index == 0:
                wire += client_frame(9, b"p")
    protocol = WebSocketProtocol()
    for start in range(0, len(wire), chunk):
        protocol.receive_data(wire[start : start + chunk])
    assert protocol.messages == messages
    assert protocol.state == State.OPEN


def test_command_line_flags_reach_the_websocket_settings() -> None:
    from headrace.server.cli import parse_config
    from headrace.server.settings import ProtocolSettings

    config = parse_config(
        [
            "--no-ws-per-message-deflate",
            "--websocket-max-message-size",
            "16MiB",
            "--websocket-max-frame-size",
            "0",
            "--websocket_connect_timeout",
            "-1",
            "--websocket-receive-queue",
            "4",
            "--ping-interval",
            "7",
            "app:app",
        ]
    )
    settings = ProtocolSettings.from_config(config).websocket
    assert not settings.deflate.enabled
    assert settings.max_message_size == 16 * 1024 * 1024
    assert settings.max_frame_size == 0
    assert settings.connect_timeout == -1
    assert settings.receive_queue == 4
    assert settings.ping_interval == 7
    assert ProtocolSettings.from_config(parse_config(["app:app"])).websocket.deflate.enabled


@settings(max_examples=200, deadline=None)
@given(chunks=st.lists(st.binary(max_size=64), max_size=10), deflate=st.booleans())
def test_arbitrary_bytes_never_raise(chunks: list[bytes], deflate: bool) -> None:
    """Garbage from the network only ever ends in a documented close code."""
    params = negotiate_deflate([b"permessage-deflate"], DeflateConfig()) if deflate else None
    protocol = WebSocketProtocol(max_message_size=1000, max_frame_size=500, deflate=params)
    for chunk in chunks:
        protocol.receive_data(chunk)
        protocol.data_to_send()
    assert protocol.failure_code in (None, 1002, 1007, 1009)


def test_message_exactly_at_the_limit_passes_and_one_more_byte_fails() -> None:
    protocol = WebSocketProtocol(max_message_size=200, max_frame_size=200)
    protocol.receive_data(client_frame(2, b"x" * 200))
    assert protocol.messages == [b"x" * 200]
    protocol.receive_data(client_frame(2, b"x" * 201))
    assert protocol.failure_code == 1009
