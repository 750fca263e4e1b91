"""Origin validation for WebSocket handshakes (Channels' ``channels.security.websocket``).

Theory of operation
-------------------
Browsers send an ``Origin`` header with every WebSocket handshake and, unlike HTTP requests,
never enforce a same-origin policy on the answer; a page on any site may open a socket to
ours and ride on our cookies. ``OriginValidator`` checks that header against a list of
patterns before the inner application sees the connection, and denies the handshake (the
server answers ``403``) when nothing matches.

Patterns follow Channels exactly:

* ``"*"`` matches every origin, including a missing or unparsable one;
* a bare host (``"example.com"``) matches that host on any scheme and port (a pattern
  without ``://`` is a bare host: ``"localhost:8000"`` means host ``localhost``, where
  Channels misreads ``localhost`` as a scheme and matches nothing);
* a host starting with a dot (``".example.com"``) matches the domain and all subdomains;
* ``scheme://host[:port]`` must match scheme, host and port; a missing port means the
  scheme's default (80 for ``http``/``ws``, 443 for ``https``/``wss``).

A missing Origin (non-browser clients) is denied unless ``"*"`` is in the list. The last
``Origin`` header wins, as in Channels. Unlike Channels, an origin whose port is not a
number is denied instead of raising.

``OriginValidator`` does not need Django. ``AllowedHostsOriginValidator`` reads
``settings.ALLOWED_HOSTS`` (with Django's DEBUG fallback to the loopback names) and is the
only part that imports Django, lazily.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from urllib.parse import SplitResult, urlsplit

from headrace._types import ASGIApp, Receive, Scope, Send
from headrace.generic.websocket import AsyncWebsocketConsumer

__all__ = [
    "AllowedHostsOriginValidator",
    "OriginValidator",
    "WebsocketDenier",
    "is_same_domain",
    "origin_matches",
    "origin_port",
    "parse_origin",
]

_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
_DEBUG_ALLOWED_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def is_same_domain(host: str, pattern: str) -> bool:
    """True when ``host`` is ``pattern`` or, for a ``.domain`` pattern, one of its subdomains."""
    if not pattern:
        return False
    pattern = pattern.lower()
    if pattern.startswith("."):
        return host.endswith(pattern) or host == pattern[1:]
    return host == pattern


def parse_origin(scope: Scope) -> SplitResult | None:
    """The parsed value of the last ``Origin`` header, or None when absent or undecodable."""
    parsed: SplitResult | None = None
    for name, value in scope.get("headers", ()):
        if name.lower() == b"origin":
            try:
                parsed = urlsplit(value.decode("latin-1"))
            except ValueError:
                parsed = None
    return parsed


def _port(url: SplitResult) -> int | None:
    """Explicit port, else the scheme's default port, else None; raises ValueError if invalid."""
    if url.port is not None:
        return url.port
    return _DEFAULT_PORTS.get(url.scheme)


def _pattern_host(pattern: str) -> str:
    """The host of a scheme-less pattern; a port (``localhost:8000``) is ignored."""
    try:
        return urlsplit("//" + pattern).hostname or pattern
    except ValueError:
        return pattern


def origin_port(origin: SplitResult) -> int | None:
    """The origin's port (explicit, else the scheme's default), None when it has none or
    when the explicit port is not a number."""
    try:
        return _port(origin)
    except ValueError:
        return None


def origin_matches(origin: SplitResult | None, pattern: str) -> bool:
    """Whether one allowed-origin pattern admits ``origin`` (see the module docstring)."""
    if pattern == "*":
        return True
    if origin is None or not origin.hostname:
        return False
    if "://" not in pattern:
        return is_same_domain(origin.hostname, _pattern_host(pattern))
    parsed_pattern = urlsplit(pattern.lower())
    try:
        same_port = _port(origin) == _port(parsed_pattern)
    except ValueError:
        return False
    return (
        parsed_pattern.scheme == origin.scheme
        and same_port
        and is_same_domain(origin.hostname, parsed_pattern.hostname or "")
    )


class WebsocketDenier(AsyncWebsocketConsumer):
    """A consumer that refuses every WebSocket handshake (the server answers 403); use
    ``WebsocketDenier.as_asgi()`` in a router, or an instance as an ASGI app."""

    async def connect(self) -> None:
        await self.close()


class OriginValidator:
    """Lets a WebSocket handshake through only when its Origin matches ``allowed_origins``."""

    def __init__(self, application: ASGIApp, allowed_origins: Iterable[str]) -> None:
        self.application = application
        self.allowed_origins: Sequence[str] = tuple(allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            raise ValueError("OriginValidator only handles WebSocket connections")
        if self.valid_origin(parse_origin(scope)):
            await self.application(scope, receive, send)
        else:
            await WebsocketDenier()(scope, receive, send)

    def valid_origin(self, parsed_origin: SplitResult | None) -> bool:
        """True when any allowed pattern admits the origin; a missing one needs ``"*"``."""
        if parsed_origin is None and "*" not in self.allowed_origins:
            return False
        return self.validate_origin(parsed_origin)

    def validate_origin(self, parsed_origin: SplitResult | None) -> bool:
        """Override to add rules; the default checks the patterns."""
        return any(
            self.match_allowed_origin(parsed_origin, pattern) for pattern in self.allowed_origins
        )

    def match_allowed_origin(self, parsed_origin: SplitResult | None, pattern: str) -> bool:
        """Whether one pattern admits the origin (override to change the pattern rules)."""
        return origin_matches(parsed_origin, pattern)

    def get_origin_port(self, origin: SplitResult | None) -> int | None:
        """The origin's port, the scheme's default port when none is given, else None."""
        return None if origin is None else origin_port(origin)


def AllowedHostsOriginValidator(application: ASGIApp) -> OriginValidator:
    """An ``OriginValidator`` allowing ``settings.ALLOWED_HOSTS`` (loopback names in DEBUG)."""
    from django.conf import settings

    allowed_hosts: Sequence[str] = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed_hosts:
        allowed_hosts = list(_DEBUG_ALLOWED_HOSTS)
    return OriginValidator(application, allowed_hosts)
