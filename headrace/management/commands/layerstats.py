"""``manage.py layerstats``: print a channel layer's statistics (the ``statistics`` extension).

``layerstats [--layer ALIAS] [--channel NAME ...] [--json | --prometheus]`` prints the layer's
``global_statistics()`` and the ``channel_statistics()`` of each ``--channel``: a table by
default, one JSON object with ``--json`` (``{"layer": ..., "global": {...}, "channels":
{name: {...}}}``), or the Prometheus text of :mod:`headrace.layers.metrics` with
``--prometheus``. An alias that is not configured, a backend without the extension or a bad
channel name is a ``CommandError`` naming it.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from asgiref.sync import async_to_sync
from django.core.management import BaseCommand, CommandError

from headrace.constants import DEFAULT_CHANNEL_LAYER
from headrace.exceptions import InvalidChannelName
from headrace.layers import get_channel_layer
from headrace.layers.metrics import METRICS, collect, render_metrics


class Command(BaseCommand):  # type: ignore[misc, unused-ignore]
    help = "Prints the statistics of a channel layer (totals, and per --channel)."
    requires_system_checks: list[str] = []  # reading counters needs no ASGI_APPLICATION

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--layer", default=DEFAULT_CHANNEL_LAYER, help="CHANNEL_LAYERS alias (default)"
        )
        parser.add_argument(
            "--channel",
            action="append",
            default=[],
            dest="channels",
            help="also print this channel's statistics (repeatable)",
        )
        output = parser.add_mutually_exclusive_group()
        output.add_argument("--json", action="store_true", help="one JSON object")
        output.add_argument("--prometheus", action="store_true", help="Prometheus text format")

    def handle(self, *args: Any, **options: Any) -> None:
        alias: str = options["layer"]
        layer = get_channel_layer(alias)
        if layer is None:
            raise CommandError(f"--layer {alias!r}: no such alias in CHANNEL_LAYERS")
        if "statistics" not in layer.extensions:
            raise CommandError(
                f"--layer {alias!r}: {type(layer).__name__} does not provide statistics"
            )
        try:
            totals, channels = async_to_sync(collect)(layer, options["channels"])
        except InvalidChannelName as exc:
            raise CommandError(f"--channel: {exc}") from None
        finally:
            async_to_sync(layer.close)()
        if options["json"]:
            document = {"layer": alias, "global": totals, "channels": channels}
            self.stdout.write(json.dumps(document, indent=2, sort_keys=True))
        elif options["prometheus"]:
            self.stdout.write(render_metrics(alias, totals, channels), ending="")
        else:
            self.stdout.write(_table(alias, totals, channels))


def _table(alias: str, totals: dict[str, float], channels: dict[str, dict[str, float]]) -> str:
    rows = [
        (f"layer {alias}", totals),
        *((f"channel {name}", stats) for name, stats in channels.items()),
    ]
    lines = []
    for title, stats in rows:
        lines.append(title)
        for key, *_ in METRICS:
            if key in stats:
                value = stats[key]
                shown = f"{value:.3f}" if key == "messages_max_age" else f"{int(value)}"
                lines.append(f"  {key:<32} {shown}")
    return "\n".join(lines)
