"""WebSocket wire protocol (RFC 6455, RFC 7692), free of I/O.

Theory of operation
-------------------
This module turns bytes into WebSocket messages and messages into bytes; it never touches a
socket, never imports asyncio and never builds ASGI dicts. The stream layer
(``headrace.server.streams.websocket``) drives it.

Handshake. :func:`validate_request` checks an HTTP/1.1 upgrade request (RFC 6455 §4.2.1) or an
HTTP/2 extended CONNECT (RFC 8441, no key) and raises :class:`HandshakeError` carrying the HTTP
status (400, or 426 for a wrong version) instead of letting a malformed request reach the app.
Header values holding control bytes are refused (CVE-2026-44546). :func:`negotiate_deflate` picks
the first acceptable ``permessage-deflate`` offer (RFC 7692 §7) and :func:`accept_response_head`
builds the ``101 Switching Protocols`` head.

Framing. :class:`WebSocketProtocol` is one connection's state machine. ``receive_data(bytes)``
parses as many complete frames as the buffer holds. Every frame header is validated as soon as
its first bytes arrive, *before* the payload is awaited, so an oversized frame or message is
refused with 1009 on its announced length and never buffered (CVE-2026-44545). Completed messages
are appended to ``messages``: a ``str`` is a text message, a ``bytes`` a binary one (no per-message
wrapper objects). Pings are answered and close frames replied to by the protocol itself; those
reply bytes collect in an outgoing buffer read with ``data_to_send()``. A protocol violation
"fails the connection": a close frame with the right code (1002 protocol, 1007 bad UTF-8 or bad
compressed data, 1009 too big) is queued, ``failure_code`` is set and further input is ignored.
After a close frame has been received, input is ignored too (RFC 6455 §5.5.1).

Compression. With permessage-deflate negotiated, messages with RSV1 set are inflated frame by
frame with ``zlib`` directly, bounded by the remaining message budget so the size limit applies
to the *decompressed* size. Outgoing messages shorter than ``compress_min_size`` are sent
uncompressed (allowed per message by RFC 7692 §6.1); zlib objects are created lazily, so an
idle connection pays nothing for them.

States: OPEN → CLOSING (we sent close) → CLOSED (close sent and received), or OPEN →
CLOSE_RECEIVED → CLOSED once the reply is written. ``FAILED`` ends everything.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import struct
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from headrace.server.protocols.fields import check_response_field
from headrace.server.protocols.websocket_settings import DeflateConfig

_c_apply_mask: Callable[[bytes, bytes], bytes] | None
try:
    from websockets.speedups import apply_mask as _c_apply_mask
except ImportError:  # pragma: no cover - depends on the installed wheel
    _c_apply_mask = None

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_INTERNAL_ERROR",
    "CLOSE_INVALID_DATA",
    "CLOSE_NORMAL",
    "CLOSE_NO_STATUS",
    "CLOSE_PROTOCOL_ERROR",
    "CLOSE_TOO_BIG",
    "DeflateConfig",
    "DeflateParams",
    "HandshakeError",
    "HandshakeRequest",
    "State",
    "WebSocketProtocol",
    "accept_key",
    "accept_response_head",
    "apply_mask",
    "check_header_values",
    "check_response_fields",
    "is_valid_close_code",
    "negotiate_deflate",
    "validate_request",
]

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_NO_STATUS = 1005
CLOSE_ABNORMAL = 1006
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011

_RSV1 = 0x40
_RSV_ALL = 0x70
_DEFLATE_TAIL = b"\x00\x00\xff\xff"
_MAX_CONTROL_PAYLOAD = 125


def _apply_mask_python(data: bytes, mask: bytes) -> bytes:
    size = len(data)
    if size == 0:
        return b""
    repeated = (mask * (size // 4 + 1))[:size]
    value = int.from_bytes(data, "little") ^ int.from_bytes(repeated, "little")
    return value.to_bytes(size, "little")


def apply_mask(data: bytes, mask: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` (C helper from websockets when available)."""
    if _c_apply_mask is not None:
        return bytes(_c_apply_mask(data, mask))
    return _apply_mask_python(data, mask)


