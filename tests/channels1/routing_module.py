"""Consumers and routing lists that tests/channels1 names by dotted path."""

from __future__ import annotations

from typing import Any

from headrace.message import Message
from headrace.routing import include, route


def chat_consumer(message: Message, **kwargs: Any) -> None:
    assert message.reply_channel is not None
    message.reply_channel.send({"text": f"chat {kwargs}"})


def other_consumer(message: Message, **kwargs: Any) -> None:
    assert message.reply_channel is not None
    message.reply_channel.send({"text": "other"})


chat_routing = [
    route("websocket.receive", chat_consumer, path=r"^/(?P<room>[a-z]+)/$"),
]

channel_routing = [
    include("tests.channels1.routing_module.chat_routing", path=r"^/chat"),
    route("websocket.receive", "tests.channels1.routing_module.other_consumer"),
]
