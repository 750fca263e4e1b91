"""Channel layer statistics as Prometheus text: an ASGI app to mount, and the formatter.

:func:`metrics_app` returns an ASGI 3 application that answers ``GET`` (and ``HEAD``) with the
layer's ``global_statistics()`` in the Prometheus text exposition format (version 0.0.4), plus
``channel_statistics()`` of each ``?channel=NAME`` in the query string (repeatable) or of the
``channels`` given when it was made. Mount it wherever the project routes HTTP (a
``URLRouter``/Starlette ``Mount`` entry, or serve it alone with ``headrace``); it answers every
path it is given. The server package knows nothing of it (it is an application like any other),
and this module imports no framework: the layer comes from ``layer=`` or, on the first scrape,
from :func:`headrace.layers.get_channel_layer` (``CHANNEL_LAYERS`` of Django or of
:meth:`~headrace.layers.ChannelLayerManager.configure`).

Metric names (label ``layer`` is the alias, ``channel`` the channel of a per-channel series)::

    headrace_layer_messages_total            counter  messages accepted
    headrace_layer_messages_per_second       gauge    accepted in the last whole second
    headrace_layer_messages_pending          gauge    messages waiting
    headrace_layer_messages_max_age_seconds  gauge    how long the oldest has waited
    headrace_layer_channel_full_total        counter  sends refused with ChannelFull
    headrace_layer_channel_full_per_second   gauge    refused in the last whole second

A backend without the ``statistics`` extension, an unknown alias or a bad channel name is
answered 503 or 400 with a one-line reason, never a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs

from headrace.exceptions import InvalidChannelName
from headrace.layers.base import BaseChannelLayer

__all__ = ["METRICS", "metrics_app", "render_metrics"]

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"

METRICS: tuple[tuple[str, str, str, str], ...] = (
    ("messages_count", "headrace_layer_messages_total", "counter", "Messages accepted."),
    (
        "messages_count_per_second",
        "headrace_layer_messages_per_second",
        "gauge",
        "Messages accepted in the last whole second.",
    ),
    ("messages_pending", "headrace_layer_messages_pending", "gauge", "Messages waiting."),
    (
        "messages_max_age",
        "headrace_layer_messages_max_age_seconds",
        "gauge",
        "How long the oldest waiting message has waited.",
    ),
    (
        "channel_full_count",
        "headrace_layer_channel_full_total",
        "counter",
        "Sends refused because the channel was full.",
    ),
    (
        "channel_full_count_per_second",
        "headrace_layer_channel_full_per_second",
        "gauge",
        "Sends refused in the last whole second.",
    ),
)
"""(statistics key, metric name, type, help) for every metric."""


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(
    alias: str,
    totals: Mapping[str, float],
    channels: Mapping[str, Mapping[str, float]] | None = None,
) -> str:
    """The Prometheus text for one layer's totals and some channels' statistics."""
    lines: list[str] = []
    for key, name, kind, description in METRICS:
        series = []
        if key in totals:
            series.append(f'{name}{{layer="{_label(alias)}"}} {_number(totals[key])}')
        for channel, stats in (channels or {}).items():
            if key in stats:
                labels = f'layer="{_label(alias)}",channel="{_label(channel)}"'
                series.append(f"{name}{{{labels}}} {_number(stats[key])}")
        if series:
            lines += [f"# HELP {name} {description}", f"# TYPE {name} {kind}", *series]
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


async def collect(
    layer: BaseChannelLayer, channels: Iterable[str]
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """The layer's totals and the statistics of each of ``channels``."""
    totals = dict(await layer.global_statistics())
    per_channel = {channel: dict(await layer.channel_statistics(channel)) for channel in channels}
    return totals, per_channel


class _MetricsApp:
    """The ASGI application :func:`metrics_app` returns."""

    def __init__(self, alias: str, layer: BaseChannelLayer | None, channels: Sequence[str]) -> None:
        self.alias = alias
        self.layer = layer
        self.channels = list(channels)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise ValueError(f"the metrics app serves HTTP, not {scope['type']!r}")
        status, body = await self._answer(scope)
        headers = [(b"content-type", CONTENT_TYPE), (b"content-length", b"%d" % len(body))]
        if status == 405:
            headers.append((b"allow", b"GET, HEAD"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )

    async def _answer(self, scope: dict[str, Any]) -> tuple[int, bytes]:
        if scope["method"] not in ("GET", "HEAD"):
            return 405, b"only GET and HEAD\n"
        layer = self.layer or self._configured_layer()
        if layer is None:
            return 503, f"no channel layer {self.alias!r} is configured\n".encode()
        if "statistics" not in layer.extensions:
            name = type(layer).__name__
            return 503, f"{name} does not provide the statistics extension\n".encode()
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        channels = [*self.channels, *query.get("channel", [])]
        try:
            totals, per_channel = await collect(layer, channels)
        except InvalidChannelName as exc:
            return 400, f"{exc}\n".encode()
        return 200, render_metrics(self.alias, totals, per_channel).encode()

    def _configured_layer(self) -> BaseChannelLayer | None:
        from headrace.layers import get_channel_layer

        self.layer = get_channel_layer(self.alias)
        return self.layer


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def metrics_app(
    alias: str = "default",
    *,
    layer: BaseChannelLayer | None = None,
    channels: Sequence[str] = (),
) -> _MetricsApp:
    """An ASGI app serving the statistics of layer ``alias`` (or of ``layer``) as Prometheus
    text; ``channels`` are always included, ``?channel=NAME`` adds more per scrape."""
    return _MetricsApp(alias, layer, channels)
