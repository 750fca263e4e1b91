"""``manage.py rundelay [--layer ALIAS] [--sleep SECONDS]``: run the delay server."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management import BaseCommand, CommandError

from headrace.constants import DEFAULT_CHANNEL_LAYER
from headrace.layers import get_channel_layer


class Command(BaseCommand):  # type: ignore[misc, unused-ignore]
    help = "Runs the delay server: delivers asgi.delay messages when their delay has passed."
    leave_locale_alone = True

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--layer",
            default=DEFAULT_CHANNEL_LAYER,
            help="Channel layer alias to use, if not the default.",
        )
        parser.add_argument(
            "--sleep",
            type=float,
            default=1.0,
            help="Longest wait, in seconds, between two looks at the stored messages (1.0).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from headrace.delay.server import DelayServer

        layer = get_channel_layer(options["layer"])
        if layer is None:
            raise CommandError(f"--layer {options['layer']!r}: no such alias in CHANNEL_LAYERS")
        if options["sleep"] <= 0:
            raise CommandError(
                f"--sleep must be a positive number of seconds, not {options['sleep']}"
            )
        self.stdout.write(f"Running delay server on layer {options['layer']!r}")
        self.stdout.flush()
        DelayServer(layer, sleep=options["sleep"]).run()
