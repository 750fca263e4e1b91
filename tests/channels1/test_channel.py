"""Channel, Group and held sends (consumer atomicity) over a real in-memory view."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from headrace import Channel, Group
from headrace.asgi import AsgiChannelLayer
from headrace.channel import held_sends
from headrace.exceptions import ChannelFull
from headrace.layers import InMemoryChannelLayer


def drain(view: AsgiChannelLayer, channel: str) -> list[dict[str, Any]]:
    """Every message now pending on ``channel`` (the in-memory layer answers at once)."""
    got = []
    while True:
        name, message = view.receive([channel])
        if name is None:
            return got
        got.append(message)


def test_channel_send_and_identity(view: AsgiChannelLayer) -> None:
    channel = Channel("plain.channel", channel_layer=view)
    channel.send({"n": 1})
    assert drain(view, "plain.channel") == [{"n": 1}]
    assert channel == Channel("plain.channel") == "plain.channel"
    assert channel != Channel("other")
    assert hash(channel) == hash(Channel("plain.channel"))
    assert len({channel, Channel("plain.channel")}) == 1
    assert str(channel) == "plain.channel" and channel.name == "plain.channel"
    assert repr(channel) == "Channel('plain.channel')"
    assert channel.channel_layer is view


@pytest.mark.parametrize("bad", ["text", ["list"], None, 3])
def test_content_must_be_a_dict(view: AsgiChannelLayer, bad: Any) -> None:
    with pytest.raises(TypeError, match="only send dicts"):
        Channel("typed", channel_layer=view).send(bad)
    with pytest.raises(TypeError, match="only send dicts"):
        Group("typed", channel_layer=view).send(bad)
    with held_sends(), pytest.raises(TypeError):
        Channel("typed", channel_layer=view).send(bad)


def test_group_add_discard_send(view: AsgiChannelLayer) -> None:
    group = Group("room", channel_layer=view)
    member = Channel(view.new_channel("websocket.send!"), channel_layer=view)
    group.add(member)
    group.add("by.name")
    group.send({"text": "hi"})
    assert drain(view, member.name) == [{"text": "hi"}]
    assert drain(view, "by.name") == [{"text": "hi"}]
    group.discard(member)
    group.discard("never.joined")
    group.send({"text": "again"})
    assert drain(view, member.name) == []
    assert drain(view, "by.name") == [{"text": "again"}]
    with pytest.raises(TypeError):
        group.add(42)  # type: ignore[arg-type]


def test_sends_are_held_until_the_block_ends_in_order(view: AsgiChannelLayer) -> None:
    reply = Channel("held.reply", channel_layer=view)
    Group("held", channel_layer=view).add("held.member")
    with held_sends() as held:
        reply.send({"n": 1})
        Group("held", channel_layer=view).send({"g": 1})
        reply.send({"n": 2})
        Channel("held.now", channel_layer=view).send({"now": True}, immediately=True)
        assert drain(view, "held.now") == [{"now": True}]
        assert drain(view, "held.reply") == []
        assert len(held) == 3
    assert drain(view, "held.reply") == [{"n": 1}, {"n": 2}]
    assert drain(view, "held.member") == [{"g": 1}]


def test_held_sends_go_out_when_the_consumer_raises(view: AsgiChannelLayer) -> None:
    with pytest.raises(ZeroDivisionError), held_sends():
        Channel("raised", channel_layer=view).send({"before": "error"})
        _ = 1 / 0
    assert drain(view, "raised") == [{"before": "error"}]


def test_discard_drops_held_sends(view: AsgiChannelLayer) -> None:
    with held_sends() as held:
        Channel("dropped", channel_layer=view).send({"n": 1})
        held.discard()
        Channel("dropped", channel_layer=view).send({"n": 2})
    assert drain(view, "dropped") == [{"n": 2}]


def test_outside_held_sends_everything_is_immediate(view: AsgiChannelLayer) -> None:
    Channel("direct", channel_layer=view).send({"n": 1})
    assert drain(view, "direct") == [{"n": 1}]


def test_held_sends_are_per_thread(view: AsgiChannelLayer) -> None:
    inside = threading.Event()
    release = threading.Event()

    def consumer() -> None:
        with held_sends():
            Channel("per.thread", channel_layer=view).send({"from": "consumer"})
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=consumer)
    thread.start()
    assert inside.wait(10)
    Channel("per.thread", channel_layer=view).send({"from": "main"})
    assert drain(view, "per.thread") == [{"from": "main"}]
    release.set()
    thread.join(10)
    assert drain(view, "per.thread") == [{"from": "consumer"}]


def test_nested_blocks_send_at_their_own_end(view: AsgiChannelLayer) -> None:
    with held_sends():
        Channel("nested", channel_layer=view).send({"outer": 1})
        with held_sends():
            Channel("nested", channel_layer=view).send({"inner": 1})
        assert drain(view, "nested") == [{"inner": 1}]
    assert drain(view, "nested") == [{"outer": 1}]


def test_checks_happen_at_send_time_even_when_held(view: AsgiChannelLayer) -> None:
    with held_sends() as held:
        with pytest.raises(TypeError):
            Channel("bad name", channel_layer=view).send({"n": 1})
        with pytest.raises(view.MessageTooLarge):
            Channel("big", channel_layer=view).send({"b": b"x" * (2 * 1024 * 1024)})
        assert len(held) == 0


def test_a_failing_held_send_does_not_stop_the_others() -> None:
    view = AsgiChannelLayer(InMemoryChannelLayer(capacity=1))
    try:
        view.send("full", {"already": "there"})
        with pytest.raises(ChannelFull), held_sends():
            Channel("full", channel_layer=view).send({"n": 1})
            Channel("free", channel_layer=view).send({"n": 2})
        assert drain(view, "free") == [{"n": 2}]
        assert drain(view, "full") == [{"already": "there"}]
    finally:
        view.close()


@pytest.mark.usefixtures("configured")
def test_default_alias_is_looked_up_at_send_time() -> None:
    from headrace.asgi import get_channel_layer

    channel = Channel("by.alias")
    channel.send({"n": 1})
    assert drain(get_channel_layer(), "by.alias") == [{"n": 1}]
    listed = Channel("by.alias", alias="listed")
    assert listed.channel_layer is get_channel_layer("listed")
