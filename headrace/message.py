"""The Channels-1 ``Message``: what a 1.x consumer is called with.

A message wraps the content dict received from a channel, the :class:`~headrace.channel.Channel`
it came from, its ``reply_channel`` (a Channel built from ``content["reply_channel"]``, or
``None`` when the message has none) and the Channels-1 layer view it was received through, so
``message.reply_channel.send(...)`` answers on the same layer. Reading keys works as on the
content dict (``message["path"]``, ``message.get("text")``, ``message.keys()``). The 1.x
session decorators (:mod:`headrace.sessions`, :mod:`headrace.auth`) hang ``channel_session``,
``http_session`` and ``user`` on it.
"""

from __future__ import annotations

import copy
from collections.abc import KeysView
from typing import TYPE_CHECKING, Any

from headrace.channel import Channel

if TYPE_CHECKING:
    from headrace.asgi import AsgiChannelLayer

__all__ = ["Message"]


class Message:
    """One received message: ``content``, ``channel``, ``reply_channel``, ``channel_layer``.

    The session decorators add ``channel_session``, ``http_session`` and ``user``; before they
    ran, reading one raises ``AttributeError`` (so ``hasattr(message, "user")`` tells)."""

    __slots__ = (
        "channel",
        "channel_layer",
        "channel_session",
        "content",
        "http_session",
        "reply_channel",
        "user",
    )
    channel_session: Any
    http_session: Any
    user: Any

    def __init__(
        self, content: dict[str, Any], channel_name: str, channel_layer: AsgiChannelLayer
    ) -> None:
        if not isinstance(content, dict):
            raise TypeError(f"message content must be a dict, not {type(content).__name__}")
        self.content = content
        self.channel_layer = channel_layer
        self.channel = Channel(channel_name, alias=channel_layer.alias, channel_layer=channel_layer)
        self.reply_channel = self._reply_channel(content.get("reply_channel"))

    def _reply_channel(self, name: object) -> Channel | None:
        if name is None:
            return None
        if not isinstance(name, str):
            raise TypeError(f"reply_channel must be a channel name, not {type(name).__name__}")
        return Channel(name, alias=self.channel_layer.alias, channel_layer=self.channel_layer)

    def __getitem__(self, key: str) -> Any:
        return self.content[key]

    def __contains__(self, key: object) -> bool:
        return key in self.content

    def get(self, key: str, default: Any = None) -> Any:
        return self.content.get(key, default)

    def keys(self) -> KeysView[str]:
        return self.content.keys()

    def copy(self) -> Message:
        """A message with a deep copy of the content, on the same channel and layer."""
        return Message(copy.deepcopy(self.content), self.channel.name, self.channel_layer)

    def __repr__(self) -> str:
        return f"<Message channel={self.channel.name!r} keys={sorted(self.content)!r}>"
