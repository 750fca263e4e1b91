"""``manage.py runserver``: Django's development server, served by headrace.

Theory of operation
-------------------
The command is Django's own ``runserver`` (address parsing, ``-6``, ``--noreload``, the
autoreloader, system checks, the migration warning) with ``inner_run`` replaced: instead
of the WSGI server it runs :func:`headrace.server.server.run` on ``ASGI_APPLICATION``,
wrapped in Django's ``ASGIStaticFilesHandler`` when DEBUG (or ``--insecure``) unless
``--nostatic``. ``--noasgi`` falls back to Django's WSGI server.

In a project whose default channel layer has ``ROUTING`` (Channels 1.x), the application is
the interface bridge over that layer (``headrace.interface.InterfaceApplication``: requests
and WebSocket events become layer messages) and, unless ``--noworker``, a
:class:`~headrace.routing_worker.RoutingWorker` runs the routing's consumers and the Django
views in threads of this process (:data:`RUNSERVER_WORKER_THREADS`), so the in-memory layer
works; with ``--noworker`` separate ``runworker`` processes answer. ``ASGI_APPLICATION`` is
not needed then.

Server options are not redefined here: each runserver option below is a field of
:class:`headrace.server.config.Config`, added under Daphne's runserver spelling with the
field's own help, parser and validator, and the whole set is validated by building one
``Config`` (``FORCE_SCRIPT_NAME`` becomes ``root_path``). Under the autoreloader the
server runs in Django's main thread (not the process's main thread), where it installs no
signal handlers; the reloader process owns Ctrl-C.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.management import CommandError
from django.core.management.commands.runserver import Command as DjangoRunserverCommand
from django.utils import autoreload

from headrace import DEFAULT_CHANNEL_LAYER, __version__
from headrace._types import ASGIApp
from headrace.routing import Router, get_default_application
from headrace.server.accesslog import AccessLogger
from headrace.server.config import Config, ConfigError, _argparse_type, option_fields

# Config field -> the flags runserver accepts for it (Daphne's runserver spellings first).
RUNSERVER_OPTIONS: dict[str, tuple[str, ...]] = {
    "http_timeout": ("--http_timeout", "--http-timeout"),
    "websocket_connect_timeout": (
        "--websocket_handshake_timeout",
        "--websocket-handshake-timeout",
    ),
    "websocket_max_message_size": ("--websocket-max-message-size",),
    "websocket_max_frame_size": ("--websocket-max-frame-size",),
    "websocket_timeout": ("--websocket_timeout",),
    "ping_interval": ("--ping-interval",),
    "ping_timeout": ("--ping-timeout",),
    "application_close_timeout": ("--application-close-timeout",),
}

RUNSERVER_WORKER_THREADS = 4
"""Consumer threads of the in-process Channels-1 worker (Channels 1.x ran four)."""

# Daphne's runserver reads these settings when the option is not given.
SETTINGS_FALLBACKS = {
    "websocket_max_message_size": "DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE",
    "websocket_max_frame_size": "DAPHNE_WEBSOCKET_MAX_FRAME_SIZE",
}


def routing_layer_configured() -> bool:
    """Whether the default channel layer is a Channels-1 layer (it has ``ROUTING``)."""
    layers = getattr(settings, "CHANNEL_LAYERS", None) or {}
    config = layers.get(DEFAULT_CHANNEL_LAYER)
    return isinstance(config, dict) and "ROUTING" in config


class RunserverAccessLog(AccessLogger):
    """Access log lines coloured by status, written to the command's stdout."""

    __slots__ = ("style",)

    def __init__(self, stream: Any, style: Any) -> None:
        super().__init__(stream)
        self.style = style

    def write_entry(self, host: str, request: str, status: str, size: str) -> None:
        stamp = datetime.datetime.now().strftime("%d/%b/%Y %H:%M:%S")
        line = f'[{stamp}] "{request}" {status} {size} [{host}]'
        self.stream.write(self._styled(status, line) + "\n")
        self.stream.flush()

    def _styled(self, status: str, line: str) -> str:
        if not status.isdigit():
            return str(self.style.HTTP_INFO(line))
        code = int(status)
        if code < 200:
            return str(self.style.HTTP_INFO(line))
        if code < 300:
            return str(self.style.HTTP_SUCCESS(line))
        if code == 304:
            return str(self.style.HTTP_NOT_MODIFIED(line))
        if code < 400:
            return str(self.style.HTTP_REDIRECT(line))
        if code == 404:
            return str(self.style.HTTP_NOT_FOUND(line))
        if code < 500:
            return str(self.style.HTTP_BAD_REQUEST(line))
        return str(self.style.HTTP_SERVER_ERROR(line))


