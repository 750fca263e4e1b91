"""HTTP/2 header blocks for the server side: HPACK with caches, and RFC 9113 §8 validation.

Theory of operation
-------------------
HPACK decoding is the ``hpack`` package's, wrapped by :class:`CachingDecoder`: a client that
repeats the same request headers sends the same indexed block as long as the dynamic table
does not change, so a block that left the table unchanged is remembered and the next identical
block costs a dictionary lookup (the caller caches the *validated* request under the same key).
Any block that changes the table (insertion, eviction, size update) clears the cache.

Encoding responses uses :class:`FastEncoder`, which never indexes: each field is a static
table match (one byte) or a literal without indexing, so a field's bytes never change and are
cached. After the peer changes ``SETTINGS_HEADER_TABLE_SIZE`` the next block starts with a
table size update to 0, which is always within the peer's limit.

:func:`validate_request` splits a decoded request block into pseudo-headers and fields and
enforces RFC 9113 §8.2/§8.3: pseudo-headers first, only request ones, each once; lower-case
token names; no connection-specific fields; ``te`` only ``trailers``; no CR/LF/NUL and no
surrounding whitespace in values; pseudo-header values non-empty without spaces or control
bytes, ``:method`` a token; ``:authority`` without userinfo and equal to any ``host`` field; the
CONNECT and extended-CONNECT (RFC 8441) rules; one ``content-length`` value. Several
``cookie`` fields are joined with ``; `` (§8.2.3), and a ``host`` field is made from
``:authority`` when the client sent none.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hpack import Decoder, HeaderTuple, NeverIndexedHeaderTuple
from hpack.table import HeaderTable

Headers = list[tuple[bytes, bytes]]


# -- HPACK -----------------------------------------------------------------------------------


def _hpack_integer(value: int, prefix_bits: int, first_byte: int) -> bytes:
    """RFC 7541 §5.1 integer with an N-bit prefix, OR-ed into ``first_byte``."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first_byte | value,))
    out = bytearray((first_byte | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _hpack_string(value: bytes) -> bytes:
    return _hpack_integer(len(value), 7, 0) + value


_STATIC_FIELDS: dict[tuple[bytes, bytes], int] = {}
_STATIC_NAMES: dict[bytes, int] = {}
for _index, (_name, _value) in enumerate(HeaderTable.STATIC_TABLE, start=1):
    _STATIC_FIELDS.setdefault((_name, _value), _index)
    _STATIC_NAMES.setdefault(_name, _index)


class FastEncoder:
    """An HPACK encoder for responses that never indexes, with every field's bytes cached.

    A field is a static-table match (one byte) or a literal *without indexing*; the dynamic
    table is never used, so a field's encoding never changes. After the peer changes
    SETTINGS_HEADER_TABLE_SIZE the next block starts with a table size update to 0, which is
    always within the peer's limit.
    """

    CACHE_LIMIT = 1024
    MAX_CACHED_FIELD = 512

    __slots__ = ("_cache", "size_update_pending")

    def __init__(self) -> None:
        self._cache: dict[tuple[bytes, bytes], bytes] = {}
        self.size_update_pending = False

    def encode(self, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
        parts: list[bytes] = []
        if self.size_update_pending:
            self.size_update_pending = False
            parts.append(b"\x20")
        cache = self._cache
        for header in headers:
            if isinstance(header, NeverIndexedHeaderTuple):
                parts.append(self._literal(header[0], header[1], 0x10))
                continue
            encoded = cache.get(header)
            if encoded is None:
                encoded = self._field(header[0], header[1])
                if len(cache) < self.CACHE_LIMIT and len(encoded) <= self.MAX_CACHED_FIELD:
                    cache[(header[0], header[1])] = encoded
            parts.append(encoded)
        return b"".join(parts)

    def _field(self, name: bytes, value: bytes) -> bytes:
        index = _STATIC_FIELDS.get((name, value))
        if index is not None:
            return _hpack_integer(index, 7, 0x80)
        return self._literal(name, value, 0x00)

    @staticmethod
    def _literal(name: bytes, value: bytes, first_byte: int) -> bytes:
        name_index = _STATIC_NAMES.get(name)
        if name_index is not None:
            return _hpack_integer(name_index, 4, first_byte) + _hpack_string(value)
        return bytes((first_byte,)) + _hpack_string(name) + _hpack_string(value)


class CachingDecoder(Decoder):
    """An HPACK decoder that remembers blocks which left the dynamic table unchanged.

    A client repeating the same request headers sends the same indexed block as long as the
    dynamic table does not change, and decoding it again gives the same list. Any block that
    changes the table (insertion, eviction, size update) clears the cache.
    """

    CACHE_LIMIT = 64
    MAX_CACHED_BLOCK = 1024

    def __init__(self, max_header_list_size: int) -> None:
        super().__init__(max_header_list_size=max_header_list_size)
        self.cache: dict[bytes, Any] = {}

    def decode_block(self, data: bytes) -> tuple[list[HeaderTuple], bool]:
        """Decode; also say whether the result may be cached under ``data``."""
        table = self.header_table
        entries = table.dynamic_entries
        first = entries[0] if entries else None
        before = (len(entries), table.maxsize)
        headers = list(self.decode(data, raw=True))
        # Every insertion puts a new entry first, every eviction shortens the table (or comes
        # with an insertion), a size update changes maxsize: these three see any change,
        # through hpack's public attributes only.
        after_first = entries[0] if entries else None
        unchanged = after_first is first and before == (len(entries), table.maxsize)
        if not unchanged:
            self.cache.clear()
        cacheable = unchanged and len(data) <= self.MAX_CACHED_BLOCK
        if cacheable and len(self.cache) >= self.CACHE_LIMIT:
            self.cache.clear()
        return headers, cacheable


# -- request header validation (RFC 9113 §8.2, §8.3) -----------------------------------------

_TOKEN = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
_BAD_VALUE = re.compile(rb"[\x00\r\n]")
_BAD_PSEUDO_VALUE = re.compile(rb"[\x00-\x20\x7f]")
_METHOD_TOKEN = _TOKEN + b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_CONNECTION_SPECIFIC = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade")
)
_REQUEST_PSEUDO = frozenset((b":method", b":scheme", b":authority", b":path", b":protocol"))


@dataclass(frozen=True, slots=True)
class RequestHead:
    """A validated request header block."""

    pseudo: dict[bytes, bytes]
    headers: Headers
    content_length: int | None
    size: int
    """The header list size as SETTINGS_MAX_HEADER_LIST_SIZE counts it (RFC 9113 §6.5.2)."""


def _check_field(name: bytes, value: bytes) -> None:
    if not name or name.translate(None, _TOKEN):
        raise ValueError(f"invalid header name {name!r}")
    if _BAD_VALUE.search(value) or value[:1] in (b" ", b"\t") or value[-1:] in (b" ", b"\t"):
        raise ValueError(f"invalid value for header {name!r}")
    if name in _CONNECTION_SPECIFIC:
        raise ValueError(f"connection-specific header {name!r}")
    if name == b"te" and value != b"trailers":
        raise ValueError("te other than trailers")


def _content_length(values: list[bytes]) -> int | None:
    if not values:
        return None
    if len(set(values)) != 1 or not values[0].isdigit():
        raise ValueError("invalid content-length")
    return int(values[0])


def validate_request(headers: Iterable[tuple[bytes, bytes]], connect_protocol: bool) -> RequestHead:
    """Split and validate a request block (raises ValueError when malformed)."""
    pseudo: dict[bytes, bytes] = {}
    regular: Headers = []
    cookies: list[bytes] = []
    lengths: list[bytes] = []
    for name, value in headers:
        if name[:1] == b":":
            if regular or cookies or name not in _REQUEST_PSEUDO or name in pseudo:
                raise ValueError(f"misplaced, unknown or repeated pseudo-header {name!r}")
            pseudo[name] = value
            continue
        _check_field(name, value)
        if name == b"cookie":
            cookies.append(value)
            continue
        if name == b"content-length":
            lengths.append(value)
        regular.append((name, value))
    if cookies:
        regular.append((b"cookie", b"; ".join(cookies)))
    _check_pseudo(pseudo, connect_protocol)
    authority = pseudo.get(b":authority")
    if authority is not None:
        _check_authority(authority, regular)
    size = sum(len(name) + len(value) + 32 for name, value in pseudo.items())
    size += sum(len(name) + len(value) + 32 for name, value in regular)
    if authority is not None and not any(name == b"host" for name, _ in regular):
        regular.insert(0, (b"host", authority))  # what an HTTP/1.1 view of the request has
    return RequestHead(pseudo, regular, _content_length(lengths), size)


def _check_authority(authority: bytes, regular: Headers) -> None:
    """RFC 9113 §8.3.1: no userinfo, and a ``host`` field must name the same authority."""
    if b"@" in authority:
        raise ValueError(":authority with userinfo")
    for name, value in regular:
        if name == b"host" and value.lower() != authority.lower():
            raise ValueError("host differs from :authority")


def _check_pseudo(pseudo: dict[bytes, bytes], connect_protocol: bool) -> None:
    for name, value in pseudo.items():
        # Values go into the scope and may be forwarded as HTTP/1.1: no controls, no spaces.
        if not value or _BAD_PSEUDO_VALUE.search(value):
            raise ValueError(f"invalid value for {name.decode()}")
    method = pseudo.get(b":method")
    if method is None:
        raise ValueError("missing :method")
    if method.translate(None, _METHOD_TOKEN):
        raise ValueError("invalid :method")
    if b":protocol" in pseudo:
        if method != b"CONNECT" or not connect_protocol:
            raise ValueError(":protocol needs an extended CONNECT")
    elif method == b"CONNECT":
        if b":scheme" in pseudo or b":path" in pseudo or b":authority" not in pseudo:
            raise ValueError("CONNECT needs :authority and no :scheme or :path")
        return
    path = pseudo.get(b":path")
    if not path or b":scheme" not in pseudo:
        raise ValueError("missing :scheme or :path")
    if path[:1] != b"/" and not (path == b"*" and method == b"OPTIONS"):
        raise ValueError("invalid :path")


def validate_trailers(headers: Iterable[tuple[bytes, bytes]]) -> None:
    for name, value in headers:
        if name[:1] == b":":
            raise ValueError("pseudo-header in trailers")
        _check_field(name, value)


def split_request_headers(headers: Headers) -> tuple[dict[bytes, bytes], Headers]:
    """Separate pseudo-headers (``:method``…) from regular fields."""
    pseudo: dict[bytes, bytes] = {}
    regular: Headers = []
    for name, value in headers:
        if name[:1] == b":":
            pseudo[name] = value
        else:
            regular.append((name, value))
    return pseudo, regular
