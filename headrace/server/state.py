"""State shared by every connection of one running server.

``ServerState`` is created by :class:`headrace.server.server.Server` and handed to every
:class:`~headrace.server.connection.Connection`. It carries the app, the config, the
:class:`~.settings.ProtocolSettings` built from it once (what wires and streams read), the
lifespan state copied into scopes, the access logger, and the live connections and
app tasks that graceful shutdown waits for.
"""

from __future__ import annotations

import asyncio
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
        "access_log",
        "active_requests",
        "app",
        "config",
        "connections",
        "idle_waiter",
        "lifespan_state",
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
        self.connections: set[ServedConnection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.active_requests = 0
        self.shutting_down = False
        self.idle_waiter: asyncio.Future[None] | None = None

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
