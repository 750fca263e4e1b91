"""``manage.py runworker``: run background consumers (modern) or the Channels-1 worker.

Two generations share the command, told apart by the arguments and the settings:

* ``runworker [--layer ALIAS] CHANNEL [CHANNEL ...]`` (channel names given) is the modern
  worker: ``ASGI_APPLICATION`` (usually a ``ProtocolTypeRouter`` whose ``"channel"`` entry is
  a ``ChannelNameRouter``) gets the messages of those channels; see :mod:`headrace.worker`.
* ``runworker [--layer ALIAS] [--only-channels GLOB ...] [--exclude-channels GLOB ...]
  [--threads N]`` (no channel names) in a project whose layer has ``ROUTING`` is the
  Channels-1 worker: every channel the routing names (and ``http.request``, served by the
  Django views) is read and each message is handed to its 1.x consumer; see
  :mod:`headrace.routing_worker`.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from django.core.management import (
    BaseCommand,
    CommandError,
)

from headrace.constants import DEFAULT_CHANNEL_LAYER
from headrace.layers import get_channel_layer
from headrace.routing import Router, get_default_application
from headrace.worker import Worker

logger = logging.getLogger("headrace.worker")

ROUTING_ONLY_OPTIONS = ("only_channels", "exclude_channels", "threads")


def layer_has_routing(alias: str) -> bool:
    """Whether ``CHANNEL_LAYERS[alias]`` is a Channels-1 layer (it has a ``ROUTING`` key)."""
    from headrace.layers import channel_layers

    config = channel_layers.configs.get(alias)
    return config is not None and "ROUTING" in config


class Command(BaseCommand):  # type: ignore[misc, unused-ignore]
    help = (
        "Runs a worker: the modern one for the given channel names, or, with no names in a "
        "project whose channel layer has ROUTING, the Channels-1 worker for its routing."
    )
    leave_locale_alone = True
    worker_class = Worker

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--layer",
            action="store",
            dest="layer",
            default=DEFAULT_CHANNEL_LAYER,
            help="Channel layer alias to use, if not the default.",
        )
        parser.add_argument(
            "--only-channels",
            action="append",
            dest="only_channels",
            default=None,
            metavar="GLOB",
            help="Channels-1 worker: serve only channels matching this glob (repeatable).",
        )
        parser.add_argument(
            "--exclude-channels",
            action="append",
            dest="exclude_channels",
            default=None,
            metavar="GLOB",
            help="Channels-1 worker: do not serve channels matching this glob (repeatable).",
        )
        parser.add_argument(
            "--threads",
            action="store",
            type=int,
            dest="threads",
            default=None,
            help="Channels-1 worker: number of consumer threads (default 1).",
        )
        parser.add_argument(
            "channels",
            nargs="*",
            help="Channels to listen on (the modern worker; omit them for the ROUTING worker).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        alias = options.get("layer") or DEFAULT_CHANNEL_LAYER
        if options["channels"]:
            self._refuse_routing_options(options)
            self.run_modern(alias, options)
        elif layer_has_routing(alias):
            self.run_routing(alias, options)
        elif get_channel_layer(alias) is None:
            raise CommandError(
                f"You do not have any CHANNEL_LAYERS configured (no alias {alias!r})."
            )
        else:
            raise CommandError(
                f"Give the channel names to listen on, or set ROUTING on channel layer "
                f"{alias!r} to run the Channels-1 worker."
            )

    @staticmethod
    def _refuse_routing_options(options: dict[str, Any]) -> None:
        given = [name for name in ROUTING_ONLY_OPTIONS if options.get(name) is not None]
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            raise CommandError(
                f"{flags} belong to the Channels-1 worker (no channel names); the modern "
                "worker listens on exactly the channels named."
            )

    def run_modern(self, alias: str, options: dict[str, Any]) -> None:
        channel_layer = get_channel_layer(alias)
        if channel_layer is None:
            raise CommandError(
                f"You do not have any CHANNEL_LAYERS configured (no alias {alias!r})."
            )
        logger.info("Running worker for channels %s", options["channels"])
        if options.get("verbosity", 1) >= 1:
            self.stdout.write(f"Running worker for channels {', '.join(options['channels'])}")
            self.stdout.flush()
        worker = self.worker_class(
            application=get_default_application(),
            channels=options["channels"],
            channel_layer=channel_layer,
        )
        worker.run()

    def run_routing(self, alias: str, options: dict[str, Any]) -> None:
        from headrace.asgi import channel_layers
        from headrace.routing_worker import RoutingWorker

        threads = options.get("threads")
        threads = 1 if threads is None else threads
        if threads < 1:
            raise CommandError(f"--threads must be at least 1, not {threads}")
        wrapper = channel_layers[alias]
        try:
            worker = RoutingWorker(
                wrapper.channel_layer,
                Router(wrapper.routing),
                only_channels=options.get("only_channels") or (),
                exclude_channels=options.get("exclude_channels") or (),
                threads=threads,
                view_consumer=default_http_consumer(),
            )
        except (ValueError, TypeError) as exc:
            raise CommandError(str(exc)) from exc
        configure_worker_logging(int(options.get("verbosity", 1)))
        if options.get("verbosity", 1) >= 1:
            self.stdout.write(
                f"Running Channels-1 worker ({threads} thread(s)) for channels "
                f"{', '.join(worker.asgi_names)}"
            )
            self.stdout.flush()
        try:
            worker.run()
        finally:
            wrapper.channel_layer.close()


def default_http_consumer() -> Any:
    """What answers an ``http.request`` no route claims: with ``DEBUG`` and
    ``django.contrib.staticfiles`` installed, :class:`~headrace.staticfiles.StaticFilesConsumer`
    (static files under ``STATIC_URL``, the views for the rest), as Channels 1.x's runworker
    did; else ``None``, the plain view consumer."""
    from django.apps import apps
    from django.conf import settings

    if settings.DEBUG and apps.is_installed("django.contrib.staticfiles"):
        from headrace.staticfiles import StaticFilesConsumer

        return StaticFilesConsumer()
    return None


def configure_worker_logging(verbosity: int) -> None:
    """Consumer tracebacks to stderr (``-v 2``: every dispatch too), unless the project's
    LOGGING already configures the worker's logger."""
    worker_logger = logging.getLogger("headrace.worker")
    if worker_logger.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    worker_logger.addHandler(handler)
    worker_logger.setLevel(logging.DEBUG if verbosity >= 2 else logging.INFO)
