"""``ChannelTestCase`` and ``apply_routes``: Channels-1 consumers tested against in-memory layers.

Theory of operation
-------------------
Each test of a :class:`ChannelTestCase` gets, for every alias in ``test_channel_aliases``
(``["default"]``), a fresh in-memory layer wrapped in a Channels-1 view, put in place of the
configured one with :meth:`headrace.asgi.ChannelLayerManager.set` (the routing of the alias
is kept, so clients route as the project does). ``Channel(...).send`` and ``Group(...)``
inside the test therefore reach the captive layer, and nothing needs a running Redis. After
the test the view is closed and the previous wrapper is put back.

:func:`apply_routes` swaps the routing of one or more aliases for the duration of a ``with``
block or a decorated function (the layer itself stays).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import ContextDecorator
from typing import Any

from django.test.testcases import TestCase

from headrace.asgi import AsgiChannelLayer, ChannelLayerWrapper, channel_layers, resolve_routing
from headrace.constants import DEFAULT_CHANNEL_LAYER
from headrace.layers import InMemoryChannelLayer
from headrace.message import Message

__all__ = ["ChannelTestCase", "ChannelTestCaseMixin", "apply_routes", "next_message"]

DEFAULT_TIMEOUT = 0.05


def next_message(
    channel: str,
    alias: str = DEFAULT_CHANNEL_LAYER,
    require: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> Message | None:
    """The next message on ``channel`` of layer ``alias`` as a :class:`Message`, waiting up to
    ``timeout`` seconds; ``None`` when there is none, or ``AssertionError`` with ``require``."""
    layer = channel_layers[alias].channel_layer
    deadline = time.monotonic() + timeout
    while True:
        name, content = layer.receive([channel], block=False)
        if name is not None:
            assert content is not None
            return Message(content, name, layer)
        if time.monotonic() >= deadline:
            break
    if require:
        raise AssertionError(f"Expected a message on channel {channel!r}, got none")
    return None


def _configured_routing(alias: str) -> Any:
    config = channel_layers.configs.get(alias) if alias in channel_layers else None
    return resolve_routing(config.get("ROUTING") if config else None, alias)


class ChannelTestCaseMixin:
    """The layer swapping of :class:`ChannelTestCase`, for other ``TestCase`` classes."""

    test_channel_aliases: Sequence[str] = [DEFAULT_CHANNEL_LAYER]

    def setup_channel_layers(self) -> None:
        self._channel_layer_backups: dict[str, ChannelLayerWrapper | None] = {}
        for alias in self.test_channel_aliases:
            view = AsgiChannelLayer(InMemoryChannelLayer(), alias=alias)
            wrapper = ChannelLayerWrapper(view, alias, _configured_routing(alias))
            self._channel_layer_backups[alias] = channel_layers.set(alias, wrapper)

    def restore_channel_layers(self) -> None:
        for alias, previous in self._channel_layer_backups.items():
            captive = channel_layers.set(alias, previous)
            if captive is not None:
                captive.channel_layer.close()
        self._channel_layer_backups = {}

    def get_next_message(
        self,
        channel: str,
        alias: str = DEFAULT_CHANNEL_LAYER,
        require: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Message | None:
        """The next message on ``channel`` (see :func:`next_message`)."""
        return next_message(channel, alias, require, timeout)


class ChannelTestCase(ChannelTestCaseMixin, TestCase):  # type: ignore[misc]  # Django untyped
    """Django's ``TestCase`` with captive in-memory Channels-1 layers for every test."""

    def _pre_setup(self) -> None:
        super()._pre_setup()
        self.setup_channel_layers()

    def _post_teardown(self) -> None:
        self.restore_channel_layers()
        super()._post_teardown()


class apply_routes(ContextDecorator):
    """Use ``routes`` (a routing list) as the routing of ``aliases`` inside the block, the
    decorated function, or each ``test*`` method of a decorated class."""

    def __call__(self, func: Any) -> Any:
        if not isinstance(func, type):
            return super().__call__(func)
        for name, member in list(vars(func).items()):
            if name.startswith("test") and callable(member):
                setattr(func, name, apply_routes(self.routes, self.aliases)(member))
        return func

    def __init__(self, routes: Any, aliases: Sequence[str] = (DEFAULT_CHANNEL_LAYER,)) -> None:
        self.routes = routes
        self.aliases = list(aliases)
        self._previous: list[tuple[str, ChannelLayerWrapper]] = []

    def __enter__(self) -> apply_routes:
        for alias in self.aliases:
            current = channel_layers[alias]
            replacement = ChannelLayerWrapper(
                current.channel_layer, alias, resolve_routing(self.routes, alias)
            )
            channel_layers.set(alias, replacement)
            self._previous.append((alias, current))
        return self

    def __exit__(self, *exc_info: object) -> None:
        while self._previous:
            alias, previous = self._previous.pop()
            channel_layers.set(alias, previous)
