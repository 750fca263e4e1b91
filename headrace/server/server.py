"""The server: listeners, lifespan, signals and graceful shutdown.

Theory of operation
-------------------
``Server(config, app).serve(listeners)`` runs inside an event loop:

1. lifespan startup (a failure ends ``serve`` with :class:`LifespanFailure`);
2. one ``loop.create_server`` per listener, each accepted socket getting a
   :class:`~headrace.server.connection.Connection`;
3. wait for :meth:`Server.shutdown` (signals call it; so can the workers supervisor or a test,
   from any thread);
4. graceful drain: stop accepting, tell every connection to finish (idle ones close at once),
   wait up to ``--timeout-graceful-shutdown`` for connections and app tasks to end, then cancel
   the remaining tasks and abort the remaining connections;
5. lifespan shutdown, last.

:func:`run` is the blocking entry point used by the CLI and by worker processes: it picks the
event loop (``--loop``), binds the listeners unless given, installs SIGTERM/SIGINT handlers and
returns the process exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from asgiref.compatibility import guarantee_single_callable

from headrace._types import ASGIApp, Scope
from headrace.server.accesslog import AccessLogger
from headrace.server.config import Config
from headrace.server.connection import Connection, Wires
from headrace.server.endpoints import BindError, Listener, bind_listeners
from headrace.server.handler import ConnectionHandler, UpgradeRequest
from headrace.server.lifespan import Lifespan, LifespanFailure
from headrace.server.state import ServerState
from headrace.server.tls import TLSConfigError
from headrace.server.wires.http11 import HTTP11Handler

logger = logging.getLogger("headrace.server")


def start_http2(
    connection: Connection, initial_data: bytes, upgrade: UpgradeRequest | None
) -> ConnectionHandler | None:
    """:func:`headrace.server.wires.http2.start_http2`, imported with the first HTTP/2
    connection: the frame layer and HPACK are not loaded by a server no client speaks
    HTTP/2 to (startup time; tests/server/test_startup_imports.py keeps it so)."""
    from headrace.server.wires.http2 import start_http2

    return start_http2(connection, initial_data, upgrade)


def start_websocket(
    connection: Connection, scope: Scope, trailing_data: bytes
) -> ConnectionHandler:
    """:func:`headrace.server.wires.websocket_h1.start_websocket`, imported with the first
    WebSocket upgrade, like :func:`start_http2`."""
    from headrace.server.wires.websocket_h1 import start_websocket

    return start_websocket(connection, scope, trailing_data)


WIRES = Wires(http11=HTTP11Handler, http2=start_http2, websocket=start_websocket)
"""Every wire headrace speaks; each connection gets this (tests may serve fewer)."""

BACKLOG_HANDSHAKE_TIMEOUT = 5.0
"""Seconds a connection taken from the backlog at shutdown has for its TLS handshake."""


def load_app(path: str, http_timeout: float | None = None) -> ASGIApp:
    """Import ``path.to.module:attribute`` (attribute may be dotted); ASGI 2 apps are wrapped.
    ``http_timeout`` (the server's ``--http-timeout``) is offered to a target that builds its
    application (see :func:`serving_application`)."""
    import importlib

    module_name, _, attribute = path.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in (attribute or "application").split("."):
        target = getattr(target, part)
    return as_asgi3(serving_application(target, http_timeout))


def serving_application(target: Any, http_timeout: float | None = None) -> Any:
    """What the server runs for an imported target.

    An object with an ``as_asgi_application()`` method offers to be served through the
    application that method returns (a Channels-1 layer from ``headrace.asgi`` answers with
    its interface bridge); anything else is taken as the application itself. The server learns
    nothing about layers this way. When the server has an ``--http-timeout``, the method is
    called with ``http_timeout=`` so the application can use the same limit (the interface
    bridge's own default is 120 s, Daphne 1.x's).
    """
    factory = getattr(target, "as_asgi_application", None)
    if not callable(factory):
        return target
    return factory() if http_timeout is None else factory(http_timeout=http_timeout)


def as_asgi3(app: Any) -> ASGIApp:
    """The app itself if it is ASGI 3, else an ASGI 3 wrapper around an ASGI 2 app."""
    single: ASGIApp = guarantee_single_callable(app)  # type: ignore[no-untyped-call]
    return single


class Server:
    """One server instance (see module docs)."""

    def __init__(
        self,
        config: Config,
        app: ASGIApp | None = None,
        access_log: AccessLogger | None = None,
        wires: Wires = WIRES,
    ) -> None:
        self.config = config
        self.wires = wires
        app = load_app(config.application, config.http_timeout) if app is None else as_asgi3(app)
        self.state = ServerState(config, app, access_log)
        self.listeners: list[Listener] = []
        self.addresses: list[Any] = []
        """The bound addresses (``getsockname()`` of each listener), set once serving."""
        self.started = threading.Event()
        self.ready = asyncio.Event()
        self._servers: list[asyncio.Server] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = asyncio.Event()
        self._stop_requested = False
        self._force = False

    async def serve(self, listeners: Sequence[Listener | socket.socket] | None = None) -> None:
        """Serve until :meth:`shutdown`; binds from the config when no listeners are given."""
        self._loop = asyncio.get_running_loop()
        if self._stop_requested:
            self._stop.set()
        self.listeners = (
            _as_listeners(listeners) if listeners is not None else bind_listeners(self.config)
        )
        self.addresses = [listener.sock.getsockname() for listener in self.listeners]
        lifespan = Lifespan(self.state.app, self.config.lifespan, self.state.lifespan_state)
        try:
            await lifespan.startup()
        except BaseException:
            self._close_listeners()
            raise
        try:
            await self._start_listeners()
            self.started.set()
            self.ready.set()
            await self._stop.wait()
            await self._drain()
        finally:
            await lifespan.shutdown()
            self._close_unix_sockets()
            self.flush_access_log()

    async def _start_listeners(self) -> None:
        loop = asyncio.get_running_loop()
        for listener in self.listeners:
            server = await loop.create_server(
                self._connection_factory,
                sock=listener.sock,
                ssl=listener.ssl_context(),
                backlog=2048,
            )
            self._servers.append(server)
            logger.info("Listening on %s", listener.description)

    def shutdown(self, force: bool = False) -> None:
        """Request a graceful shutdown (thread-safe; ``force`` skips the grace period)."""
        loop, stop = self._loop, self._stop
        self._stop_requested = True
        self._force = self._force or force
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            stop.set()
        else:
            loop.call_soon_threadsafe(stop.set)

    async def _drain(self) -> None:
        state = self.state
        state.shutting_down = True
        await self._take_backlog()
        for server in self._servers:
            server.close()
        for connection in list(state.connections):
            connection.shutdown()
        grace = 0.0 if self._force else self.config.timeout_graceful_shutdown
        if state.connections or state.tasks:
            state.idle_waiter = asyncio.get_running_loop().create_future()
            state.notify_if_idle()
            try:
                await asyncio.wait_for(asyncio.shield(state.idle_waiter), grace)
            except TimeoutError:
                logger.warning("graceful shutdown timed out: cancelling %d tasks", len(state.tasks))
        await self._cancel_remaining()
        for server in self._servers:
            await server.wait_closed()

    async def _take_backlog(self) -> None:
        """Accept the connections still waiting in the listeners' backlogs, before closing them.

        Closing a listening socket makes the kernel reset every connection in its accept queue,
        and a client whose request is already sent there sees a reset it cannot tell from a
        crash. That queue is full when the shutdown came during lifespan startup (the sockets
        listen before startup, see docs/server.md) and can hold a few connections at any
        shutdown. Taken over here, they are served like any connection accepted just before
        the shutdown: their first request still has ``FIRST_REQUEST_GRACE`` to arrive.
        """
        loop = asyncio.get_running_loop()
        handshakes = []
        for listener in self.listeners:
            for sock in _pending_connections(listener.sock):
                handshakes.append(
                    loop.create_task(
                        loop.connect_accepted_socket(
                            self._connection_factory, sock, ssl=listener.ssl_context()
                        )
                    )
                )
        if handshakes:
            logger.info("serving %d connection(s) accepted during shutdown", len(handshakes))
            done, pending = await asyncio.wait(handshakes, timeout=BACKLOG_HANDSHAKE_TIMEOUT)
            for task in pending:
                task.cancel()
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    logger.debug("connection from the backlog failed: %s", task.exception())

    def _connection_factory(self) -> Connection:
        loop = self._loop
        assert loop is not None  # set by serve() before any listener starts
        return Connection(self.state, loop, self.wires)

    async def _cancel_remaining(self) -> None:
        state = self.state
        tasks = list(state.tasks)
        for task in tasks:
            task.cancel()
        for connection in list(state.connections):
            connection.abort()
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    def flush_access_log(self) -> None:
        """Write the access log lines still queued (the log batches per loop iteration)."""
        if self.state.access_log is not None:
            self.state.access_log.flush()

    def _close_listeners(self) -> None:
        for listener in self.listeners:
            listener.sock.close()
        self._close_unix_sockets()

    def _close_unix_sockets(self) -> None:
        import os

        for listener in self.listeners:
            if listener.unix_path and listener.tls is None:
                with contextlib.suppress(OSError):
                    os.unlink(listener.unix_path)


def _pending_connections(listening: socket.socket) -> list[socket.socket]:
    """Every connection the kernel has completed for ``listening`` and nobody accepted yet."""
    accepted: list[socket.socket] = []
    if listening.fileno() < 0:
        return accepted
    listening.setblocking(False)
    while True:
        try:
            sock, _ = listening.accept()
        except (BlockingIOError, InterruptedError):
            return accepted
        except OSError as exc:  # EMFILE and the like: what was taken is still served
            logger.warning("could not accept a waiting connection at shutdown: %s", exc)
            return accepted
        sock.setblocking(False)
        accepted.append(sock)


def _as_listeners(items: Sequence[Listener | socket.socket]) -> list[Listener]:
    listeners = []
    for item in items:
        if isinstance(item, Listener):
            listeners.append(item)
        else:
            item.setblocking(False)
            listeners.append(Listener(sock=item, description=f"socket {item.getsockname()!r}"))
    return listeners


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The event-loop factory for ``--loop`` (auto = uvloop when installed)."""
    if name in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if name == "uvloop":
                raise
        else:
            factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
            return factory
    return asyncio.new_event_loop


def _install_signal_handlers(server: Server) -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    calls = {"count": 0}

    def on_signal(signum: int) -> None:
        calls["count"] += 1
        logger.info("received %s, shutting down", signal.Signals(signum).name)
        server.shutdown(force=calls["count"] > 1)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)


