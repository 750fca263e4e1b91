"""The Channels 1.x message formats the bridge speaks, built from ASGI 3 scopes and checked on
the way back.

Outgoing (server → workers) messages are built here key by key, as the ASGI draft spec and
Daphne 1.x define them: ``client`` / ``server`` are ``[host, port]`` lists, ``headers`` is a list
of ``[name, value]`` byte pairs with lower-case names, and a header whose name contains ``_`` is
left out (Daphne's CVE-2015-0219 rule: Django maps ``-`` and ``_`` to the same ``META`` key).

Incoming (workers → server) replies are untrusted: :class:`BadReply` names what is wrong with
one, and the bridges turn it into a logged error and a 500 / close 1011 for the client.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from headrace._types import Scope
from headrace.asgi import backend_name
from headrace.layers.base import BaseChannelLayer

__all__ = [
    "BODY_CHANNEL_PREFIX",
    "BadReply",
    "body_channel_names",
    "describe",
    "http_request_message",
    "response_headers",
    "websocket_connect_message",
]

BODY_CHANNEL_PREFIX = "http.request.body"
"""The single-reader (``?``) channel a long request body is streamed on."""


class BridgeOwner(Protocol):
    """What a connection's bridge reads from the application that made it (InterfaceApplication)."""

    http_timeout: float | None
    body_chunk_size: int

    @property
    def backend(self) -> BaseChannelLayer: ...


class BadReply(ValueError):
    """A worker's reply the bridge cannot act on (not a dict, unknown keys, wrong types)."""


def body_channel_names() -> tuple[str, str]:
    """A new body channel: ``(ASGI-1 name, backend name)``, e.g.
    ``("http.request.body?Ab3", "http.request.body__sr__Ab3")``.

    Workers see the ``?`` name in ``body_channel``; the ASGI-1 view
    (:mod:`headrace.asgi`) receives it from the backend name, which the bridge sends to."""
    name = f"{BODY_CHANNEL_PREFIX}?{BaseChannelLayer.random_suffix(16)}"
    return name, backend_name(name)


def describe(reply: object, limit: int = 200) -> str:
    """A short ``repr`` of a reply for log lines."""
    text = repr(reply)
    return text if len(text) <= limit else text[:limit] + "..."


def _address(value: Any) -> list[Any] | None:
    return None if value is None else list(value)


def _headers(scope: Scope) -> list[list[bytes]]:
    return [[name, value] for name, value in scope["headers"] if b"_" not in name]


def http_request_message(scope: Scope, reply_channel: str, body: bytes) -> dict[str, Any]:
    """The ``http.request`` message for an HTTP scope (``body_channel`` is added by the caller
    when the body continues)."""
    return {
        "reply_channel": reply_channel,
        "http_version": scope["http_version"],
        "method": scope["method"],
        "scheme": scope["scheme"],
        "path": scope["path"],
        "query_string": scope["query_string"],
        "root_path": scope["root_path"],
        "headers": _headers(scope),
        "body": body,
        "client": _address(scope.get("client")),
        "server": _address(scope.get("server")),
    }


def websocket_connect_message(scope: Scope, reply_channel: str) -> dict[str, Any]:
    """The ``websocket.connect`` message (``order`` 0) for a WebSocket scope."""
    message: dict[str, Any] = {
        "reply_channel": reply_channel,
        "scheme": scope["scheme"],
        "path": scope["path"],
        "query_string": scope["query_string"],
        "root_path": scope["root_path"],
        "headers": _headers(scope),
        "client": _address(scope.get("client")),
        "server": _address(scope.get("server")),
        "order": 0,
    }
    subprotocols = scope.get("subprotocols")
    if subprotocols:
        message["subprotocols"] = list(subprotocols)
    return message


def _as_bytes(value: object, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            return value.encode("latin-1")
        except UnicodeEncodeError:
            raise BadReply(f"{what} {value!r} is not latin-1") from None
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise BadReply(f"{what} must be bytes, not {type(value).__name__}")


def response_headers(headers: object) -> list[tuple[bytes, bytes]]:
    """An ``http.response`` ``headers`` value as ASGI header pairs (names lower-cased; ``str``
    names and values are accepted as latin-1, like Daphne 1.x's shim)."""
    if not isinstance(headers, list | tuple):
        raise BadReply(f"'headers' must be a list of [name, value] pairs, not {describe(headers)}")
    pairs: list[tuple[bytes, bytes]] = []
    for pair in headers:
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise BadReply(f"header {describe(pair)} is not a [name, value] pair")
        pairs.append(
            (_as_bytes(pair[0], "header name").lower(), _as_bytes(pair[1], "header value"))
        )
    return pairs


def content_of(reply: dict[str, Any]) -> bytes:
    """The ``content`` of an HTTP response message or chunk (``b""`` when absent)."""
    content = reply.get("content", b"")
    return b"" if content is None else _as_bytes(content, "'content'")


def check_keys(reply: object, allowed: Iterable[str], what: str) -> dict[str, Any]:
    """``reply`` as a dict whose keys are all in ``allowed``; else :class:`BadReply`."""
    if not isinstance(reply, dict):
        raise BadReply(f"{what} must be a dict, not {type(reply).__name__}")
    unknown = set(reply) - set(allowed)
    if unknown:
        raise BadReply(f"{what} has unknown keys {sorted(map(str, unknown))}")
    return reply