class Command(DjangoRunserverCommand):  # type: ignore[misc, unused-ignore]
    help = "Starts a lightweight web server for development, served by headrace (ASGI)."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--noasgi",
            action="store_false",
            dest="use_asgi",
            default=True,
            help="Run Django's WSGI development server instead of headrace.",
        )
        parser.add_argument(
            "--noworker",
            action="store_false",
            dest="run_worker",
            default=True,
            help="With a ROUTING channel layer: do not run worker threads (use runworker).",
        )
        specs = {name: spec for name, spec, _ in option_fields()}
        for name, flags in RUNSERVER_OPTIONS.items():
            spec = specs[name]
            parser.add_argument(
                *flags, dest=name, type=_argparse_type(spec), default=None, help=spec.help
            )
        if apps.is_installed("django.contrib.staticfiles"):
            parser.add_argument(
                "--nostatic",
                action="store_false",
                dest="use_static_handler",
                help="Do NOT serve static files at STATIC_URL automatically.",
            )
            parser.add_argument(
                "--insecure",
                action="store_true",
                dest="insecure_serving",
                help="Serve static files even if DEBUG is False.",
            )

    def handle(self, *args: Any, **options: Any) -> None:
        if (
            options["use_asgi"]
            and not getattr(settings, "ASGI_APPLICATION", None)
            and not routing_layer_configured()
        ):
            raise CommandError("You have not set ASGI_APPLICATION, which runserver needs.")
        super().handle(*args, **options)

    def server_config(self, options: dict[str, Any]) -> Config:
        """One validated server Config from the command line, settings and address."""
        values: dict[str, Any] = {
            "host": self.addr,
            "port": int(self.port),
            "root_path": getattr(settings, "FORCE_SCRIPT_NAME", None) or "",
            "verbosity": min(int(options.get("verbosity", 1)), 3),
        }
        for name in RUNSERVER_OPTIONS:
            value = options.get(name)
            if value is None and name in SETTINGS_FALLBACKS:
                value = getattr(settings, SETTINGS_FALLBACKS[name], None)
            if value is not None:
                values[name] = value
        try:
            return Config(**values)
        except ConfigError as exc:
            raise CommandError(str(exc)) from exc

    def get_application(self, options: dict[str, Any]) -> ASGIApp:
        """ASGI_APPLICATION, behind the static files handler when static files are served."""
        from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

        application: ASGIApp = (
            self.interface_application(options)
            if routing_layer_configured()
            else get_default_application()
        )
        staticfiles = apps.is_installed("django.contrib.staticfiles")
        use_static = options.get("use_static_handler", staticfiles)
        if use_static and (settings.DEBUG or options.get("insecure_serving", False)):
            static_app: ASGIApp = ASGIStaticFilesHandler(application)
            return static_app
        return application

    def interface_application(self, options: dict[str, Any]) -> ASGIApp:
        """The Channels-1 interface bridge over the default layer's ASGI-1 view (with
        ``--http-timeout``, that limit instead of the bridge's 120 s)."""
        from headrace.asgi import get_channel_layer

        http_timeout = options.get("http_timeout")
        bridge_options = {} if http_timeout is None else {"http_timeout": float(http_timeout)}
        layer = get_channel_layer(DEFAULT_CHANNEL_LAYER)
        application: ASGIApp = layer.as_asgi_application(**bridge_options)
        return application

    def start_worker(self, options: dict[str, Any]) -> Any:
        """The in-process Channels-1 worker thread, or ``None`` when there is none to run."""
        if not routing_layer_configured() or not options.get("run_worker", True):
            return None
        from headrace.asgi import channel_layers
        from headrace.routing_worker import RoutingWorker, WorkerThread

        wrapper = channel_layers[DEFAULT_CHANNEL_LAYER]
        worker = RoutingWorker(
            wrapper.channel_layer, Router(wrapper.routing), threads=RUNSERVER_WORKER_THREADS
        )
        thread = WorkerThread(worker)
        thread.start()
        self.stdout.write(
            f"Worker thread running ({RUNSERVER_WORKER_THREADS} consumer threads), channels: "
            f"{', '.join(worker.asgi_names)}\n"
        )
        return thread

    def inner_run(self, *args: Any, **options: Any) -> None:
        if not options.get("use_asgi", True):
            self.server_cls = DjangoRunserverCommand.server_cls
            DjangoRunserverCommand.inner_run(self, *args, **options)
            return
        autoreload.raise_last_exception()
        config = self.server_config(options)
        self.run_checks(options)
        self.write_banner()
        worker = self.start_worker(options)
        try:
            status = self.serve(config, options)
        finally:
            if worker is not None:
                worker.stop()
        if status != 0:
            # sys.exit does not end the process from the autoreloader's thread.
            self.stderr.flush()
            os._exit(status)

    def run_checks(self, options: dict[str, Any]) -> None:
        if not options.get("skip_checks"):
            self.stdout.write("Performing system checks...\n\n")
            self.check(display_num_errors=True)
        self.check_migrations()
        from django.db import connections

        for connection in connections.all(initialized_only=True):
            connection.close()

    def write_banner(self) -> None:
        quit_command = "CTRL-BREAK" if sys.platform == "win32" else "CONTROL-C"
        address = f"[{self.addr}]" if self._raw_ipv6 else self.addr
        now = datetime.datetime.now().strftime("%B %d, %Y - %X")
        self.stdout.write(
            f"{now}\nDjango version {self.get_version()}, using settings "
            f"{settings.SETTINGS_MODULE!r}\n"
            f"Starting ASGI/headrace version {__version__} development server at "
            f"{self.protocol}://{address}:{self.port}/\n"
            f"Quit the server with {quit_command}.\n"
        )
        self.stdout.flush()

    def serve(self, config: Config, options: dict[str, Any]) -> int:
        from headrace.server.server import run

        access_log = RunserverAccessLog(sys.stdout, self.style) if config.verbosity else None
        try:
            return run(config, app=self.get_application(options), access_log=access_log)
        except KeyboardInterrupt:
            shutdown_message = options.get("shutdown_message", "")
            if shutdown_message:
                self.stdout.write(shutdown_message)
            return 0
