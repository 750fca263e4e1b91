"""HTTP/2 wire protocol for the server side (RFC 9113, RFC 8441), free of I/O.

Theory of operation
-------------------
:class:`H2Protocol` is one server connection. Bytes go in with
:meth:`H2Protocol.receive_data`; bytes to write come out of :meth:`H2Protocol.data_to_send`.
Everything the peer does is reported by plain method calls on an :class:`H2Listener` (no
event object per frame) and everything the application does goes through the ``send_*``
methods. Nothing here touches sockets, asyncio or ASGI dicts.

Why not the ``h2`` library: it validates and tracks every frame through generic state
machines and generators, which costs several hundred microseconds per request; this module
does the same job for the server side only, with a ``struct``-based frame codec, HPACK from
the ``hpack`` package behind two caches, and header validation done once per distinct
header block. Requests with identical header blocks (the common case for a client) cost a
dictionary lookup to decode and validate.

Frames (RFC 9113 §6) are parsed from one ``bytearray``; each type has a handler that
checks length, stream-id and state rules and raises :class:`ConnectionError_` (answered by
``GOAWAY`` with the code, then the connection ends) or :class:`StreamError` (answered by
``RST_STREAM``; the connection lives on). A header block (``HEADERS`` + ``CONTINUATION``)
is assembled first and bounded in frames and bytes.

HPACK (a decoder that remembers blocks leaving the dynamic table unchanged, an encoder
that never indexes and caches each field's bytes) and request validation live in
:mod:`headrace.server.protocols.http2_headers`; a validated request is cached under its
header block, so a repeated block costs one dictionary lookup.

Requests are validated per RFC 9113 §8 (pseudo-headers first and only the request ones,
lower-case token names, no connection-specific fields, ``te: trailers`` only, no CR/LF/NUL
and no surrounding whitespace in values, the CONNECT and extended-CONNECT rules,
``content-length`` against the DATA received); a malformed request is a stream error
``PROTOCOL_ERROR``. Request trailers are checked and dropped. Cookie fields are joined.

Flow control, inbound: each stream's window reopens only as the application *consumes*
body bytes (:meth:`H2Protocol.data_consumed`); :meth:`H2Protocol.stream_finished` returns
whatever the app never read. The connection window covers every stream's window, so one
slow reader cannot starve the others. Outbound: :meth:`H2Protocol.send_data` writes what the
peer's windows and frame size allow and queues the rest per stream; ``WINDOW_UPDATE`` and
``SETTINGS`` flush the queues round-robin and ``on_writable`` tells the stream layer that a
stream's queue drained. Trailers and ``END_STREAM`` wait behind queued data.

Shutdown: :meth:`H2Protocol.begin_graceful_shutdown` sends ``GOAWAY(NO_ERROR)`` naming the
last stream accepted, refuses newer ones with ``REFUSED_STREAM`` and lets the accepted
ones finish; :meth:`H2Protocol.close` sends the final ``GOAWAY``. A client's
``GOAWAY(NO_ERROR)`` drains the same way (its requests in flight are answered); any other
GOAWAY ends the connection at once.

A response that completes while the client is still sending its request (an app that answers
before reading the body) does not end the stream: once the app is done the rest of the body is
still read, checked like any request frame (padding, ``content-length``, windows, a peer's
RST_STREAM) and dropped, its window returned. Only when more than ``DISCARD_AFTER_RESPONSE``
bytes arrive that way is the client asked to stop with ``RST_STREAM(NO_ERROR)`` (RFC 9113
§8.1). Resetting at once would make the outcome of a bad frame depend on timing: sent before
the app answered it is an error, after our reset it is a frame "in flight" and ignored.

Abuse limits: a request whose decoded header list exceeds ``max_header_list_size`` is
answered ``431`` here (decoding always finishes, so HPACK state stays in sync); lists above
four times that (at least 64 KiB: HPACK bombs) and CONTINUATION runs beyond 64 frames or
twice the list size end the connection with ``ENHANCE_YOUR_CALM``; streams beyond
``max_concurrent_streams`` are refused (``REFUSED_STREAM``); token buckets bound frames that cost
work but carry no request (SETTINGS, PING, PRIORITY, empty DATA, unknown frames, frames on
closed streams) and streams that cost work but are never served: peer resets of unfinished
streams (rapid reset), and streams we refuse or reset as malformed (a client ignoring
``REFUSED_STREAM``). Streams whose application still runs after a reset keep counting against
a hard cap.
"""

from __future__ import annotations

import base64
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable
from enum import IntEnum
from typing import Protocol

from hpack import HeaderTuple
from hpack.exceptions import HPACKError, OversizedHeaderListError

from headrace.server.protocols.http2_headers import (
    CachingDecoder,
    FastEncoder,
    Headers,
    RequestHead,
    split_request_headers,
    validate_request,
    validate_trailers,
)
from headrace.server.protocols.http2_settings import (
    DEFAULT_WINDOW,
    MAX_WINDOW,
    SETTINGS_ENABLE_CONNECT_PROTOCOL,
    SETTINGS_ENABLE_PUSH,
    SETTINGS_HEADER_TABLE_SIZE,
    SETTINGS_INITIAL_WINDOW_SIZE,
    SETTINGS_MAX_CONCURRENT_STREAMS,
    SETTINGS_MAX_FRAME_SIZE,
    H2Settings,
)
from headrace.server.protocols.http2_states import (
    IS_LOCAL_CLOSED,
    IS_REMOTE_CLOSED,
    TABLE,
    IllegalTransition,
    StreamEvent,
    StreamState,
)

