"""``ChannelsLiveServerTestCase``: a headrace server in a child process for browser tests.

Theory of operation
-------------------
Django's ``LiveServerTestCase`` runs a WSGI server in a thread; a realtime app needs the
ASGI application, WebSocket included, in a server whose event loop does not share the
test's thread. ``setUpClass`` binds a listening socket in the test process (so the port
is known and connections queue before the child is ready), then starts a fresh child
interpreter (``spawn``: forking a process that already ran Django and asgiref's executor
threads would inherit dead threads and shared database connections). The child loads the
same settings module, takes over the test process's database names (the test database),
``ALLOWED_HOSTS`` and ``DEBUG``, builds ``ASGI_APPLICATION`` (behind
``ASGIStaticFilesHandler`` when ``serve_static``) and serves it with
:func:`headrace.server.server.run` on the inherited sockets (for ``localhost``: 127.0.0.1
and ::1 on the same port, as browsers try ::1 first). Other ``override_settings``
changes made in the test process do not reach the server. The child reports
readiness (or its start-up error) through a pipe; ``tearDownClass`` stops it with SIGTERM
(graceful shutdown) and kills it if it does not exit in time.

An in-memory SQLite database exists only inside one process, so the child could never
see the test's data: such a configuration fails at once with ``ImproperlyConfigured``
telling you to set ``DATABASES[...]["TEST"]["NAME"]`` to a file.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import traceback
from multiprocessing.connection import Connection as Pipe
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.test.testcases import TransactionTestCase
from django.test.utils import modify_settings

from headrace._types import ASGIApp

__all__ = ["ChannelsLiveServerTestCase"]

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def make_application(serve_static: bool) -> ASGIApp:
    """``ASGI_APPLICATION``, behind the static files handler when asked."""
    from headrace.routing import get_default_application

    application: ASGIApp = get_default_application()
    if serve_static:
        from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

        application = ASGIStaticFilesHandler(application)
    return application


def _apply_parent_settings(values: dict[str, Any]) -> None:
    """Give the child the test process's database names and allowed hosts."""
    from django.conf import settings

    for alias, name in values["DATABASE_NAMES"].items():
        settings.DATABASES[alias]["NAME"] = name
        connections[alias].settings_dict["NAME"] = name
    settings.ALLOWED_HOSTS = values["ALLOWED_HOSTS"]
    settings.DEBUG = values["DEBUG"]


def serve_in_child(
    sockets: list[socket.socket],
    parent_settings: dict[str, Any],
    serve_static: bool,
    report: Pipe,
) -> None:
    """Child-process entry point: set Django up, report readiness, serve until SIGTERM."""
    try:
        os.environ["DJANGO_SETTINGS_MODULE"] = parent_settings["SETTINGS_MODULE"]
        import django

        django.setup()
        _apply_parent_settings(parent_settings)
        from headrace.server.config import Config
        from headrace.server.server import run

        application = make_application(serve_static)
        host, port = sockets[0].getsockname()[:2]
        config = Config(host=host, port=port, verbosity=0)
    except BaseException:
        report.send(traceback.format_exc())
        raise
    report.send("ready")
    report.close()
    run(config, listeners=sockets, app=application)


def _settings_module(settings: Any) -> str | None:
    """The settings module under any ``override_settings`` layers (they report None)."""
    holder = getattr(settings, "_wrapped", settings)
    while getattr(holder, "default_settings", None) is not None:
        holder = holder.default_settings
    module = getattr(holder, "SETTINGS_MODULE", None) or os.environ.get("DJANGO_SETTINGS_MODULE")
    return str(module) if module else None


def _parent_settings() -> dict[str, Any]:
    from django.conf import settings

    module = _settings_module(settings)
    if not module:
        raise ImproperlyConfigured(
            "ChannelsLiveServerTestCase needs a settings module (DJANGO_SETTINGS_MODULE): "
            "its server process loads the settings again."
        )
    return {
        "SETTINGS_MODULE": module,
        "DATABASE_NAMES": {c.alias: c.settings_dict["NAME"] for c in connections.all()},
        "ALLOWED_HOSTS": list(settings.ALLOWED_HOSTS),
        "DEBUG": settings.DEBUG,
    }