_unmask = _c_apply_mask if _c_apply_mask is not None else _apply_mask_python


def is_valid_close_code(code: int) -> bool:
    """Codes a peer may put on the wire (RFC 6455 §7.4, IANA registry)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


# ---------------------------------------------------------------------------------------------
# Handshake
# ---------------------------------------------------------------------------------------------


class HandshakeError(Exception):
    """A request that must be answered with an HTTP error instead of reaching the app."""

    def __init__(
        self, status: int, message: str, headers: Sequence[tuple[bytes, bytes]] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = list(headers)


@dataclass(slots=True)
class HandshakeRequest:
    """What a valid opening handshake asked for."""

    key: bytes | None
    subprotocols: list[str]
    extension_offers: list[bytes]


_CONTROL_BYTES = frozenset(range(0x20)) - {0x09} | {0x7F}
_CONTROL_TABLE = bytes(range(256))
_CONTROL_DELETE = bytes(sorted(_CONTROL_BYTES))


def _has_control_bytes(value: bytes) -> bool:
    return len(value.translate(_CONTROL_TABLE, _CONTROL_DELETE)) != len(value)


def check_header_values(headers: Iterable[tuple[bytes, bytes]]) -> None:
    """Refuse header names or values carrying control bytes (CR, LF, NUL, DEL...)."""
    for name, value in headers:
        if _has_control_bytes(name) or _has_control_bytes(value):
            raise HandshakeError(400, "control character in a header")


def check_response_fields(headers: Iterable[tuple[bytes, bytes]]) -> None:
    """Refuse response fields an application sent that no wire may send (see :mod:`.fields`)."""
    for name, value in headers:
        check_response_field(name, value)


def _header_tokens(headers: Sequence[tuple[bytes, bytes]], wanted: bytes) -> list[bytes]:
    tokens: list[bytes] = []
    for name, value in headers:
        if name.lower() == wanted:
            tokens.extend(part.strip() for part in value.split(b",") if part.strip())
    return tokens


def _header_values(headers: Sequence[tuple[bytes, bytes]], wanted: bytes) -> list[bytes]:
    return [value for name, value in headers if name.lower() == wanted]


def _check_key(headers: Sequence[tuple[bytes, bytes]]) -> bytes:
    keys = _header_values(headers, b"sec-websocket-key")
    if len(keys) != 1:
        raise HandshakeError(400, "exactly one Sec-WebSocket-Key header is required")
    key = keys[0].strip()
    try:
        decoded = base64.b64decode(key, validate=True)
    except binascii.Error:
        decoded = b""
    if len(decoded) != 16:
        raise HandshakeError(400, "Sec-WebSocket-Key is not 16 bytes in base64")
    return key


def _check_version(headers: Sequence[tuple[bytes, bytes]]) -> None:
    versions = _header_tokens(headers, b"sec-websocket-version")
    if versions != [b"13"]:
        raise HandshakeError(
            426, "Sec-WebSocket-Version 13 is required", [(b"sec-websocket-version", b"13")]
        )


def validate_request(
    method: bytes, headers: Sequence[tuple[bytes, bytes]], *, http2: bool = False
) -> HandshakeRequest:
    """Validate an opening handshake; raise :class:`HandshakeError` (400/426) when invalid.

    ``http2=True`` checks an RFC 8441 extended CONNECT (the caller checked ``:protocol``):
    there is no Upgrade/Connection pair and no key.
    """
    check_header_values(headers)
    if http2:
        if method != b"CONNECT":
            raise HandshakeError(400, "WebSocket over HTTP/2 needs the CONNECT method")
        key = None
    else:
        if method != b"GET":
            raise HandshakeError(400, "WebSocket handshake needs the GET method")
        if b"websocket" not in (t.lower() for t in _header_tokens(headers, b"upgrade")):
            raise HandshakeError(400, "Upgrade: websocket is required")
        if b"upgrade" not in (t.lower() for t in _header_tokens(headers, b"connection")):
            raise HandshakeError(400, "Connection: upgrade is required")
        key = _check_key(headers)
    _check_version(headers)
    subprotocols = [
        token.decode("latin-1") for token in _header_tokens(headers, b"sec-websocket-protocol")
    ]
    offers = _header_values(headers, b"sec-websocket-extensions")
    return HandshakeRequest(key=key, subprotocols=subprotocols, extension_offers=offers)


def accept_key(key: bytes) -> bytes:
    """The Sec-WebSocket-Accept value for a client key (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def accept_response_head(
    key: bytes, headers: Sequence[tuple[bytes, bytes]], server_header: bytes | None = None
) -> bytes:
    """The ``101 Switching Protocols`` response head, ``headers`` already validated."""
    lines = [
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_key(key) + b"\r\n"
    ]
    if server_header:
        lines.append(b"Server: " + server_header + b"\r\n")
    lines.extend(name + b": " + value + b"\r\n" for name, value in headers)
    lines.append(b"\r\n")
    return b"".join(lines)


# ---------------------------------------------------------------------------------------------
# permessage-deflate negotiation (RFC 7692 §7)
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class DeflateParams:
    """The agreed parameters, from the server's point of view."""

    server_no_context_takeover: bool
    client_no_context_takeover: bool
    server_max_window_bits: int
    client_max_window_bits: int
    response_value: bytes
    memory_level: int = 5
    compression_level: int = 6
    compress_min_size: int = 128


class _DeclinedOffer(Exception):
    """This permessage-deflate offer cannot be accepted; try the next one."""


def _split_quoted(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _parse_extension_offers(values: Sequence[bytes]) -> list[tuple[str, list[tuple[str, str]]]]:
    offers: list[tuple[str, list[tuple[str, str]]]] = []
    for value in values:
        for item in _split_quoted(value.decode("latin-1"), ","):
            pieces = [piece.strip() for piece in _split_quoted(item, ";")]
            if not pieces[0]:
                continue
            params = []
            for piece in pieces[1:]:
                name, _, param_value = piece.partition("=")
                params.append((name.strip().lower(), param_value.strip().strip('"')))
            offers.append((pieces[0].lower(), params))
    return offers


def _window_bits(value: str) -> int:
    # isascii(): str.isdigit() also accepts digits int() refuses, such as "¹" (latin-1 0xB9).
    if not (value.isascii() and value.isdigit()) or value.startswith("0"):
        raise _DeclinedOffer(f"bad window bits {value!r}")
    if not 8 <= int(value) <= 15:
        raise _DeclinedOffer(f"bad window bits {value!r}")
    return int(value)


def _accept_offer(params: list[tuple[str, str]], config: DeflateConfig) -> DeflateParams:
    seen: dict[str, str] = {}
    for name, value in params:
        if name in seen:
            raise _DeclinedOffer(f"duplicate {name}")
        seen[name] = value
    allowed = {
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
    }
    if set(seen) - allowed:
        raise _DeclinedOffer("unknown parameter")
    for flag in ("server_no_context_takeover", "client_no_context_takeover"):
        if seen.get(flag):
            raise _DeclinedOffer(f"{flag} takes no value")
    response = ["permessage-deflate"]
    server_nct = "server_no_context_takeover" in seen
    client_nct = "client_no_context_takeover" in seen
    if server_nct:
        response.append("server_no_context_takeover")
    if client_nct:
        response.append("client_no_context_takeover")
    server_bits = config.server_max_window_bits
    if "server_max_window_bits" in seen:
        server_bits = min(_window_bits(seen["server_max_window_bits"]), server_bits)
        response.append(f"server_max_window_bits={server_bits}")
    client_bits = 15
    if "client_max_window_bits" in seen:
        offered = seen["client_max_window_bits"]
        client_bits = config.client_max_window_bits
        if offered:
            client_bits = min(client_bits, _window_bits(offered))
        response.append(f"client_max_window_bits={client_bits}")
    return DeflateParams(
        server_no_context_takeover=server_nct,
        client_no_context_takeover=client_nct,
        server_max_window_bits=server_bits,
        client_max_window_bits=client_bits,
        response_value="; ".join(response).encode("ascii"),
        memory_level=config.memory_level,
        compression_level=config.compression_level,
        compress_min_size=config.compress_min_size,
    )


def negotiate_deflate(offers: Sequence[bytes], config: DeflateConfig) -> DeflateParams | None:
    """Accept the first acceptable permessage-deflate offer, or None.

    A request for ``server_max_window_bits=8`` is accepted (zlib cannot deflate with an 8-bit
    window, so this connection sends its messages uncompressed, which RFC 7692 allows).
    """
    if not config.enabled:
        return None
    for name, params in _parse_extension_offers(offers):
        if name != "permessage-deflate":
            continue
        try:
            return _accept_offer(params, config)
        except _DeclinedOffer:
            continue
    return None


# ---------------------------------------------------------------------------------------------
# Framing
# ---------------------------------------------------------------------------------------------


class State:
    OPEN = 0
    CLOSING = 1  # we sent close, waiting for the peer's
    CLOSE_RECEIVED = 2  # peer sent close, our reply is queued
    CLOSED = 3
    FAILED = 4


class _ProtocolViolation(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _frame_head(first_byte: int, length: int) -> bytes:
    if length < 126:
        return bytes((first_byte, length))
    if length < 65536:
        return struct.pack("!BBH", first_byte, 126, length)
    return struct.pack("!BBQ", first_byte, 127, length)


def _compressed_bound(size: int) -> int:
    """More than any DEFLATE encoding of ``size`` bytes takes (stored blocks add 5 per 64 KiB)."""
    return size + (size >> 6) + 1024


def close_payload(code: int, reason: str) -> bytes:
    """A close frame body: the code and a reason cut to fit 125 bytes on a character boundary."""
    if code == CLOSE_NO_STATUS:
        return b""
    encoded = reason.encode("utf-8")
    if len(encoded) > _MAX_CONTROL_PAYLOAD - 2:
        encoded = encoded[: _MAX_CONTROL_PAYLOAD - 2].decode("utf-8", "ignore").encode("utf-8")
    return struct.pack("!H", code) + encoded


class WebSocketProtocol:
    """One server-side WebSocket connection's framing state machine."""

    __slots__ = (
        "_buffer",
        "_compressor",
        "_decompressor",
        "_deflate",
        "_fragments",
        "_frame_limit",
        "_message_compressed",
        "_message_limit",
        "_message_opcode",
        "_message_size",
        "_need",
        "_outgoing",
        "_small_frame_limit",
        "_text_parts",
        "_utf8",
        "close_code",
        "close_reason",
        "failure_code",
        "messages",
        "state",
    )

    def __init__(
        self,
        *,
        max_message_size: int = 1 << 20,
        max_frame_size: int = 1 << 20,
        deflate: DeflateParams | None = None,
    ) -> None:
        self._message_limit = max_message_size
        self._frame_limit = max_frame_size
        self._deflate = deflate
        self._compressor: zlib._Compress | None = None
        self._decompressor: zlib._Decompress | None = None
        self._buffer = bytearray()
        self._need = 0
        limits = [limit for limit in (max_message_size, max_frame_size) if limit]
        self._small_frame_limit = min([125, *limits])
        self._outgoing: list[bytes] = []
        self._message_opcode = 0
        self._message_compressed = False
        self._message_size = 0
        self._fragments: list[bytes] = []
        self._text_parts: list[str] = []
        self._utf8: codecs.IncrementalDecoder | None = None
        self.messages: list[str | bytes] = []
        self.state = State.OPEN
        self.close_code: int | None = None
        self.close_reason = ""
        self.failure_code: int | None = None

    # -- input ------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> bool:
        """Parse ``data``; completed messages land in ``messages``, replies in the outbox.

        Returns whether the outbox holds bytes for :meth:`data_to_send` (pongs, close frames),
        so a caller can skip that call for plain data frames.
        """
        if self.state >= State.CLOSE_RECEIVED:
            return bool(self._outgoing)
        buffer = self._buffer
        if buffer:
            buffer += data
            if len(buffer) < self._need:
                return False
            data = bytes(buffer)
            self._buffer = bytearray()
        elif self._receive_small_frame(data):
            return bool(self._outgoing)
        try:
            self._parse(data)
        except _ProtocolViolation as violation:
            self._fail(violation.code, violation.reason)
        return bool(self._outgoing)

    def _parse(self, data: bytes) -> None:
        position = 0
        end = len(data)
        while position < end:
            if end - position < 2:
                self._keep(data, position, 2)
                return
            first = data[position]
            second = data[position + 1]
            length = second & 0x7F
            head = 6
            if length == 126:
                head = 8
                if end - position < 4:
                    self._keep(data, position, 4)
                    return
                length = (data[position + 2] << 8) | data[position + 3]
            elif length == 127:
                head = 14
                if end - position < 10:
                    self._keep(data, position, 10)
                    return
                length = int.from_bytes(data[position + 2 : position + 10], "big")
            self._check_header(first, second, length)
            if end - position < head + length:
                self._keep(data, position, head + length)
                return
            mask = data[position + head - 4 : position + head]
            start = position + head
            position = start + length
            payload = _unmask(data[start:position], mask) if length else b""
            self._on_frame(first, payload)
            if self.state >= State.CLOSE_RECEIVED:
                return

    def _receive_small_frame(self, data: bytes) -> bool:
        """Fast path: ``data`` is exactly one small, whole, uncompressed message frame."""
        size = len(data)
        if size < 6 or size > self._small_frame_limit + 6 or self._message_opcode:
            return False
        first = data[0]
        if (first != 0x81 and first != 0x82) or data[1] != 0x80 + size - 6:
            return False
        payload = _unmask(data[6:], data[2:6])
        if first == 0x82:
            self.messages.append(payload)
            return True
        try:
            self.messages.append(payload.decode("utf-8"))
        except UnicodeDecodeError:
            self._fail(CLOSE_INVALID_DATA, "invalid UTF-8")
        return True

    def _keep(self, data: bytes, position: int, need: int) -> None:
        self._buffer = bytearray(data[position:])
        self._need = need

    def _check_header(self, first: int, second: int, length: int) -> None:
        """Validate a frame from its header alone, before any payload is buffered."""
        opcode = first & 0x0F
        rsv = first & _RSV_ALL
        if not second & 0x80:
            raise _ProtocolViolation(CLOSE_PROTOCOL_ERROR, "client frames must be masked")
        if length >> 63:
            raise _ProtocolViolation(CLOSE_PROTOCOL_ERROR, "invalid frame length")
        if opcode >= 8:
            if opcode > OP_PONG:
                raise _ProtocolViolation(CLOSE_PROTOCOL_ERROR, "reserved opcode")
            if not first & 0x80 or length > _MAX_CONTROL_PAYLOAD or rsv:
                raise _ProtocolViolation(CLOSE_PROTOCOL_ERROR, "invalid control frame")
            return
        if opcode == OP_CONTINUATION:
            if not self._message_opcode:
                raise _ProtocolViolation(CLOSE_PROTOCOL_ERROR, "unexpected continuation")
            if rsv:
                raise _ProtocolViolation(CLOSE_PROTOCOL_ERROR, "reserved bits set")
        elif opcode <= OP_BINARY:
            if self._message_opcode:
                raise _ProtocolViolation(CLOSE_PROTOCOL_ERROR, "expected a continuation")
            if rsv and (rsv != _RSV1 or self._deflate is None):
                raise _ProtocolViolation(CLOSE_PROTOCOL_ERROR, "reserved bits set")
        else:
            raise _ProtocolViolation(CLOSE_PROTOCOL_ERROR, "reserved opcode")
        self._check_size(first, length)

    def _check_size(self, first: int, length: int) -> None:
        if self._frame_limit and length > self._frame_limit:
            raise _ProtocolViolation(CLOSE_TOO_BIG, "frame too big")
        limit = self._message_limit
        if not limit:
            return
        compressed = self._message_compressed if first & 0x0F == 0 else bool(first & _RSV1)
        if compressed:
            # The decompressed size is checked while inflating; this bounds what is buffered
            # before inflating when the frame limit is off (deflate never grows data this much).
            if length > _compressed_bound(limit):
                raise _ProtocolViolation(CLOSE_TOO_BIG, "message too big")
        elif self._message_size + length > limit:
            raise _ProtocolViolation(CLOSE_TOO_BIG, "message too big")

    def _on_frame(self, first: int, payload: bytes) -> None:
        opcode = first & 0x0F
        if opcode >= 8:
            self._on_control(opcode, payload)
            return
        fin = first & 0x80
        if opcode:
            if fin and not first & _RSV1:
                self._on_whole_message(opcode, payload)
                return
            self._message_opcode = opcode
            self._message_compressed = bool(first & _RSV1)
            self._message_size = 0
        self._on_fragment(payload, bool(fin))

    def _on_whole_message(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_TEXT:
            try:
                self.messages.append(payload.decode("utf-8"))
            except UnicodeDecodeError:
                raise _ProtocolViolation(CLOSE_INVALID_DATA, "invalid UTF-8") from None
        else:
            self.messages.append(payload)

    def _on_fragment(self, payload: bytes, fin: bool) -> None:
        if self._message_compressed:
            payload = self._inflate(payload, fin)
        self._message_size += len(payload)
        if self._message_limit and self._message_size > self._message_limit:
            raise _ProtocolViolation(CLOSE_TOO_BIG, "message too big")
        if self._message_opcode == OP_TEXT:
            self._on_text_fragment(payload, fin)
        else:
            self._fragments.append(payload)
            if fin:
                self.messages.append(b"".join(self._fragments))
        if fin and self._message_compressed:
            decompressor = self._decompressor
            if decompressor is not None and decompressor.eof:
                self._restart_inflater()
        if fin:
            self._fragments = []
            self._text_parts = []
            self._message_opcode = 0
            self._message_compressed = False
            self._message_size = 0

    def _on_text_fragment(self, payload: bytes, fin: bool) -> None:
        if self._utf8 is None:
            self._utf8 = codecs.getincrementaldecoder("utf-8")("strict")
        try:
            text = self._utf8.decode(payload, fin)
        except UnicodeDecodeError:
            raise _ProtocolViolation(CLOSE_INVALID_DATA, "invalid UTF-8") from None
        self._text_parts.append(text)
        if fin:
            self._utf8.reset()
            self.messages.append("".join(self._text_parts))

    def _inflate(self, payload: bytes, fin: bool) -> bytes:
        deflate = self._deflate
        assert deflate is not None  # RSV1 is refused in _check_header without deflate
        decompressor = self._decompressor
        if decompressor is None:
            decompressor = self._decompressor = zlib.decompressobj(self._inflate_wbits())
        elif decompressor.eof and payload:
            # A block with BFINAL ended the DEFLATE stream earlier in this message.
            raise _ProtocolViolation(CLOSE_INVALID_DATA, "data after the end of compressed data")
        if fin:
            payload += _DEFLATE_TAIL
        limit = self._message_limit
        try:
            if limit:
                budget = limit - self._message_size
                output = decompressor.decompress(payload, budget + 1)
                if len(output) > budget or decompressor.unconsumed_tail:
                    raise _ProtocolViolation(CLOSE_TOO_BIG, "message too big")
            else:
                output = decompressor.decompress(payload)
        except zlib.error:
            raise _ProtocolViolation(CLOSE_INVALID_DATA, "invalid compressed data") from None
        if fin and deflate.client_no_context_takeover:
            self._decompressor = None
        return output

    def _inflate_wbits(self) -> int:
        assert self._deflate is not None
        return -max(self._deflate.client_max_window_bits, 9)

    def _restart_inflater(self) -> None:
        """The message just inflated ended its DEFLATE stream with a BFINAL block.

        RFC 7692 §7.2.3.5 allows that instead of a flush; the next message then starts a new
        stream. With context takeover it may still refer back to earlier bytes: this message's
        tail seeds the new window (a reference further back fails the connection with 1007).
        """
        last = self.messages[-1]
        message = last.encode("utf-8") if isinstance(last, str) else last
        wbits = self._inflate_wbits()
        window = message[-(1 << -wbits) :]
        self._decompressor = zlib.decompressobj(wbits, zdict=window) if window else None

    def _on_control(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            if self.state == State.OPEN:
                self._outgoing.append(_frame_head(0x80 | OP_PONG, len(payload)) + payload)
        elif opcode == OP_CLOSE:
            self._on_close(payload)

    def _on_close(self, payload: bytes) -> None:
        code, reason = self._parse_close(payload)
        self.close_code = code
        self.close_reason = reason
        if self.state == State.OPEN:
            reply = CLOSE_NORMAL if code == CLOSE_NO_STATUS else code
            self._outgoing.append(self._close_frame(reply, ""))
            self.state = State.CLOSE_RECEIVED
        else:
            self.state = State.CLOSED

    @staticmethod
    def _parse_close(payload: bytes) -> tuple[int, str]:
        if not payload:
            return CLOSE_NO_STATUS, ""
        if len(payload) == 1:
            raise _ProtocolViolation(CLOSE_PROTOCOL_ERROR, "truncated close code")
        code = (payload[0] << 8) | payload[1]
        if not is_valid_close_code(code):
            raise _ProtocolViolation(CLOSE_PROTOCOL_ERROR, "invalid close code")
        try:
            reason = payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            raise _ProtocolViolation(CLOSE_INVALID_DATA, "invalid UTF-8 in close reason") from None
        return code, reason

    def _fail(self, code: int, reason: str) -> None:
        if self.state == State.OPEN:
            self._outgoing.append(self._close_frame(code, reason))
        self.state = State.FAILED
        self.failure_code = code
        self.close_code = code
        self.close_reason = reason
        self._buffer = bytearray()
        self._fragments = []
        self._text_parts = []

    # -- output -----------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Bytes the protocol produced itself (pongs, close replies, error closes)."""
        if not self._outgoing:
            return b""
        data = b"".join(self._outgoing)
        self._outgoing.clear()
        if self.state == State.CLOSE_RECEIVED:
            self.state = State.CLOSED
        return data

    def encode_message(self, message: str | bytes) -> bytes:
        """One frame carrying ``message`` (``str`` → text, ``bytes`` → binary)."""
        if isinstance(message, str):
            payload = message.encode("utf-8")
            first = 0x80 | OP_TEXT
        else:
            payload = message
            first = 0x80 | OP_BINARY
        deflate = self._deflate
        if deflate is None and len(payload) < 126:
            return bytes((first, len(payload))) + payload
        if (
            deflate is not None
            and len(payload) >= deflate.compress_min_size
            and deflate.server_max_window_bits >= 9
        ):
            payload = self._compress(payload, deflate)
            first |= _RSV1
        return _frame_head(first, len(payload)) + payload

    def _compress(self, payload: bytes, deflate: DeflateParams) -> bytes:
        compressor = self._compressor
        if compressor is None:
            compressor = zlib.compressobj(
                deflate.compression_level,
                zlib.DEFLATED,
                -deflate.server_max_window_bits,
                deflate.memory_level,
            )
        data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
        self._compressor = None if deflate.server_no_context_takeover else compressor
        if data.endswith(_DEFLATE_TAIL):
            data = data[:-4]
        return data

    def encode_ping(self, payload: bytes = b"") -> bytes:
        return _frame_head(0x80 | OP_PING, len(payload)) + payload

    def encode_close(self, code: int, reason: str = "") -> bytes:
        """Start (or finish) the close handshake from our side."""
        frame = self._close_frame(code, reason)
        if self.state == State.OPEN:
            self.state = State.CLOSING
        elif self.state == State.CLOSE_RECEIVED:
            self.state = State.CLOSED
        return frame

    @staticmethod
    def _close_frame(code: int, reason: str) -> bytes:
        payload = close_payload(code, reason)
        return _frame_head(0x80 | OP_CLOSE, len(payload)) + payload
