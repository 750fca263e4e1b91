"""The public history and presence suite on the in-memory layer."""

from __future__ import annotations

from typing import Any

from headrace.layers import InMemoryChannelLayer
from headrace.layers.base import BaseChannelLayer
from headrace.testing.history import HistoryPresenceConformance


class TestInMemoryHistoryPresence(HistoryPresenceConformance):
    presence_ttl = 0.5
    history_ttl = 0.5

    async def make_layer(self, **config: Any) -> BaseChannelLayer:
        return InMemoryChannelLayer(**config)
