"""HTTP/1.1 wire helpers: pre-encoded status lines, the cached Date header, response-head
encoding, request-target splitting and the framing of complete closing responses.

I/O-free (no asyncio, no ASGI dicts): the HTTP/1.1 wire in ``headrace.server.wires.http11``
feeds bytes to httptools and uses these functions to build what goes on the wire. The HTTP/2
handler reuses :func:`date_header_value`; response fields are checked by
:func:`headrace.server.protocols.fields.check_response_field`, the rule every wire shares.
"""

from __future__ import annotations

import time
from http import HTTPStatus
from urllib.parse import unquote

from headrace.server.protocols.fields import check_response_field

HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
NO_BODY_STATUSES = frozenset({204, 304})

_PHRASES = {status.value: status.phrase for status in HTTPStatus}


def reason_phrase(status: int) -> str:
    return _PHRASES.get(status, "Unknown")


def _status_line(version: bytes, status: int) -> bytes:
    return b"HTTP/%s %d %s\r\n" % (version, status, reason_phrase(status).encode("latin-1"))


STATUS_LINES_11 = {status: _status_line(b"1.1", status) for status in _PHRASES}
STATUS_LINES_10 = {status: _status_line(b"1.0", status) for status in _PHRASES}


def status_line(status: int, http10: bool) -> bytes:
    table = STATUS_LINES_10 if http10 else STATUS_LINES_11
    line = table.get(status)
    if line is None:
        if not 100 <= status <= 999:
            raise ValueError(f"invalid HTTP status {status!r}")
        line = _status_line(b"1.0" if http10 else b"1.1", status)
    return line


_date_second = 0
_date_value = b""
_date_line = b""


_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def imf_fixdate(seconds: int) -> str:
    """``seconds`` since the epoch as an IMF-fixdate (RFC 9110 §5.6.7), in English whatever
    the locale (``email.utils.formatdate`` does the same; it is not imported for this, since
    the ``email`` package would cost every server start a few milliseconds)."""
    t = time.gmtime(seconds)
    return (
        f"{_WEEKDAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


def _refresh_date(now: int) -> None:
    global _date_second, _date_value, _date_line
    _date_second = now
    _date_value = imf_fixdate(now).encode("ascii")
    _date_line = b"date: " + _date_value + b"\r\n"


def date_header_value() -> bytes:
    """The IMF-fixdate for now, recomputed at most once per second."""
    now = int(time.time())
    if now != _date_second:
        _refresh_date(now)
    return _date_value


def date_header_line() -> bytes:
    """``b"date: <IMF-fixdate>\\r\\n"``, recomputed at most once per second."""
    now = int(time.time())
    if now != _date_second:
        _refresh_date(now)
    return _date_line


def validate_response_header(name: bytes, value: bytes) -> None:
    """Reject a response field the shared rule refuses (see :mod:`.fields`)."""
    check_response_field(name, value)


PLAIN, CONTENT_LENGTH, CONNECTION, TRANSFER_ENCODING, SERVER, DATE = range(6)
_KINDS = {
    b"content-length": CONTENT_LENGTH,
    b"connection": CONNECTION,
    b"transfer-encoding": TRANSFER_ENCODING,
    b"server": SERVER,
    b"date": DATE,
}
_LINE_CACHE_SIZE = 1024
_line_cache: dict[tuple[bytes, bytes], tuple[bytes, int]] = {}


def header_line(header: tuple[bytes, bytes] | list[bytes]) -> tuple[bytes, int]:
    """``(b"name: value\\r\\n", kind)`` for one app response header, validated once.

    Apps tend to send the same header pairs again and again; validated, encoded lines are kept
    in a small cache (cleared when full) so the hot path is one dict lookup per header.
    """
    if type(header) is tuple:
        entry = _line_cache.get(header)
        if entry is not None:
            return entry
    name, value = header
    validate_response_header(name, value)
    entry = (name + b": " + value + b"\r\n", _KINDS.get(name.lower(), PLAIN))
    if len(_line_cache) >= _LINE_CACHE_SIZE:
        _line_cache.clear()
    _line_cache[(name, value)] = entry
    return entry


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """Split an origin-form (or absolute-form) request target into (raw_path, query_string)."""
    if target[:1] != b"/" and target != b"*":
        scheme_end = target.find(b"://")
        if scheme_end != -1:
            path_start = target.find(b"/", scheme_end + 3)
            target = target[path_start:] if path_start != -1 else b"/"
    raw_path, _, query = target.partition(b"?")
    hash_at = raw_path.find(b"#")
    if hash_at != -1:
        raw_path = raw_path[:hash_at]
    return raw_path, query


def decode_path(raw_path: bytes) -> str:
    """Percent-decode a raw path into the ASGI ``path`` (UTF-8, invalid bytes replaced)."""
    text = raw_path.decode("latin-1")  # HTTP/1.1 targets are ASCII; HTTP/2 may hold obs-text
    return unquote(text) if "%" in text else text


_FRAMING = frozenset((b"content-length", b"connection", b"transfer-encoding", b"server", b"date"))


def complete_response(
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    server_name: bytes | None,
    head: bool = False,
) -> bytes:
    """A complete HTTP/1.1 response after which the connection closes: the framing of every
    answer the server makes itself and of a WebSocket handshake denial.

    The framing fields (``content-length``, ``connection``, ``server``, ``date``) are this
    function's; the caller's fields pass :func:`validate_response_header` (a denial carries the
    application's). ``head``: the answer to a HEAD request, which announces the body's length
    but omits it.
    """
    parts = [status_line(status, http10=False)]
    for name, value in headers:
        if name.lower() not in _FRAMING:
            validate_response_header(name, value)
            parts.append(name + b": " + value + b"\r\n")
    parts.append(b"content-length: %d\r\nconnection: close\r\n" % len(body))
    if server_name:
        parts.append(b"server: " + server_name + b"\r\n")
    parts.append(b"date: " + date_header_value() + b"\r\n\r\n")
    if not head:
        parts.append(body)
    return b"".join(parts)


LAST_CHUNK = b"0\r\n\r\n"
