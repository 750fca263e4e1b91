"""The public history and presence suite on the in-memory layer, and the Channels-1 view."""

from __future__ import annotations

from typing import Any

import pytest

from headrace.asgi import AsgiChannelLayer
from headrace.layers import POSITION_KEY, InMemoryChannelLayer, Position
from headrace.layers.base import BaseChannelLayer
from headrace.testing.history import HistoryPresenceConformance


class TestInMemoryHistoryPresence(HistoryPresenceConformance):
    presence_ttl = 0.5
    history_ttl = 0.5

    async def make_layer(self, **config: Any) -> BaseChannelLayer:
        return InMemoryChannelLayer(**config)


def test_channels1_view_offers_history_and_presence() -> None:
    backend = InMemoryChannelLayer(
        history={"room.*": {"size": 10, "ttl": 60}},
        presence={"room.*": {"ttl": 30, "events": True}},
    )
    view = AsgiChannelLayer(backend, alias="history")
    try:
        assert {"history", "presence"} <= set(view.extensions)
        reader = view.new_channel("worker?")
        view.group_add("room.a", reader, {"role": "worker"})
        assert view.group_presence("room.a") == {reader: {"role": "worker"}}
        assert view.group_presence_count("room.a") == 1
        assert view.receive([reader], block=True)[1]["type"] == "presence.join"
        position = view.send_group("room.a", {"type": "chat.message", "n": 1})
        assert position is not None and position.offset == 1
        channel, message = view.receive([reader], block=True)
        assert (channel, message) == (
            reader,
            {"type": "chat.message", "n": 1, POSITION_KEY: [position.epoch, 1]},
        )
        history = view.group_history("room.a", since=Position(position.epoch, 0))
        assert (history.recovered, history.messages) == (
            True,
            [(1, {"type": "chat.message", "n": 1})],
        )
        assert view.send_group("plain", {"type": "x"}) is None
    finally:
        view.close()


def test_channels1_view_without_the_extensions() -> None:
    view = AsgiChannelLayer(InMemoryChannelLayer(), alias="plain")
    try:
        assert "history" in view.extensions  # the in-memory backend has them, unconfigured
        with pytest.raises(ValueError, match="room"):
            view.group_history("room")
    finally:
        view.close()