__all__ = [
    "PREFACE",
    "ErrorCode",
    "H2Listener",
    "H2Protocol",
    "H2Settings",
    "Headers",
    "split_request_headers",
]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
"""The client connection preface that starts every HTTP/2 connection."""

MAX_CONTINUATION_FRAMES = 64
RECENTLY_CLOSED_LIMIT = 1024
DISCARD_AFTER_RESPONSE = 64 * 1024
"""Request body read and dropped after the response completed, before ``RST_STREAM(NO_ERROR)``."""

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS = 0x0, 0x1, 0x2, 0x3, 0x4
PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0x5, 0x6, 0x7, 0x8, 0x9
FLAG_END_STREAM, FLAG_ACK, FLAG_END_HEADERS, FLAG_PADDED, FLAG_PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20

_STATUS_FIELDS = {code: (b":status", str(code).encode()) for code in range(100, 600)}
_FRAME_HEAD = struct.Struct(">BHBBL")
_SETTING = struct.Struct(">HL")
_U32 = struct.Struct(">L")
_GOAWAY = struct.Struct(">LL")


class ErrorCode(IntEnum):
    """HTTP/2 error codes (RFC 9113 §7)."""

    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


class ConnectionError_(Exception):
    """A connection error: GOAWAY with ``code``, then the connection ends."""

    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class StreamError(Exception):
    """A stream error: RST_STREAM with ``code``; the connection continues."""

    def __init__(self, stream_id: int, code: ErrorCode, reason: str) -> None:
        super().__init__(reason)
        self.stream_id = stream_id
        self.code = code


class H2Listener(Protocol):
    """What :class:`H2Protocol` reports to (the HTTP/2 connection handler)."""

    def on_request(
        self, stream_id: int, pseudo: dict[bytes, bytes], headers: Headers, end_stream: bool
    ) -> None:
        """A new, valid request: pseudo-headers by name, regular fields (a fresh list)."""

    def on_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        """Request body bytes; ``end_stream`` marks the last chunk (which may be empty)."""

    def on_reset(self, stream_id: int, error_code: int) -> None:
        """The stream was reset (by the peer, or because the connection ended)."""

    def on_writable(self, stream_id: int) -> None:
        """All data queued on the stream has been handed to the connection."""

    def on_terminated(self, error_code: int, reason: str) -> None:
        """The connection is over (GOAWAY sent or received): flush and close."""


