"""ASGI connection scopes, built in one place for every wire.

A wire parses its own request head (httptools for HTTP/1.1, the HPACK block and pseudo-header
fields for HTTP/2) and hands the pieces to :func:`http_scope`, which applies what is the same
everywhere: the ASGI version, ``path`` decoding, ``root_path``, trusted proxy headers
(:mod:`headrace.server.proxy`), the lifespan ``state`` copy and the ``extensions`` the wire
offers. A WebSocket request (an HTTP/1.1 ``Upgrade`` or an RFC 8441 extended CONNECT) is an
HTTP scope first; :func:`websocket_scope` turns it into the websocket scope (``ws``/``wss``,
no method, only the ``tls`` extension kept, ``websocket.http.response`` offered) and the
handshake (:func:`headrace.server.protocols.websocket.validate_request`, the one parser of
``Sec-WebSocket-Protocol``) fills in ``subprotocols``.
"""

from __future__ import annotations

from typing import Any

from headrace._types import Scope
from headrace.server.protocols.http11 import decode_path
from headrace.server.proxy import apply_trusted_headers
from headrace.server.state import ServerState

_SECURE_SCHEMES = frozenset(("https", "wss"))


def http_scope(
    state: ServerState,
    *,
    http_version: str,
    method: str,
    scheme: str,
    raw_path: bytes,
    query_string: bytes,
    headers: list[tuple[bytes, bytes]],
    client: Any,
    server: Any,
    extensions: dict[str, Any],
    proxied: bool,
) -> Scope:
    """The ASGI http scope of one request.

    ``proxied``: the request may carry proxy headers (``--proxy-headers``, or the wire saw one
    of the fields); they are honoured only from a trusted peer.
    """
    root_path = state.settings.root_path
    if proxied:
        client, scheme, root_path = apply_trusted_headers(state, headers, client, scheme, root_path)
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": http_version,
        "method": method,
        "scheme": scheme,
        "path": decode_path(raw_path),
        "raw_path": raw_path,
        "query_string": query_string,
        "root_path": root_path,
        "headers": headers,
        "client": client,
        "server": server,
        "state": state.lifespan_state.copy(),
        "extensions": extensions,
    }


def websocket_scope(http: Scope) -> Scope:
    """The ASGI websocket scope for the WebSocket request whose http scope is ``http``.

    ``subprotocols`` is left empty: the wire's handshake sets it from the validated request.
    """
    extensions: dict[str, Any] = {"websocket.http.response": {}}
    tls = http["extensions"].get("tls")
    if tls is not None:
        extensions["tls"] = tls
    return {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": http["http_version"],
        "scheme": "wss" if http["scheme"] in _SECURE_SCHEMES else "ws",
        "path": http["path"],
        "raw_path": http["raw_path"],
        "query_string": http["query_string"],
        "root_path": http["root_path"],
        "headers": http["headers"],
        "client": http["client"],
        "server": http["server"],
        "subprotocols": [],
        "state": http["state"],
        "extensions": extensions,
    }
