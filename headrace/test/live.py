"""``ChannelLiveServerTestCase``: the Channels-1 deployment (interface server and workers) for
browser and end-to-end tests.

Theory of operation
-------------------
``setUpClass`` starts, as separate processes, what a 1.x site runs: the interface server
(``python -m headrace`` on a free port, serving the layer's Channels-1 view,
:mod:`headrace.test.live_target`) and ``workers`` routing workers
(:mod:`headrace.test.live_worker`, ``worker_threads`` threads each; with ``serve_static`` their
``http.request`` consumer is :class:`~headrace.staticfiles.StaticFilesConsumer`). The children
load the test's settings module and take over the test process's database names (the test
database), ``ALLOWED_HOSTS``, ``DEBUG`` and ``CHANNEL_LAYERS`` (so class-level
``override_settings`` reach them), handed over as JSON in ``$HEADRACE_LIVE_SETTINGS``.

They meet the test through the channel layer, so it must cross processes (IPC or Redis): the
in-memory layer, and an in-memory SQLite database, are refused with ``ImproperlyConfigured``.
The layer is flushed first (do not point it at production). The test process opens the layer
before the children start, so with IPC it holds the hub. ``tearDownClass`` stops the children
with SIGTERM (consumers in flight finish) and kills what does not exit.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.test.testcases import TransactionTestCase

from headrace.constants import DEFAULT_CHANNEL_LAYER

__all__ = ["ChannelLiveServerTestCase", "apply_live_settings"]

SETTINGS_ENV = "HEADRACE_LIVE_SETTINGS"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def apply_live_settings() -> dict[str, Any]:
    """In a child: take over the test process's settings (before ``django.setup()``)."""
    values: dict[str, Any] = json.loads(os.environ[SETTINGS_ENV])
    settings.ALLOWED_HOSTS = values["ALLOWED_HOSTS"]
    settings.DEBUG = values["DEBUG"]
    settings.CHANNEL_LAYERS = values["CHANNEL_LAYERS"]
    for alias, name in values["DATABASE_NAMES"].items():
        settings.DATABASES[alias]["NAME"] = name
    return values


def _settings_module() -> str:
    """The settings module, also under ``override_settings`` (whose holder has none)."""
    holder: Any = settings._wrapped
    while getattr(holder, "SETTINGS_MODULE", None) is None and hasattr(holder, "default_settings"):
        holder = holder.default_settings
    module = getattr(holder, "SETTINGS_MODULE", None) or os.environ.get("DJANGO_SETTINGS_MODULE")
    if not module:
        raise ImproperlyConfigured(
            "ChannelLiveServerTestCase needs a settings module (DJANGO_SETTINGS_MODULE) for its "
            "processes; settings.configure() cannot be handed over"
        )
    return str(module)


class _Child:
    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.argv = argv
        self.log_path = log
        with log.open("wb") as output:
            self.process = subprocess.Popen(argv, env=env, stdout=output, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT)


class _ClassProperty:
    """A read-only property of the class (the URLs are known once ``setUpClass`` ran)."""

    def __init__(self, getter: Any) -> None:
        self.getter = getter

    def __get__(self, instance: Any, owner: type) -> str:
        return str(self.getter(owner))


class ChannelLiveServerTestCase(TransactionTestCase):  # type: ignore[misc]  # Django untyped
    """Runs the interface server and Channels-1 workers for the tests of the class."""

    host = "127.0.0.1"
    serve_static = True
    workers = 1
    worker_threads = 2
    channel_layer_alias = DEFAULT_CHANNEL_LAYER

    _port: int = 0
    _children: list[_Child]
    _folder: str

    live_server_url = _ClassProperty(lambda cls: f"http://{cls.host}:{cls._port}")
    """``http://host:port`` of the interface server."""
    live_server_ws_url = _ClassProperty(lambda cls: f"ws://{cls.host}:{cls._port}")
    """``ws://host:port`` of the interface server."""

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls._children = []
        cls._folder = tempfile.mkdtemp(prefix="headrace-live1-")
        try:
            cls._prepare_layer()
            env = cls._child_environment()
            cls._start_server(env)
            for _ in range(cls.workers):
                cls._start_worker(env)
        except BaseException:
            cls._stop_children()
            super().tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        cls._stop_children()
        super().tearDownClass()

    # ------------------------------------------------------------------ set-up steps

    @classmethod
    def _prepare_layer(cls) -> None:
        from headrace.asgi import channel_layers

        config = channel_layers.configs.get(cls.channel_layer_alias)
        if config is None or "ROUTING" not in config:
            raise ImproperlyConfigured(
                f"ChannelLiveServerTestCase needs CHANNEL_LAYERS[{cls.channel_layer_alias!r}] "
                "with a ROUTING"
            )
        if str(config.get("BACKEND", "")).endswith("InMemoryChannelLayer"):
            raise ImproperlyConfigured(
                "ChannelLiveServerTestCase runs the server and workers in other processes: "
                "the in-memory channel layer cannot reach them; use IPC or Redis"
            )
        for alias in connections:
            if connections[alias].vendor == "sqlite" and connections[alias].is_in_memory_db():
                raise ImproperlyConfigured(
                    "ChannelLiveServerTestCase cannot share an in-memory SQLite database with "
                    f"its processes: set DATABASES[{alias!r}]['TEST']['NAME'] to a file"
                )
        layer = channel_layers[cls.channel_layer_alias].channel_layer
        if "flush" in layer.extensions:
            layer.flush()

    @classmethod
    def _child_environment(cls) -> dict[str, str]:
        values = {
            "ALIAS": cls.channel_layer_alias,
            "SERVE_STATIC": cls.serve_static,
            "THREADS": cls.worker_threads,
            "ALLOWED_HOSTS": list(settings.ALLOWED_HOSTS),
            "DEBUG": settings.DEBUG,
            "CHANNEL_LAYERS": settings.CHANNEL_LAYERS,
            "DATABASE_NAMES": {
                alias: connections[alias].settings_dict["NAME"] for alias in connections
            },
        }
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": _settings_module(),
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
            SETTINGS_ENV: json.dumps(values, default=str),
        }

    @classmethod
    def _child(cls, argv: list[str], env: dict[str, str], name: str) -> _Child:
        log = Path(cls._folder) / f"{name}-{len(cls._children)}.log"
        child = _Child(argv, env, log)
        cls._children.append(child)
        return child

    @classmethod
    def _start_server(cls, env: dict[str, str]) -> None:
        with socket.socket() as probe:
            probe.bind((cls.host, 0))
            cls._port = int(probe.getsockname()[1])
        target = "headrace.test.live_target:channel_layer"
        argv = [sys.executable, "-m", "headrace", "-b", cls.host, "-p", str(cls._port), target]
        server = cls._child(argv, env, "server")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                break
            try:
                with socket.create_connection((cls.host, cls._port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"The interface server did not start:\n{server.log()}")

    @classmethod
    def _start_worker(cls, env: dict[str, str]) -> None:
        worker = cls._child([sys.executable, "-m", "headrace.test.live_worker"], env, "worker")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if "Listening on" in worker.log():
                return
            if worker.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"A worker did not start:\n{worker.log()}")

    @classmethod
    def _stop_children(cls) -> None:
        for child in reversed(getattr(cls, "_children", [])):
            child.stop()
        folder = getattr(cls, "_folder", None)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    @classmethod
    def process_logs(cls) -> str:
        """The output of the server and workers (for failure messages)."""
        return "\n".join(f"--- {' '.join(c.argv)}\n{c.log()}" for c in cls._children)
