"""The one rule for header fields an application sends, shared by every wire.

I/O-free. A response field (HTTP/1.1 or HTTP/2 head, trailers, 103 Early Hints, a WebSocket
accept or denial) goes on the wire only when its name is an RFC 9110 §5.1 token and its value
holds no control byte other than horizontal tab (RFC 9110 §5.5: CR, LF and NUL would split or
end the field; the other controls are refused too, as every wire did on HTTP/1.1 already).
Bytes 0x80-0xFF (obs-text) are allowed. The ``link`` fields of an early hint pass
:func:`link_field` (the same rule, surrounding whitespace trimmed, an empty link refused).
Each wire applies its own framing afterwards (HTTP/2 lower-cases names and trims surrounding
whitespace, HTTP/1.1 writes the field as given), but none of them may skip this check: a
field one wire refuses, every wire refuses.
"""

from __future__ import annotations

TOKEN_CHARS = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_CONTROL_CHARS = bytes(sorted(set(range(0x20)) - {0x09} | {0x7F}))


class InvalidField(ValueError):
    """A header field that must not be sent (the stream answers 500 or aborts instead)."""


def field_error(name: bytes, value: bytes) -> str | None:
    """Why ``(name, value)`` cannot be sent, or None when it can."""
    if not isinstance(name, bytes | bytearray) or not isinstance(value, bytes | bytearray):
        return "header names and values must be bytes"
    if not name or name.translate(None, TOKEN_CHARS):
        return f"invalid header name {bytes(name)!r}"
    if len(value.translate(None, _CONTROL_CHARS)) != len(value):
        return f"control character in the value of header {bytes(name)!r}"
    return None


def check_response_field(name: bytes, value: bytes) -> None:
    """Raise :class:`InvalidField` unless the application's field may be sent as is."""
    error = field_error(name, value)
    if error is not None:
        raise InvalidField(error)


def link_field(link: object) -> tuple[bytes, bytes]:
    """The ``link`` field for one entry of an ``http.response.early_hint`` message's ``links``.

    Surrounding whitespace is trimmed (HTTP/2 forbids it, HTTP/1.1 ignores it); raises
    :class:`InvalidField` for a link that is not bytes, is empty, or fails the field rule.
    """
    if not isinstance(link, bytes | bytearray):
        raise InvalidField(f"early hint links must be bytes, not {type(link).__name__}")
    value = bytes(link).strip(b" \t")
    if not value:
        raise InvalidField("empty link in an early hint")
    check_response_field(b"link", value)
    return (b"link", value)
