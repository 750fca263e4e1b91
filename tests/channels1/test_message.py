"""The Channels-1 Message."""

from __future__ import annotations

import pytest

from headrace import Channel
from headrace.asgi import AsgiChannelLayer
from headrace.message import Message


def test_message_attributes(view: AsgiChannelLayer) -> None:
    reply = view.new_channel("websocket.send!")
    content = {"reply_channel": reply, "path": "/chat/", "order": 0, "headers": [[b"a", b"b"]]}
    message = Message(content, "websocket.connect", view)
    assert message.content is content
    assert message.channel == Channel("websocket.connect")
    assert message.channel.channel_layer is view
    assert message.reply_channel == Channel(reply)
    assert message.reply_channel is not None and message.reply_channel.channel_layer is view
    assert message.channel_layer is view
    assert message["path"] == "/chat/"
    assert message.get("missing") is None and message.get("missing", 5) == 5
    assert "order" in message
    assert set(message.keys()) == {"reply_channel", "path", "order", "headers"}
    assert (
        repr(message) == "<Message channel='websocket.connect' keys=" + repr(sorted(content)) + ">"
    )
    with pytest.raises(KeyError):
        message["missing"]


def test_reply_goes_through_the_same_layer(view: AsgiChannelLayer) -> None:
    reply = view.new_channel("http.response!")
    message = Message({"reply_channel": reply}, "http.request", view)
    assert message.reply_channel is not None
    message.reply_channel.send(
        {"status": 200, "headers": [], "content": b"", "more_content": False}
    )
    assert view.receive([reply]) == (
        reply,
        {"status": 200, "headers": [], "content": b"", "more_content": False},
    )


def test_no_reply_channel_and_copy(view: AsgiChannelLayer) -> None:
    message = Message({"id": 34245, "nested": {"a": [1]}}, "thumbnailing-tasks", view)
    assert message.reply_channel is None
    duplicate = message.copy()
    duplicate.content["nested"]["a"].append(2)
    assert message.content == {"id": 34245, "nested": {"a": [1]}}
    assert duplicate.channel == message.channel and duplicate.channel_layer is view


def test_bad_content_is_refused(view: AsgiChannelLayer) -> None:
    with pytest.raises(TypeError):
        Message("text", "x", view)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="reply_channel"):
        Message({"reply_channel": 5}, "x", view)
