"""The public conformance suite run against the in-memory layer."""

from __future__ import annotations

from typing import Any

from headrace.layers import InMemoryChannelLayer
from headrace.layers.base import BaseChannelLayer
from headrace.testing.layers import ChannelLayerConformance


class TestInMemoryConformance(ChannelLayerConformance):
    expiry_seconds = 0.3
    expiry_grace = 0.2

    async def make_layer(self, **config: Any) -> BaseChannelLayer:
        return InMemoryChannelLayer(**config)
