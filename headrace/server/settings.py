"""Typed protocol settings, resolved once per server from its :class:`~.config.Config`.

:class:`~.config.Config` is what the user typed (one field per option). The wires and the
stream layer need it in their own terms: the request limits every HTTP request obeys, the
HTTP/2 settings the connection advertises and enforces, the WebSocket limits and timers,
which peers may speak for a client through proxy headers, and what every response carries.
:meth:`ProtocolSettings.from_config` builds all of them once (frozen dataclasses) when the
server's :class:`~.state.ServerState` is made; connections and streams read plain attributes,
never option names, and no wire or stream reads the :class:`~.config.Config` itself.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from headrace.server.config import Config
from headrace.server.protocols.http2_settings import H2Settings
from headrace.server.protocols.websocket_settings import DeflateConfig


@dataclass(frozen=True, slots=True)
class HTTPLimits:
    """What every HTTP request obeys, over every wire (the values and defaults are the
    options' own, in :class:`~.config.Config`: nothing here is defined a second time)."""

    max_body_size: int
    """``--max-request-body-size``: larger bodies get ``413`` (0: no limit)."""
    max_header_size: int
    """``--max-request-header-size``: larger request heads get ``431``."""
    limit_concurrency: int | None
    """``--limit-concurrency``: requests beyond this many running get ``503``."""
    http_timeout: float | None
    """``--http-timeout``: ``503`` if the response has not started by then, else cut off."""
    application_close_timeout: float
    """Seconds an application may run on after its client left."""
    keep_alive_timeout: float
    """``--timeout-keep-alive``: an idle connection closes after this long."""
    request_header_timeout: float
    """``--timeout-request-headers``: an HTTP/1.1 connection whose request head is still
    incomplete after this long is closed."""

    @classmethod
    def from_config(cls, config: Config) -> HTTPLimits:
        return cls(
            max_body_size=config.max_request_body_size,
            max_header_size=config.max_request_header_size,
            limit_concurrency=config.limit_concurrency,
            http_timeout=config.http_timeout,
            application_close_timeout=config.application_close_timeout,
            keep_alive_timeout=config.timeout_keep_alive,
            request_header_timeout=config.timeout_request_headers,
        )


@dataclass(frozen=True, slots=True)
class WebSocketSettings:
    """The WebSocket part of the server configuration, resolved once per server (the values
    and defaults are the options' own, in :class:`~headrace.server.config.Config`)."""

    max_message_size: int
    max_frame_size: int
    ping_interval: float
    ping_timeout: float
    websocket_timeout: float
    connect_timeout: float
    application_close_timeout: float
    receive_queue: int
    deflate: DeflateConfig
    server_header: bytes | None
    close_timeout: float = 5.0
    """Not an option: how long a closing handshake may take before the connection is cut."""

    @classmethod
    def from_config(cls, config: Config, server_header: bytes | None) -> WebSocketSettings:
        return cls(
            max_message_size=config.websocket_max_message_size,
            max_frame_size=config.websocket_max_frame_size,
            ping_interval=config.ping_interval,
            ping_timeout=config.ping_timeout,
            websocket_timeout=config.websocket_timeout,
            connect_timeout=config.websocket_connect_timeout,
            application_close_timeout=config.application_close_timeout,
            receive_queue=config.websocket_receive_queue,
            deflate=DeflateConfig(enabled=config.ws_per_message_deflate),
            server_header=server_header,
        )


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """Which peers may speak for the client (``--forwarded-allow-ips``), and through what."""

    headers: bool
    """``--proxy-headers``: read the client address, port and scheme from trusted peers'
    headers on every request (without it only a seen ``X-Forwarded-For`` is looked at)."""
    host_header: bytes
    """``--proxy-headers-host``, lower-cased: the field holding the client address."""
    port_header: bytes
    """``--proxy-headers-port``, lower-cased: the field holding the client port."""
    trusted_hosts: frozenset[str]
    """The single addresses of ``--forwarded-allow-ips`` (``*``: every peer)."""
    trusted_networks: tuple[IPNetwork, ...]
    """The CIDR networks of ``--forwarded-allow-ips``."""

    @classmethod
    def from_config(cls, config: Config) -> ProxySettings:
        hosts, networks = set(), []
        for entry in config.forwarded_allow_ips:
            if "/" in entry:
                networks.append(ipaddress.ip_network(entry, strict=False))
            else:
                hosts.add(entry)
        return cls(
            headers=config.proxy_headers,
            host_header=_field_name(config.proxy_headers_host, b"x-forwarded-for"),
            port_header=_field_name(config.proxy_headers_port, b"x-forwarded-port"),
            trusted_hosts=frozenset(hosts),
            trusted_networks=tuple(networks),
        )

    def is_trusted(self, client: tuple[str, int] | None) -> bool:
        """Whether proxy headers / Daphne-Root-Path from this peer are honoured."""
        if client is None or "*" in self.trusted_hosts:
            return True  # a Unix-socket peer is a local process (the usual reverse proxy)
        host = client[0]
        if host in self.trusted_hosts:
            return True
        if not self.trusted_networks:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.trusted_networks)


def _field_name(option: str | None, default: bytes) -> bytes:
    return option.lower().encode("latin-1") if option else default


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
    """None with ``--no-http2``: no ALPN ``h2``, no h2c preface or upgrade."""
    websocket: WebSocketSettings
    proxy: ProxySettings
    root_path: str
    """``--root-path``: every scope's ``root_path`` (a trusted Daphne-Root-Path overrides it)."""
    server_header: bytes | None
    """``--server-name`` encoded: the ``Server`` field of every response (None: no field)."""

    @classmethod
    def from_config(cls, config: Config) -> ProtocolSettings:
        server_header = config.server_name.encode("latin-1") if config.server_name else None
        return cls(
            limits=HTTPLimits.from_config(config),
            http2=http2_settings(config),
            websocket=WebSocketSettings.from_config(config, server_header),
            proxy=ProxySettings.from_config(config),
            root_path=config.root_path,
            server_header=server_header,
        )
