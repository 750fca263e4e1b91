"""``manage.py runworker [--layer ALIAS] CHANNEL [CHANNEL ...]``: run background consumers.

The application is ``ASGI_APPLICATION`` (usually a ``ProtocolTypeRouter`` whose ``"channel"``
entry is a ``ChannelNameRouter``); see :mod:`headrace.worker`.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from django.core.management import (
    BaseCommand,
    CommandError,
)

from headrace import DEFAULT_CHANNEL_LAYER
from headrace.layers import get_channel_layer
from headrace.routing import get_default_application
from headrace.worker import Worker

logger = logging.getLogger("headrace.worker")


class Command(BaseCommand):  # type: ignore[misc, unused-ignore]
    help = "Runs a worker that serves messages on the given channel names."
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
        parser.add_argument("channels", nargs="+", help="Channels to listen on.")

    def handle(self, *args: Any, **options: Any) -> None:
        alias = options.get("layer") or DEFAULT_CHANNEL_LAYER
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