class TokenBucket:
    """A rate limiter: ``burst`` tokens, refilled at ``rate`` per second."""

    __slots__ = ("_clock", "_stamp", "burst", "rate", "tokens")

    def __init__(self, burst: int, rate: float, clock: Callable[[], float]) -> None:
        self.burst = float(burst)
        self.rate = rate
        self.tokens = float(burst)
        self._clock = clock
        self._stamp = clock()

    def take(self) -> bool:
        """Spend one token; False when the bucket is empty (the limit is exceeded)."""
        if self.tokens < 1.0:
            now = self._clock()
            self.tokens = min(self.burst, self.tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self.tokens < 1.0:
                return False
        self.tokens -= 1.0
        return True


# -- streams -----------------------------------------------------------------------------------


class _Stream:
    """Per-stream state: RFC 9113 §5.1 state, windows, body accounting and queued output.

    ``state`` changes only through :meth:`apply` (the table in
    :mod:`~headrace.server.protocols.http2_states`); ``remote_closed`` and ``local_closed`` are
    read-only views of it, kept as plain attributes for the hot path.
    """

    __slots__ = (
        "announce",
        "chunks",
        "content_length",
        "counted",
        "discarded",
        "end_queued",
        "id",
        "local_closed",
        "received",
        "recv_window",
        "remote_closed",
        "send_window",
        "state",
        "trailers",
        "unacked",
    )

    def __init__(self, stream_id: int, send_window: int, recv_window: int) -> None:
        self.id = stream_id
        self.send_window = send_window
        self.recv_window = recv_window
        self.unacked = 0
        self.announce = 0
        self.counted = True
        self.state = StreamState.IDLE
        self.remote_closed = False
        self.local_closed = False
        self.content_length: int | None = None
        self.received = 0
        self.discarded = 0
        self.chunks: deque[memoryview] = deque()
        self.end_queued = False
        self.trailers: Headers | None = None

    def queued_bytes(self) -> int:
        return sum(len(chunk) for chunk in self.chunks)

    def apply(self, event: StreamEvent) -> None:
        """Move along the RFC 9113 §5.1 table (IllegalTransition if the move is not in it)."""
        state = TABLE[self.state][event]
        if state is None:
            raise IllegalTransition(f"{event.name} in state {self.state.name}")
        self.state = state
        self.remote_closed = IS_REMOTE_CLOSED[state]
        self.local_closed = IS_LOCAL_CLOSED[state]


def _frame(frame_type: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    length = len(payload)
    return _FRAME_HEAD.pack(length >> 16, length & 0xFFFF, frame_type, flags, stream_id) + payload


class H2Protocol:
    """One server-side HTTP/2 connection, I/O-free (see the module docstring)."""

    def __init__(
        self,
        listener: H2Listener,
        settings: H2Settings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or H2Settings()
        self.listener = listener
        self.encoder = FastEncoder()
        # Decoding must finish to keep HPACK state; only far larger lists end the connection.
        hard_limit = max(4 * self.settings.max_header_list_size, 64 * 1024)
        self.decoder = CachingDecoder(hard_limit)
        self.decoder.max_allowed_table_size = self.settings.header_table_size
        self._control_budget = TokenBucket(
            self.settings.control_frame_burst, self.settings.control_frames_per_second, clock
        )
        self._reset_budget = TokenBucket(
            self.settings.reset_burst, self.settings.resets_per_second, clock
        )
        self._buffer = bytearray()
        self._out: list[bytes | memoryview] = []
        self._preface_needed = True
        self._settings_seen = False
        self._streams: dict[int, _Stream] = {}
        self._recently_closed: dict[int, bool] = {}
        self._open_streams = 0
        self._live: set[int] = set()
        self._blocked: deque[int] = deque()
        self._highest = 0
        self._block: bytearray | None = None
        self._block_stream = 0
        self._block_flags = 0
        self._block_frames = 0
        self._peer_initial_window = DEFAULT_WINDOW
        self._peer_max_frame = 16_384
        self.peer_max_concurrent_streams = MAX_WINDOW
        self._send_window = DEFAULT_WINDOW
        self._recv_window = self.settings.connection_window
        self._conn_announce = 0
        self.draining_after: int | None = None
        self.terminated = False

    # -- connection lifecycle ------------------------------------------------------------

    def initiate(self) -> None:
        """Queue the server preface (SETTINGS) and open the connection receive window."""
        payload = b"".join(
            _SETTING.pack(key, value) for key, value in self.settings.local_settings().items()
        )
        self._out.append(_frame(SETTINGS, 0, 0, payload))
        increment = self.settings.connection_window - DEFAULT_WINDOW
        if increment > 0:
            self._out.append(_frame(WINDOW_UPDATE, 0, 0, _U32.pack(increment)))

    def initiate_upgrade(self, http2_settings: bytes, headers: Headers, body: bytes) -> None:
        """Start after ``Upgrade: h2c``: the HTTP/1.1 request becomes stream 1 (RFC 7540 §3.2)."""
        payload = base64.urlsafe_b64decode(http2_settings + b"=" * (-len(http2_settings) % 4))
        if len(payload) % 6:
            raise ValueError("HTTP2-Settings is not a SETTINGS payload")
        self.initiate()
        try:
            self._apply_settings(payload)
        except ConnectionError_ as error:
            raise ValueError(f"invalid HTTP2-Settings: {error}") from error
        stream = self._new_stream(1)
        stream.apply(StreamEvent.RECV_END_STREAM)  # the HTTP/1.1 request was complete
        self._highest = 1
        self._live.add(1)
        pseudo, regular = split_request_headers(headers)
        self.listener.on_request(1, pseudo, regular, not body)
        if body:
            self.listener.on_data(1, body, True)

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the socket; reports go to the listener."""
        if self.terminated:
            return
        buffer = self._buffer
        buffer += data
        try:
            if self._preface_needed and not self._read_preface():
                return
            self._read_frames()
        except ConnectionError_ as error:
            self.close(int(error.code), str(error))

    def _read_preface(self) -> bool:
        buffer = self._buffer
        if len(buffer) < len(PREFACE):
            if not PREFACE.startswith(bytes(buffer)):
                raise ConnectionError_(ErrorCode.PROTOCOL_ERROR, "invalid connection preface")
            return False
        if buffer[: len(PREFACE)] != PREFACE:
            raise ConnectionError_(ErrorCode.PROTOCOL_ERROR, "invalid connection preface")
        del buffer[: len(PREFACE)]
        self._preface_needed = False
        return True

    def _read_frames(self) -> None:
        buffer = self._buffer
        view = memoryview(buffer)
        offset = 0
        limit = self.settings.max_frame_size
        try:
            while not self.terminated and len(buffer) - offset >= 9:
                high, low, frame_type, flags, stream_id = _FRAME_HEAD.unpack_from(buffer, offset)
                length = (high << 16) | low
                if length > limit:
                    raise ConnectionError_(ErrorCode.FRAME_SIZE_ERROR, "frame too large")
                end = offset + 9 + length
                if len(buffer) < end:
                    break
                payload = bytes(view[offset + 9 : end])
                offset = end
                self._on_frame(frame_type, flags, stream_id & 0x7FFFFFFF, payload)
        finally:
            view.release()
            del buffer[:offset]

    def data_to_send(self) -> bytes:
        """Every byte queued for the socket, in order."""
        out = self._out
        if not out:
            return b""
        data = b"".join(out)
        out.clear()
        return data

    def begin_graceful_shutdown(self) -> None:
        """Send ``GOAWAY(NO_ERROR)``; streams already accepted finish, newer are refused."""
        if self.draining_after is not None or self.terminated:
            return
        self.draining_after = self._highest
        self._out.append(_frame(GOAWAY, 0, 0, _GOAWAY.pack(self._highest, 0)))

    def close(self, error_code: int = 0, reason: str = "") -> None:
        """Send the final GOAWAY; every stream still open is reported reset."""
        if self.terminated:
            return
        last = self._highest if self.draining_after is None else self.draining_after
        debug = reason.encode("utf-8", "replace")[:256] if error_code else b""
        self._out.append(_frame(GOAWAY, 0, 0, _GOAWAY.pack(last, error_code) + debug))
        self._terminate(error_code, reason)

    def _terminate(self, error_code: int, reason: str) -> None:
        self.terminated = True
        live = sorted(self._live)
        self._live.clear()
        self._streams.clear()
        self._open_streams = 0
        self._blocked.clear()
        for stream_id in live:
            self.listener.on_reset(stream_id, error_code)
        self.listener.on_terminated(error_code, reason)

    @property
    def active_streams(self) -> int:
        """Streams whose application has not yet finished."""
        return len(self._live)

    def is_idle(self) -> bool:
        return not self._live

    # -- frames ----------------------------------------------------------------------------

    def _on_frame(self, frame_type: int, flags: int, stream_id: int, payload: bytes) -> None:
        if self._block is not None:
            self._on_continuation(frame_type, flags, stream_id, payload)
            return
        if not self._settings_seen:
            if frame_type != SETTINGS or flags & FLAG_ACK:
                raise ConnectionError_(ErrorCode.PROTOCOL_ERROR, "first frame must be SETTINGS")
            self._settings_seen = True
        try:
            if frame_type == HEADERS:
                self._on_headers(flags, stream_id, payload)
            elif frame_type == DATA:
                self._on_data(flags, stream_id, payload)
            elif frame_type == WINDOW_UPDATE:
                self._on_window_update(stream_id, payload)
            elif frame_type == RST_STREAM:
                self._on_rst_stream(stream_id, payload)
            elif frame_type == SETTINGS:
                self._on_settings(flags, stream_id, payload)
            elif frame_type == PING:
                self._on_ping(flags, stream_id, payload)
            elif frame_type == PRIORITY:
                self._on_priority(stream_id, payload)
            elif frame_type == GOAWAY:
                self._on_goaway(stream_id, payload)
            elif frame_type in (PUSH_PROMISE, CONTINUATION):
                raise ConnectionError_(ErrorCode.PROTOCOL_ERROR, "unexpected frame type")
            else:
                self._spend_control_budget()
        except StreamError as error:
            self._reset(error.stream_id, error.code)

    def _spend_reset_budget(self) -> None:
        """Streams that cost work but are never served: peer resets, refused, malformed."""
        if not self._reset_budget.take():
            raise ConnectionError_(ErrorCode.ENHANCE_YOUR_CALM, "too many stream resets")

    def _spend_control_budget(self) -> None:
        if not self._control_budget.take():
            raise ConnectionError_(ErrorCode.ENHANCE_YOUR_CALM, "too many control frames")

    @staticmethod
    def _strip_padding(flags: int, payload: bytes) -> bytes:
        if not flags & FLAG_PADDED:
            return payload
        if not payload or payload[0] >= len(payload):
            raise ConnectionError_(ErrorCode.PROTOCOL_ERROR, "invalid padding")
        return payload[1 : len(payload) - payload[0]]

    def _on_headers(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0:
            raise ConnectionError_(ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0")
        block = self._strip_padding(flags, payload)
        if flags & FLAG_PRIORITY:
            if len(block) < 5:
                raise ConnectionError_(ErrorCode.FRAME_SIZE_ERROR, "short priority fields")
            if _U32.unpack_from(block)[0] & 0x7FFFFFFF == stream_id:
                raise StreamError(stream_id, ErrorCode.PROTOCOL_ERROR, "self-dependency")
            block = block[5:]
        if flags & FLAG_END_HEADERS:
            self._on_header_block(stream_id, flags, block)
            return
        self._block = bytearray(block)
        self._block_stream = stream_id
        self._block_flags = flags
        self._block_frames = 1

    def _on_continuation(self, frame_type: int, flags: int, stream_id: int, payload: bytes) -> None:
        if frame_type != CONTINUATION or stream_id != self._block_stream:
            raise ConnectionError_(ErrorCode.PROTOCOL_ERROR, "header block interrupted")
        block = self._block
        assert block is not None
        block += payload
        self._block_frames += 1
        too_many = self._block_frames > MAX_CONTINUATION_FRAMES
        if too_many or len(block) > 2 * self.settings.max_header_list_size:
            raise ConnectionError_(ErrorCode.ENHANCE_YOUR_CALM, "CONTINUATION flood")
        if flags & FLAG_END_HEADERS:
            self._block = None
            try:
                self._on_header_block(stream_id, self._block_flags, bytes(block))
            except StreamError as error:
                self._reset(error.stream_id, error.code)

    def _decode(self, block: bytes) -> list[HeaderTuple]:
        try:
            headers, _ = self.decoder.decode_block(block)
        except OversizedHeaderListError as exc:
            raise ConnectionError_(ErrorCode.ENHANCE_YOUR_CALM, "header list too large") from exc
        except (HPACKError, IndexError, TypeError, UnicodeDecodeError) as exc:
            raise ConnectionError_(ErrorCode.COMPRESSION_ERROR, f"HPACK: {exc}") from exc
        return headers

    def _request_head(self, block: bytes) -> RequestHead | None:
        """Decode and validate (cached per block); None when the request is malformed."""
        cached = self.decoder.cache.get(block)
        if cached is not None:
            return cached if isinstance(cached, RequestHead) else None
        try:
            headers, cacheable = self.decoder.decode_block(block)
        except OversizedHeaderListError as exc:
            raise ConnectionError_(ErrorCode.ENHANCE_YOUR_CALM, "header list too large") from exc
        except (HPACKError, IndexError, TypeError, UnicodeDecodeError) as exc:
            raise ConnectionError_(ErrorCode.COMPRESSION_ERROR, f"HPACK: {exc}") from exc
        try:
            head: RequestHead | None = validate_request(
                headers, self.settings.enable_connect_protocol
            )
        except ValueError:
            head = None
        if cacheable:
            self.decoder.cache[block] = head if head is not None else False
        return head

    def _on_header_block(self, stream_id: int, flags: int, block: bytes) -> None:
        stream = self._streams.get(stream_id)
        if stream is not None:
            self._on_trailers(stream, flags, block)
            return
        if stream_id <= self._highest or not stream_id & 1:
            self._decode(block)  # keeps the HPACK state in step even if the block is dropped
            if self._recently_closed.get(stream_id):
                return  # trailers in flight when we reset the stream
            if stream_id in self._recently_closed:
                raise ConnectionError_(ErrorCode.STREAM_CLOSED, "HEADERS on a closed stream")
            raise ConnectionError_(ErrorCode.PROTOCOL_ERROR, "unexpected stream identifier")
        head = self._request_head(block)
        self._highest = stream_id
        end_stream = bool(flags & FLAG_END_STREAM)
        if head is None:
            self._spend_reset_budget()
            self._reset(stream_id, ErrorCode.PROTOCOL_ERROR)
            return
        if self._must_refuse(stream_id):
            self._spend_reset_budget()
            self._reset(stream_id, ErrorCode.REFUSED_STREAM)
            return
        stream = self._new_stream(stream_id)
        if end_stream:
            stream.apply(StreamEvent.RECV_END_STREAM)
        if head.size > self.settings.max_header_list_size:
            self._answer_and_close(stream, 431, b"Request Header Fields Too Large\n")
            return
        stream.content_length = head.content_length
        if end_stream and head.content_length:
            self._reset(stream_id, ErrorCode.PROTOCOL_ERROR)
            return
        self._live.add(stream_id)
        self.listener.on_request(stream_id, head.pseudo, list(head.headers), end_stream)

    def _answer_and_close(self, stream: _Stream, status: int, body: bytes) -> None:
        """Answer a request the application never sees, then stop its stream."""
        headers = [(b"content-type", b"text/plain; charset=utf-8")]
        self.send_headers(stream.id, status, headers, end_stream=False)
        self.send_data(stream.id, body, end_stream=True)
        if not stream.remote_closed:
            self._reset(stream.id, ErrorCode.NO_ERROR)
        else:
            self._pop_stream(stream.id)

    def _new_stream(self, stream_id: int) -> _Stream:
        stream = _Stream(stream_id, self._peer_initial_window, self.settings.initial_window_size)
        stream.apply(StreamEvent.RECV_HEADERS)
        self._streams[stream_id] = stream
        self._open_streams += 1
        return stream

    def _must_refuse(self, stream_id: int) -> bool:
        if self.draining_after is not None and stream_id > self.draining_after:
            return True
        if self._open_streams >= self.settings.max_concurrent_streams:
            return True
        return len(self._live) >= 2 * self.settings.max_concurrent_streams

    def _on_trailers(self, stream: _Stream, flags: int, block: bytes) -> None:
        headers = self._decode(block)
        if stream.remote_closed:
            raise StreamError(stream.id, ErrorCode.STREAM_CLOSED, "HEADERS after END_STREAM")
        if not flags & FLAG_END_STREAM:
            raise StreamError(stream.id, ErrorCode.PROTOCOL_ERROR, "trailers without END_STREAM")
        try:
            validate_trailers(headers)
        except ValueError as exc:
            raise StreamError(stream.id, ErrorCode.PROTOCOL_ERROR, str(exc)) from exc
        self._end_remote(stream)

    def _end_remote(self, stream: _Stream) -> None:
        if stream.content_length is not None and stream.received != stream.content_length:
            raise StreamError(stream.id, ErrorCode.PROTOCOL_ERROR, "content-length mismatch")
        stream.apply(StreamEvent.RECV_END_STREAM)
        if stream.id in self._live:
            self.listener.on_data(stream.id, b"", True)
        self._maybe_forget(stream)

    def _on_data(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0:
            raise ConnectionError_(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0")
        length = len(payload)
        if length > self._recv_window:
            raise ConnectionError_(ErrorCode.FLOW_CONTROL_ERROR, "connection window exceeded")
        self._recv_window -= length
        data = self._strip_padding(flags, payload)  # bad padding ends the connection, any stream
        stream = self._streams.get(stream_id)
        if stream is None or stream.remote_closed:
            self._acknowledge_connection(length)
            if stream_id > self._highest:
                raise ConnectionError_(ErrorCode.PROTOCOL_ERROR, "DATA on an idle stream")
            self._spend_control_budget()
            if stream is None and self._recently_closed.get(stream_id):
                return  # in flight when we reset the stream
            raise StreamError(stream_id, ErrorCode.STREAM_CLOSED, "DATA on a closed stream")
        if length > stream.recv_window:
            self._acknowledge_connection(length)
            raise StreamError(stream_id, ErrorCode.FLOW_CONTROL_ERROR, "stream window exceeded")
        stream.recv_window -= length
        padding = length - len(data)
        if padding:
            self._acknowledge_connection(padding)
            self._credit_stream(stream, padding)
        end_stream = bool(flags & FLAG_END_STREAM)
        if not data and not end_stream:
            self._spend_control_budget()
        stream.received += len(data)
        if stream.content_length is not None and stream.received > stream.content_length:
            raise StreamError(stream_id, ErrorCode.PROTOCOL_ERROR, "body exceeds content-length")
        if stream_id not in self._live:
            self._acknowledge_connection(len(data))
            self._credit_stream(stream, len(data))
            stream.discarded += len(data)
            if stream.discarded > DISCARD_AFTER_RESPONSE and not end_stream:
                self._reset(stream_id, ErrorCode.NO_ERROR)  # RFC 9113 §8.1: stop sending
                return
        else:
            stream.unacked += len(data)
            if data:
                self.listener.on_data(stream_id, data, False)
        if end_stream:
            self._end_remote(stream)

    def _on_window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise ConnectionError_(ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE length")
        increment = _U32.unpack(payload)[0] & 0x7FFFFFFF
        if stream_id == 0:
            if increment == 0:
                raise ConnectionError_(ErrorCode.PROTOCOL_ERROR, "zero window increment")
            self._send_window += increment
            if self._send_window > MAX_WINDOW:
                raise ConnectionError_(ErrorCode.FLOW_CONTROL_ERROR, "window overflow")
        else:
            stream = self._streams.get(stream_id)
            if stream is None:
                if stream_id > self._highest:
                    raise ConnectionError_(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE on idle stream")
                return
            if increment == 0:
                raise StreamError(stream_id, ErrorCode.PROTOCOL_ERROR, "zero window increment")
            stream.send_window += increment
            if stream.send_window > MAX_WINDOW:
                raise StreamError(stream_id, ErrorCode.FLOW_CONTROL_ERROR, "window overflow")
        if self._blocked:
            self._flush_blocked()

    def _on_rst_stream(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise ConnectionError_(ErrorCode.FRAME_SIZE_ERROR, "RST_STREAM length")
        if stream_id == 0 or stream_id > self._highest:
            raise ConnectionError_(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on idle stream")
        stream = self._pop_stream(stream_id)
        if stream is None:
            self._spend_control_budget()
            return
        stream.apply(StreamEvent.RECV_RST_STREAM)
        self._release(stream)
        if stream_id in self._live:
            self._spend_reset_budget()
            self.listener.on_reset(stream_id, _U32.unpack(payload)[0])

    def _on_settings(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id != 0:
            raise ConnectionError_(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & FLAG_ACK:
            if payload:
                raise ConnectionError_(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with payload")
            return
        if len(payload) % 6:
            raise ConnectionError_(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS length")
        self._spend_control_budget()
        self._apply_settings(payload)
        self._out.append(_frame(SETTINGS, FLAG_ACK, 0))

    def _apply_settings(self, payload: bytes) -> None:
        for offset in range(0, len(payload), 6):
            key, value = _SETTING.unpack_from(payload, offset)
            self._apply_setting(key, value)

    def _apply_setting(self, key: int, value: int) -> None:
        if key in (SETTINGS_ENABLE_PUSH, SETTINGS_ENABLE_CONNECT_PROTOCOL) and value > 1:
            raise ConnectionError_(ErrorCode.PROTOCOL_ERROR, "boolean setting out of range")
        if key == SETTINGS_INITIAL_WINDOW_SIZE:
            if value > MAX_WINDOW:
                raise ConnectionError_(ErrorCode.FLOW_CONTROL_ERROR, "initial window too large")
            delta = value - self._peer_initial_window
            self._peer_initial_window = value
            for stream in self._streams.values():
                stream.send_window += delta
                if stream.send_window > MAX_WINDOW:
                    raise ConnectionError_(ErrorCode.FLOW_CONTROL_ERROR, "window overflow")
            if delta > 0:
                self._blocked.extend(sid for sid in self._streams if sid not in self._blocked)
                self._flush_blocked()
        elif key == SETTINGS_MAX_FRAME_SIZE:
            if not 16_384 <= value <= 2**24 - 1:
                raise ConnectionError_(ErrorCode.PROTOCOL_ERROR, "MAX_FRAME_SIZE out of range")
            self._peer_max_frame = value
        elif key == SETTINGS_HEADER_TABLE_SIZE:
            self.encoder.size_update_pending = True
        elif key == SETTINGS_MAX_CONCURRENT_STREAMS:
            self.peer_max_concurrent_streams = value

    def _on_ping(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id != 0:
            raise ConnectionError_(ErrorCode.PROTOCOL_ERROR, "PING on a stream")
        if len(payload) != 8:
            raise ConnectionError_(ErrorCode.FRAME_SIZE_ERROR, "PING length")
        self._spend_control_budget()
        if not flags & FLAG_ACK:
            self._out.append(_frame(PING, FLAG_ACK, 0, payload))

    def _on_priority(self, stream_id: int, payload: bytes) -> None:
        if stream_id == 0:
            raise ConnectionError_(ErrorCode.PROTOCOL_ERROR, "PRIORITY on stream 0")
        if len(payload) != 5:
            raise StreamError(stream_id, ErrorCode.FRAME_SIZE_ERROR, "PRIORITY length")
        self._spend_control_budget()
        if _U32.unpack_from(payload)[0] & 0x7FFFFFFF == stream_id:
            raise StreamError(stream_id, ErrorCode.PROTOCOL_ERROR, "self-dependency")

    def _on_goaway(self, stream_id: int, payload: bytes) -> None:
        if stream_id != 0:
            raise ConnectionError_(ErrorCode.PROTOCOL_ERROR, "GOAWAY on a stream")
        if len(payload) < 8:
            raise ConnectionError_(ErrorCode.FRAME_SIZE_ERROR, "GOAWAY length")
        code = _GOAWAY.unpack_from(payload)[1]
        if code != ErrorCode.NO_ERROR:
            self._terminate(code, "peer sent GOAWAY")
            return
        self._spend_control_budget()
        if not self._live:
            self.close(int(ErrorCode.NO_ERROR), "peer sent GOAWAY")  # answered in kind
            return
        # The client is leaving but still wants the answers to the requests it sent:
        # finish them, accept no new stream, then close (is_idle + draining_after).
        if self.draining_after is None:
            self.draining_after = self._highest

    # -- inbound flow control ------------------------------------------------------------

    def data_consumed(self, stream_id: int, length: int) -> None:
        """The application read ``length`` body bytes: reopen that much window."""
        stream = self._streams.get(stream_id)
        if stream is None or length <= 0 or self.terminated:
            return
        length = min(length, stream.unacked)
        stream.unacked -= length
        self._acknowledge_connection(length)
        self._credit_stream(stream, length)

    def _credit_stream(self, stream: _Stream, length: int) -> None:
        """Hand ``length`` bytes of stream window back, batched into few WINDOW_UPDATEs."""
        if stream.remote_closed or length <= 0:
            return
        stream.announce += length
        window = self.settings.initial_window_size
        if stream.announce >= window // 2 or stream.recv_window < min(16_384, window // 2):
            increment, stream.announce = stream.announce, 0
            stream.recv_window += increment
            self._out.append(_frame(WINDOW_UPDATE, 0, stream.id, _U32.pack(increment)))

    def _acknowledge_connection(self, length: int) -> None:
        """Hand ``length`` bytes of connection window back, batched like streams'."""
        if length <= 0 or self.terminated:
            return
        self._conn_announce += length
        window = self.settings.connection_window
        if self._conn_announce >= window // 2 or self._recv_window < min(65_536, window // 2):
            increment, self._conn_announce = self._conn_announce, 0
            self._recv_window += increment
            self._out.append(_frame(WINDOW_UPDATE, 0, 0, _U32.pack(increment)))

    def _release(self, stream: _Stream) -> None:
        """Return a stream's unread bytes to the connection window."""
        if stream.unacked:
            unacked, stream.unacked = stream.unacked, 0
            self._acknowledge_connection(unacked)

    def stream_finished(self, stream_id: int) -> None:
        """The stream's application is done: return unread window, forget the stream."""
        self._live.discard(stream_id)
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        unread = stream.unacked
        self._release(stream)
        if not stream.remote_closed and not self.terminated:
            # A client still sending keeps its stream: the rest of its body is read, checked
            # and dropped (see "A response that completes" in the module docs).
            stream.discarded = unread
            if unread > DISCARD_AFTER_RESPONSE:
                self._reset(stream_id, ErrorCode.NO_ERROR)  # RFC 9113 §8.1: stop sending
                return
            self._credit_stream(stream, unread)  # what the app left unread must not stall it
        self._maybe_forget(stream)

    def _pop_stream(self, stream_id: int, reset_by_us: bool = False) -> _Stream | None:
        """Forget a stream, remembering its id for a while.

        Late frames on it are a STREAM_CLOSED error, except on streams we reset: the peer may
        have sent those before it saw our RST_STREAM, so they are dropped (RFC 9113 §5.4.2).
        """
        stream = self._streams.pop(stream_id, None)
        if stream is not None:
            self._uncount(stream)
        if stream is not None or reset_by_us:
            closed = self._recently_closed
            closed[stream_id] = reset_by_us
            if len(closed) > RECENTLY_CLOSED_LIMIT:
                del closed[next(iter(closed))]
        return stream

    def _maybe_forget(self, stream: _Stream) -> None:
        if stream.state is StreamState.CLOSED:
            self._uncount(stream)  # closed for the protocol, even if its app still runs
            if stream.id not in self._live:
                self._pop_stream(stream.id)

    def _uncount(self, stream: _Stream) -> None:
        if stream.counted:
            stream.counted = False
            self._open_streams -= 1

    # -- outbound ------------------------------------------------------------------------

    def send_headers(
        self, stream_id: int, status: int, headers: Iterable[tuple[bytes, bytes]], end_stream: bool
    ) -> None:
        """Send the response head (``:status`` is prepended here)."""
        status_field = _STATUS_FIELDS.get(status)
        if status_field is None:
            status_field = (b":status", str(status).encode())
        block: Headers = [status_field]
        block.extend(headers)
        self._send_header_block(stream_id, block, end_stream)

    def send_informational(
        self, stream_id: int, status: int, headers: Iterable[tuple[bytes, bytes]]
    ) -> None:
        """Send a 1xx response (for example ``103 Early Hints``)."""
        self.send_headers(stream_id, status, headers, end_stream=False)

    def _send_header_block(self, stream_id: int, headers: Headers, end_stream: bool) -> None:
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_closed or self.terminated:
            return
        block = self.encoder.encode(headers)
        limit = self._peer_max_frame
        flags = FLAG_END_STREAM if end_stream else 0
        if len(block) <= limit:
            self._out.append(_frame(HEADERS, flags | FLAG_END_HEADERS, stream_id, block))
        else:
            self._out.append(_frame(HEADERS, flags, stream_id, block[:limit]))
            for start in range(limit, len(block), limit):
                last = start + limit >= len(block)
                piece = block[start : start + limit]
                self._out.append(
                    _frame(CONTINUATION, FLAG_END_HEADERS if last else 0, stream_id, piece)
                )
        if end_stream:
            self._end_local(stream)

    def _end_local(self, stream: _Stream) -> None:
        stream.apply(StreamEvent.SEND_END_STREAM)
        self._maybe_forget(stream)

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> bool:
        """Send body bytes; True when all of it went out, False when some is queued.

        When False, ``on_writable(stream_id)`` follows once the queue has drained.
        """
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_closed or self.terminated:
            return True
        if stream.chunks:
            if data:
                stream.chunks.append(memoryview(data))
            stream.end_queued = stream.end_queued or end_stream
            return False
        view = memoryview(data)
        sent = self._write_data(stream, view, end_stream)
        if sent == len(view):
            return True
        stream.chunks.append(view[sent:])
        stream.end_queued = end_stream
        self._blocked.append(stream_id)
        return False

    def _write_data(self, stream: _Stream, view: memoryview, end_stream: bool) -> int:
        """Write DATA frames within the windows; END_STREAM rides on the last one."""
        total = len(view)
        if total == 0:
            if end_stream:
                self._out.append(_frame(DATA, FLAG_END_STREAM, stream.id))
                self._end_local(stream)
            return 0
        sent = 0
        out = self._out
        while sent < total:
            size = min(self._send_window, stream.send_window, self._peer_max_frame, total - sent)
            if size <= 0:
                break
            last = sent + size == total
            flags = FLAG_END_STREAM if last and end_stream else 0
            # Head and payload go out as separate pieces: the body is joined once, uncopied.
            out.append(_FRAME_HEAD.pack(size >> 16, size & 0xFFFF, DATA, flags, stream.id))
            out.append(view[sent : sent + size])
            sent += size
            self._send_window -= size
            stream.send_window -= size
        if sent == total and end_stream:
            self._end_local(stream)
        return sent

    def send_trailers(self, stream_id: int, headers: Headers) -> None:
        """Send response trailers (ending the stream) after any queued data."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        if stream.chunks:
            stream.trailers = headers
            stream.end_queued = True
            return
        self._send_header_block(stream_id, headers, end_stream=True)

    def end_stream(self, stream_id: int) -> None:
        """End the response (an empty final DATA frame, after any queued data)."""
        self.send_data(stream_id, b"", end_stream=True)

    def reset_stream(self, stream_id: int, error_code: int = int(ErrorCode.INTERNAL_ERROR)) -> None:
        """Abort the stream (for example when the application failed mid-response)."""
        if self.terminated or stream_id not in self._streams:
            return
        self._reset(stream_id, error_code)

    def _reset(self, stream_id: int, error_code: int) -> None:
        self._out.append(_frame(RST_STREAM, 0, stream_id, _U32.pack(error_code)))
        stream = self._pop_stream(stream_id, reset_by_us=True)
        if stream is not None:
            stream.apply(StreamEvent.SEND_RST_STREAM)
            self._release(stream)
            if stream_id in self._live:
                self.listener.on_reset(stream_id, error_code)

    def stream_state(self, stream_id: int) -> StreamState:
        """The RFC 9113 §5.1 state of a stream (IDLE above every id seen, CLOSED once gone)."""
        stream = self._streams.get(stream_id)
        if stream is not None:
            return stream.state
        return StreamState.IDLE if stream_id > self._highest else StreamState.CLOSED

    def queued_bytes(self, stream_id: int) -> int:
        stream = self._streams.get(stream_id)
        return stream.queued_bytes() if stream is not None else 0

    def _flush_blocked(self) -> None:
        """Round-robin over streams with queued data while the windows allow."""
        rounds = len(self._blocked)
        while rounds and self._blocked and self._send_window > 0:
            rounds -= 1
            stream_id = self._blocked.popleft()
            if not self._flush_stream(stream_id):
                self._blocked.append(stream_id)

    def _flush_stream(self, stream_id: int) -> bool:
        """Flush one stream's queue; True when it is empty (or the stream is gone)."""
        stream = self._streams.get(stream_id)
        if stream is None or not stream.chunks:
            return True
        chunks = stream.chunks
        while chunks:
            chunk = chunks[0]
            last = len(chunks) == 1
            end = last and stream.end_queued and stream.trailers is None
            sent = self._write_data(stream, chunk, end)
            if sent < len(chunk):
                chunks[0] = chunk[sent:]
                return False
            chunks.popleft()
        if stream.trailers is not None:
            trailers, stream.trailers = stream.trailers, None
            self._send_header_block(stream_id, trailers, end_stream=True)
        elif stream.end_queued and not stream.local_closed:
            self._write_data(stream, memoryview(b""), True)
        self.listener.on_writable(stream_id)
        return True
