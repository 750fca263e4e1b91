"""Trusted proxy headers: X-Forwarded-For/-Port/-Proto and Daphne-Root-Path.

Daphne honours these headers from any client; headrace honours them only when the direct peer
is in ``--forwarded-allow-ips`` (default: loopback), so a client cannot spoof its address or
root path by sending the headers itself. The parsing follows Daphne: the FIRST address of
``X-Forwarded-For`` is the client, the port comes from ``X-Forwarded-Port`` (0 when absent),
the scheme from ``X-Forwarded-Proto``; the root path header is percent-decoded.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from headrace.server.state import ServerState

_SCHEMES = frozenset({"http", "https", "ws", "wss"})


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def apply_trusted_headers(
    state: ServerState,
    headers: list[tuple[bytes, bytes]],
    client: Any,
    scheme: str,
    root_path: str,
) -> tuple[Any, str, str]:
    """Return (client, scheme, root_path) after honouring headers from a trusted peer."""
    proxy = state.settings.proxy
    if not proxy.is_trusted(client):
        return client, scheme, root_path
    header_root = _header(headers, b"daphne-root-path")
    if header_root is not None:
        root_path = unquote(header_root)
    if not proxy.headers:
        return client, scheme, root_path
    address = _header(headers, proxy.host_header)
    if address is None:
        return client, scheme, root_path
    host = address.split(",")[0].strip()
    port = 0
    port_text = _header(headers, proxy.port_header)
    if port_text is not None and port_text.strip().isdigit():
        port = int(port_text)
    proto = _header(headers, b"x-forwarded-proto")
    if proto is not None and proto.strip().lower() in _SCHEMES:
        scheme = proto.strip().lower()
    return (host, port), scheme, root_path