def _bind(family: socket.AddressFamily, address: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def listening_sockets(host: str) -> list[socket.socket]:
    """Listening sockets for ``host`` on one free port.

    ``localhost`` gets 127.0.0.1 and, when the machine has it, ::1 on the same port: browsers
    try ::1 first for ``localhost`` and may not fall back to IPv4.
    """
    bare = host.strip("[]")
    if bare != "localhost":
        family = socket.AF_INET6 if ":" in bare else socket.AF_INET
        return [_bind(family, bare, 0)]
    ipv4 = _bind(socket.AF_INET, "127.0.0.1", 0)
    try:
        ipv6 = _bind(socket.AF_INET6, "::1", ipv4.getsockname()[1])
    except OSError:
        return [ipv4]
    return [ipv4, ipv6]


def _is_in_memory_db(connection: Any) -> bool:
    return bool(connection.vendor == "sqlite" and connection.is_in_memory_db())


class ChannelsLiveServerTestCase(TransactionTestCase):  # type: ignore[misc, unused-ignore]
    """``TransactionTestCase`` plus a live headrace server (HTTP and WebSocket)."""

    host = "localhost"
    serve_static = True
    _port: int
    _server_process: Any
    _listeners: list[socket.socket]
    _live_server_modified_settings: Any

    @property
    def live_server_url(self) -> str:
        return f"http://{self.host}:{self._port}"

    @property
    def live_server_ws_url(self) -> str:
        return f"ws://{self.host}:{self._port}"

    @classmethod
    def setUpClass(cls) -> None:
        for connection in connections.all():
            if _is_in_memory_db(connection):
                raise ImproperlyConfigured(
                    "ChannelsLiveServerTestCase cannot use the in-memory SQLite database "
                    f"{connection.alias!r}: the server runs in another process and would not "
                    "see the test's data. Set DATABASES[alias]['TEST']['NAME'] to a file path."
                )
        super().setUpClass()
        cls._live_server_modified_settings = modify_settings(ALLOWED_HOSTS={"append": cls.host})
        cls._live_server_modified_settings.enable()
        try:
            cls._start_server()
        except BaseException:
            cls._live_server_modified_settings.disable()
            super().tearDownClass()
            raise

    @classmethod
    def _start_server(cls) -> None:
        cls._listeners = listening_sockets(cls.host)
        cls._port = int(cls._listeners[0].getsockname()[1])
        # A fresh interpreter: forking a process that has run Django and asgiref threads
        # would inherit dead executors and shared database connections.
        context: Any = multiprocessing.get_context("spawn")
        receiver, sender = context.Pipe(duplex=False)
        cls._server_process = context.Process(
            target=serve_in_child,
            args=(cls._listeners, _parent_settings(), cls.serve_static, sender),
            daemon=True,
        )
        cls._server_process.start()
        sender.close()
        cls._wait_ready(receiver)

    @classmethod
    def _wait_ready(cls, receiver: Pipe) -> None:
        try:
            if receiver.poll(START_TIMEOUT):
                message = receiver.recv()
            else:
                message = f"it did not report ready within {START_TIMEOUT} s"
        except EOFError:
            message = "the live server process exited during start-up"
        finally:
            receiver.close()
        if message != "ready":
            cls._stop_server()
            raise RuntimeError(f"live server failed to start:\n{message}")

    @classmethod
    def _stop_server(cls) -> None:
        process = cls._server_process
        if process.is_alive():
            process.terminate()
            process.join(STOP_TIMEOUT)
        if process.is_alive():
            process.kill()
            process.join(STOP_TIMEOUT)
        for listener in cls._listeners:
            listener.close()

    @classmethod
    def tearDownClass(cls) -> None:
        cls._stop_server()
        cls._live_server_modified_settings.disable()
        super().tearDownClass()
