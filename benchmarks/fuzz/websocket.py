"""Fuzz the I/O-free WebSocket codec with atheris (libFuzzer): any bytes in, documented results out.

Not a test: a long-running harness. Run it bounded, e.g.::

    pip install atheris
    python3 benchmarks/fuzz/websocket.py --write-seeds /tmp/ws-corpus
    python3 benchmarks/fuzz/websocket.py -max_total_time=300 -rss_limit_mb=2048 /tmp/ws-corpus
    python3 benchmarks/fuzz/websocket.py -runs=1 CRASH_FILE     # replay one finding

The first byte of each input chooses the mode and the configuration:

- bit 0x80 set: **handshake** mode. The rest is split into header lines (``name: value``) and
  given to ``validate_request`` (only ``HandshakeError`` with status 400/426 may come out); a
  valid handshake's extension offers go through ``negotiate_deflate`` (must not raise; an
  accepted offer must name window bits 8..15) and ``accept_response_head``.
- otherwise **framing** mode: a server-side ``WebSocketProtocol`` with permessage-deflate
  (bit 0x01; 0x02 adds ``client_no_context_takeover``, 0x04 ``server_no_context_takeover``) and
  small (bit 0x08: 300/200 bytes) or default (1 MiB) message/frame limits, the frame limit off
  (bit 0x10), the message limit off (bit 0x20). The second byte chooses how the rest is cut
  into ``receive_data`` calls. Checked after every call:

  - nothing escapes ``receive_data`` (any exception is a finding);
  - ``failure_code`` is None or a documented code: 1002, 1007, 1009;
  - every received message is ``str`` or ``bytes`` within the message size limit, and none
    arrives after the connection failed;
  - every byte from ``data_to_send`` parses as unmasked server frames: pongs and at most one close
    frame with a valid code and a UTF-8 reason, all control payloads ≤ 125 bytes;
  - each received message is echoed with ``encode_message`` and decodes back (inflated by a
    reference zlib decoder when compressed) to the same message.
"""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from headrace.server.protocols import websocket as ws

DOCUMENTED_FAILURES = frozenset({None, 1002, 1007, 1009})
CONTROL_OPCODES = frozenset({0x8, 0x9, 0xA})
DEFLATE_TAIL = b"\x00\x00\xff\xff"


class FindingError(AssertionError):
    """An input made the codec misbehave."""


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise FindingError(message)


# -- framing mode -------------------------------------------------------------------------------


def _offer(flags: int) -> bytes:
    parts = [b"permessage-deflate"]
    if flags & 0x02:
        parts.append(b"client_no_context_takeover")
    if flags & 0x04:
        parts.append(b"server_no_context_takeover")
    return b"; ".join(parts)


def _server_frames(data: bytes) -> list[tuple[int, bytes]]:
    frames = []
    position = 0
    while position < len(data):
        _check(len(data) - position >= 2, "truncated server frame head")
        first, second = data[position], data[position + 1]
        _check(not second & 0x80, "server frame is masked")
        length = second & 0x7F
        position += 2
        if length == 126:
            (length,) = struct.unpack("!H", data[position : position + 2])
            position += 2
        elif length == 127:
            (length,) = struct.unpack("!Q", data[position : position + 8])
            position += 8
        payload = data[position : position + length]
        _check(len(payload) == length, "truncated server frame payload")
        position += length
        frames.append((first, payload))
    return frames


class EchoChecker:
    """Decodes what the server sends back, as a client would."""

    def __init__(self, params: ws.DeflateParams | None) -> None:
        self.params = params
        self.inflater = zlib.decompressobj(-15)

    def decode(self, frame: bytes) -> str | bytes:
        [(first, payload)] = _server_frames(frame)
        _check(first & 0x80 != 0, "echo frame without FIN")
        if first & 0x40:
            _check(self.params is not None, "RSV1 without permessage-deflate")
            assert self.params is not None
            if self.params.server_no_context_takeover:
                self.inflater = zlib.decompressobj(-15)
            payload = self.inflater.decompress(payload + DEFLATE_TAIL)
        opcode = first & 0x0F
        _check(opcode in (0x1, 0x2), f"echo frame with opcode {opcode}")
        return payload.decode("utf-8") if opcode == 0x1 else payload


def _check_control_output(data: bytes, closes_seen: int) -> int:
    for first, payload in _server_frames(data):
        opcode = first & 0x0F
        _check(first & 0x70 == 0, "RSV bits on a control frame")
        _check(opcode in (0x8, 0xA), f"unexpected opcode {opcode} from the protocol itself")
        _check(len(payload) <= 125, "control payload over 125 bytes")
        if opcode == 0x8:
            closes_seen += 1
            _check(closes_seen == 1, "more than one close frame")
            _check(len(payload) != 1, "one-byte close payload")
            if payload:
                (code,) = struct.unpack("!H", payload[:2])
                _check(ws.is_valid_close_code(code), f"invalid close code {code} sent")
                payload[2:].decode("utf-8")
    return closes_seen


def _chunks(data: bytes, seed: int) -> list[bytes]:
    sizes = (1, 2, 3, 7, 64, 1000)
    if seed % 7 == 0:
        return [data]
    pieces = []
    position = 0
    index = seed
    while position < len(data):
        size = sizes[index % len(sizes)]
        pieces.append(data[position : position + size])
        position += size
        index = index * 5 + 3
    return pieces


