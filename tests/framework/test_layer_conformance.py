"""The public conformance suites (the async contract, the ASGI-1 view) on the in-memory layer."""

from __future__ import annotations

from typing import Any

from headrace.layers import InMemoryChannelLayer
from headrace.layers.base import BaseChannelLayer
from headrace.testing.asgi_layers import AsgiLayerConformance
from headrace.testing.layers import ChannelLayerConformance


class TestInMemoryConformance(ChannelLayerConformance):
    expiry_seconds = 0.3
    expiry_grace = 0.2

    async def make_layer(self, **config: Any) -> BaseChannelLayer:
        return InMemoryChannelLayer(**config)


class TestInMemoryAsgiConformance(AsgiLayerConformance):
    """The Channels-1 (ASGI draft) view over the in-memory layer."""

    def make_backend(self, **config: Any) -> BaseChannelLayer:
        return InMemoryChannelLayer(**config)
