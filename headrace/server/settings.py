"""Typed protocol settings, resolved once per server from its :class:`~.config.Config`.

:class:`~.config.Config` is what the user typed (one field per option). The wires and the
stream layer need it in their own terms: the request limits every HTTP request obeys, the
HTTP/2 settings the connection advertises and enforces, the WebSocket limits and timers.
:meth:`ProtocolSettings.from_config` builds all of them once (frozen dataclasses) when the
server's :class:`~.state.ServerState` is made; connections and streams read plain attributes,
never option names.
"""

from __future__ import annotations

from dataclasses import dataclass

from headrace.server.config import Config
from headrace.server.protocols.http2 import H2Settings
from headrace.server.streams.websocket import WebSocketSettings


@dataclass(frozen=True, slots=True)
class HTTPLimits:
    """What every HTTP request obeys, over every wire."""

    max_body_size: int = 0
    """``--max-request-body-size``: larger bodies get ``413`` (0: no limit)."""
    max_header_size: int = 64 * 1024
    """``--max-request-header-size``: larger request heads get ``431``."""
    limit_concurrency: int | None = None
    """``--limit-concurrency``: requests beyond this many running get ``503``."""
    http_timeout: float | None = None
    """``--http-timeout``: ``503`` if the response has not started by then, else cut off."""
    application_close_timeout: float = 10.0
    """Seconds an application may run on after its client left."""
    keep_alive_timeout: float = 5.0
    """``--timeout-keep-alive``: an idle connection closes after this long."""

    @classmethod
    def from_config(cls, config: Config) -> HTTPLimits:
        return cls(
            max_body_size=config.max_request_body_size,
            max_header_size=config.max_request_header_size,
            limit_concurrency=config.limit_concurrency,
            http_timeout=config.http_timeout,
            application_close_timeout=config.application_close_timeout,
            keep_alive_timeout=config.timeout_keep_alive,
        )


def http2_settings(config: Config) -> H2Settings | None:
    """The HTTP/2 settings of the server's connections; None when HTTP/2 is off."""
    if not config.http2:
        return None
    return H2Settings(
        max_concurrent_streams=config.http2_max_concurrent_streams,
        initial_window_size=config.http2_initial_window_size,
        max_header_list_size=config.max_request_header_size,
    )


@dataclass(frozen=True, slots=True)
class ProtocolSettings:
    """Everything the wires and streams take from the configuration."""

    limits: HTTPLimits
    http2: H2Settings | None
    websocket: WebSocketSettings

    @classmethod
    def from_config(cls, config: Config) -> ProtocolSettings:
        return cls(
            limits=HTTPLimits.from_config(config),
            http2=http2_settings(config),
            websocket=WebSocketSettings.from_config(config),
        )