def fuzz_framing(flags: int, split_seed: int, data: bytes) -> None:
    params = None
    if flags & 0x01:
        params = ws.negotiate_deflate([_offer(flags)], ws.DeflateConfig())
        _check(params is not None, "our own offer was declined")
    message_limit, frame_limit = (300, 200) if flags & 0x08 else (1 << 20, 1 << 20)
    if flags & 0x10:
        frame_limit = 0  # only the message limit (and the compressed-frame bound) holds
    if flags & 0x20:
        message_limit = 0  # unlimited messages
    protocol = ws.WebSocketProtocol(
        max_message_size=message_limit, max_frame_size=frame_limit, deflate=params
    )
    echo = EchoChecker(params)
    closes_seen = 0
    for chunk in _chunks(data, split_seed):
        failed_before = protocol.failure_code is not None
        protocol.receive_data(chunk)
        _check(protocol.failure_code in DOCUMENTED_FAILURES, f"code {protocol.failure_code}")
        _check(not (failed_before and protocol.messages), "message after failure")
        for message in protocol.messages:
            _check(isinstance(message, (str, bytes)), "message of a strange type")
            size = len(message.encode("utf-8")) if isinstance(message, str) else len(message)
            _check(not message_limit or size <= message_limit, f"{size} bytes passed the limit")
            _check(echo.decode(protocol.encode_message(message)) == message, "echo differs")
        protocol.messages.clear()
        closes_seen = _check_control_output(protocol.data_to_send(), closes_seen)


# -- handshake mode -----------------------------------------------------------------------------


def _headers(data: bytes) -> list[tuple[bytes, bytes]]:
    headers = []
    for line in data.split(b"\n"):
        name, _, value = line.partition(b":")
        headers.append((name.strip().lower(), value.strip()))
    return headers


def fuzz_handshake(flags: int, data: bytes) -> None:
    method = (b"GET", b"CONNECT", b"POST", b"get")[flags & 0x03]
    try:
        request = ws.validate_request(method, _headers(data), http2=bool(flags & 0x04))
    except ws.HandshakeError as error:
        _check(error.status in (400, 426), f"handshake status {error.status}")
        return
    config = ws.DeflateConfig(enabled=not flags & 0x08)
    params = ws.negotiate_deflate(request.extension_offers, config)
    if params is not None:
        _check(8 <= params.server_max_window_bits <= 15, "server window bits out of range")
        _check(8 <= params.client_max_window_bits <= 15, "client window bits out of range")
        params.response_value.decode("ascii")
    if request.key is not None:
        head = ws.accept_response_head(request.key, [])
        _check(head.startswith(b"HTTP/1.1 101 "), "bad 101 head")


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    flags = data[0]
    if flags & 0x80:
        fuzz_handshake(flags, data[1:])
    else:
        fuzz_framing(flags, data[1], data[2:])


# -- seeds --------------------------------------------------------------------------------------


def _frame(opcode: int, payload: bytes, fin: bool = True, rsv: int = 0) -> bytes:
    first = (0x80 if fin else 0) | rsv | opcode
    mask = b"\x37\xfa\x21\x3d"
    length = len(payload)
    if length < 126:
        head = bytes((first, 0x80 | length))
    elif length < 65536:
        head = struct.pack("!BBH", first, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, length)
    return head + mask + ws.apply_mask(payload, mask)


def _deflated(payload: bytes, compressor: zlib._Compress) -> bytes:
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return data[:-4]


def write_seeds(directory: Path) -> None:
    """A starting corpus: valid traffic of every kind, so the fuzzer mutates from there."""
    directory.mkdir(parents=True, exist_ok=True)
    compressor = zlib.compressobj(wbits=-15)
    compressed = _deflated(b"hello hello hello " * 20, compressor)
    seeds = {
        "text": b"\x00\x00" + _frame(1, "héllo".encode()),
        "binary-16bit": b"\x00\x03" + _frame(2, b"\x00" * 300),
        "fragments-ping": b"\x08\x05"
        + _frame(1, b"frag", fin=False)
        + _frame(9, b"ping")
        + _frame(0, b"ment"),
        "close": b"\x00\x01" + _frame(8, struct.pack("!H", 1000) + b"bye"),
        "deflate": b"\x01\x02" + _frame(1, compressed, rsv=0x40),
        "deflate-fragmented": b"\x03\x04"
        + _frame(2, compressed[:9], fin=False, rsv=0x40)
        + _frame(0, compressed[9:]),
        "deflate-small": b"\x0d\x06" + _frame(2, _deflated(b"\x00" * 5000, compressor), rsv=0x40),
        "deflate-no-frame-limit": b"\x19\x06"
        + _frame(2, _deflated(bytes(range(256)) * 2, compressor), rsv=0x40),
        "unlimited": b"\x30\x01" + _frame(2, b"\x01" * 200, fin=False) + _frame(0, b"\x02" * 9),
        "handshake": b"\x80upgrade: websocket\nconnection: Upgrade\n"
        b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\nsec-websocket-version: 13\n"
        b"sec-websocket-extensions: permessage-deflate; client_max_window_bits, "
        b"permessage-deflate; server_max_window_bits=10\nsec-websocket-protocol: chat, v2",
        "handshake-h2": b"\x85sec-websocket-version: 13\n"
        b'sec-websocket-extensions: permessage-deflate; client_max_window_bits="9"',
    }
    for name, data in seeds.items():
        (directory / name).write_bytes(data)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--write-seeds":
        write_seeds(Path(sys.argv[2]))
        return
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