def run(
    config: Config,
    listeners: Sequence[Listener | socket.socket] | None = None,
    app: ASGIApp | None = None,
    access_log: AccessLogger | None = None,
    on_server: Callable[[Server], None] | None = None,
) -> int:
    """Run a server until SIGTERM/SIGINT or ``Server.shutdown()``; returns the exit status.

    ``on_server`` receives the :class:`Server` before it starts (to keep a handle for shutdown).
    """
    try:
        bound = list(listeners) if listeners is not None else bind_listeners(config)
    except BindError as exc:
        sys.stderr.write(f"headrace: {exc}\n")
        return 1
    try:
        for listener in bound:
            if isinstance(listener, Listener):
                listener.ssl_context()  # fail now, with a message, on bad TLS files
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"headrace: TLS: {exc}\n")
        for listener in bound:
            (listener.sock if isinstance(listener, Listener) else listener).close()
        return 1
    server = Server(config, app, access_log)
    if on_server is not None:
        on_server(server)

    async def main() -> None:
        _install_signal_handlers(server)
        await server.serve(bound)

    try:
        with asyncio.Runner(loop_factory=loop_factory(config.loop)) as runner:
            runner.get_loop().set_debug(config.verbosity >= 3)
            runner.run(main())
    except LifespanFailure as exc:
        sys.stderr.write(f"headrace: {exc}\n")
        return 3
    except TLSConfigError as exc:
        sys.stderr.write(f"headrace: TLS: {exc}\n")
        return 1
    finally:
        server.flush_access_log()  # lines queued by whatever ran as the loop closed
    return 0
