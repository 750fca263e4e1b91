"""State shared by every connection of one running server.

``ServerState`` is created by :class:`headrace.server.server.Server` and handed to every
:class:`~headrace.server.connection.Connection`. It carries the app, the config, values
pre-computed from the config for the hot path (the encoded Server header, the trusted-proxy
set), the lifespan state copied into scopes, the access logger, and the live connections and
app tasks that graceful shutdown waits for.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Any, Protocol

from headrace._types import ASGIApp
from headrace.server.accesslog import AccessLogger
from headrace.server.config import Config
from headrace.server.settings import ProtocolSettings

logger = logging.getLogger("headrace.server")


class ServedConnection(Protocol):
    """What graceful shutdown needs of a live connection (:class:`~.connection.Connection`)."""

    def shutdown(self) -> None:
        """Finish in-flight work, then close."""

    def abort(self) -> None:
        """Close at once."""


class ServerState:
    """Everything a connection needs to know about its server."""

    __slots__ = (
        "_trusted_hosts",
        "_trusted_networks",
        "access_log",
        "active_requests",
        "app",
        "config",
        "connections",
        "idle_waiter",
        "lifespan_state",
        "root_path",
        "server_header",
        "settings",
        "shutting_down",
        "tasks",
    )

    def __init__(
        self, config: Config, app: ASGIApp, access_log: AccessLogger | None = None
    ) -> None:
        self.config = config
        self.settings = ProtocolSettings.from_config(config)
        self.app = app
        self.access_log = access_log
        self.lifespan_state: dict[str, Any] = {}
        self.root_path = config.root_path
        self.server_header = config.server_name.encode("latin-1") if config.server_name else None
        self.connections: set[ServedConnection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.active_requests = 0
        self.shutting_down = False
        self.idle_waiter: asyncio.Future[None] | None = None
        self._trusted_hosts: frozenset[str] = frozenset()
        self._trusted_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
        self._parse_trusted(config.forwarded_allow_ips)

    def _parse_trusted(self, entries: tuple[str, ...]) -> None:
        hosts, networks = set(), []
        for entry in entries:
            if "/" in entry:
                networks.append(ipaddress.ip_network(entry, strict=False))
            else:
                hosts.add(entry)
        self._trusted_hosts = frozenset(hosts)
        self._trusted_networks = tuple(networks)

    def is_trusted(self, client: tuple[str, int] | None) -> bool:
        """Whether proxy headers / Daphne-Root-Path from this peer are honoured."""
        if "*" in self._trusted_hosts:
            return True
        if client is None:
            # Unix-socket peers are local processes (the usual reverse-proxy setup).
            return True
        host = client[0]
        if host in self._trusted_hosts:
            return True
        if not self._trusted_networks:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self._trusted_networks)

    def track_task(self, task: asyncio.Task[None], counted: bool = False) -> None:
        """Track an app task until it is done (graceful shutdown waits for it).

        ``counted``: the task runs under ``--limit-concurrency`` (``active_requests``) until done.
        """
        self.tasks.add(task)
        if counted:
            self.active_requests += 1
            task.add_done_callback(self._counted_task_finished)
        else:
            task.add_done_callback(self.task_finished)

    def _counted_task_finished(self, task: asyncio.Task[None]) -> None:
        self.active_requests -= 1
        self.task_finished(task)

    def task_finished(self, task: asyncio.Task[None]) -> None:
        """Stop tracking ``task``; hot paths call this from the task's own ``finally``
        (after adding it with ``tasks.add``) instead of paying for a done callback."""
        self.tasks.discard(task)
        if self.idle_waiter is not None:
            self.notify_if_idle()

    def connection_closed(self, connection: ServedConnection) -> None:
        self.connections.discard(connection)
        self.notify_if_idle()

    def notify_if_idle(self) -> None:
        waiter = self.idle_waiter
        if waiter is not None and not self.connections and not self.tasks and not waiter.done():
            waiter.set_result(None)
