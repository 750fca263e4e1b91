"""Channel layer manager, base-class rules and in-memory specifics beyond the conformance suite."""

from __future__ import annotations

import asyncio
import re
import threading

import pytest

from headrace.exceptions import ChannelFull, InvalidChannelLayerError, InvalidChannelName
from headrace.layers import (
    BaseChannelLayer,
    ChannelLayerManager,
    InMemoryChannelLayer,
    channel_layers,
    get_channel_layer,
)


def test_manager_builds_and_caches_backends() -> None:
    manager = ChannelLayerManager()
    manager.configure(
        {
            "default": {
                "BACKEND": "headrace.layers.InMemoryChannelLayer",
                "CONFIG": {"capacity": 7},
                "TEST_CONFIG": {"capacity": 3},
            }
        }
    )
    layer = manager["default"]
    assert isinstance(layer, InMemoryChannelLayer)
    assert layer.capacity == 7
    assert manager["default"] is layer
    assert "default" in manager and "other" not in manager
    assert manager.make_test_backend("default").capacity == 3
    replacement = InMemoryChannelLayer()
    assert manager.set("default", replacement) is layer
    assert manager["default"] is replacement


def test_manager_errors_are_clear() -> None:
    manager = ChannelLayerManager()
    manager.configure(
        {
            "nobackend": {"CONFIG": {}},
            "badimport": {"BACKEND": "headrace.layers.DoesNotExist"},
            "routing": {"BACKEND": "headrace.layers.InMemoryChannelLayer", "ROUTING": "a.b"},
            "plain": {"BACKEND": "headrace.layers.InMemoryChannelLayer"},
        }
    )
    with pytest.raises(InvalidChannelLayerError, match="No BACKEND specified for nobackend"):
        manager.make_backend("nobackend")
    with pytest.raises(InvalidChannelLayerError, match="Cannot import BACKEND"):
        manager.make_backend("badimport")
    # A Channels-1 entry (with ROUTING) builds its backend like any other.
    assert isinstance(manager.make_backend("routing"), InMemoryChannelLayer)
    with pytest.raises(InvalidChannelLayerError, match="No TEST_CONFIG"):
        manager.make_test_backend("plain")
    with pytest.raises(InvalidChannelLayerError, match="alias 'missing'"):
        manager.make_backend("missing")
    with pytest.raises(TypeError, match="unknown options: bogus"):
        InMemoryChannelLayer(bogus=1)


def test_get_channel_layer_none_when_unconfigured(no_channel_layer: None) -> None:
    assert get_channel_layer() is None
    assert get_channel_layer("anything") is None


def test_setting_changed_resets_cache(channel_layer: BaseChannelLayer) -> None:
    from django.core.signals import setting_changed

    assert get_channel_layer() is channel_layer
    setting_changed.send(sender=None, setting="CHANNEL_LAYERS", value={}, enter=True)
    assert channel_layers.backends == {}
    fresh = get_channel_layer()
    assert fresh is not None and fresh is not channel_layer


def test_name_rules() -> None:
    layer = BaseChannelLayer()
    assert layer.require_valid_channel_name("a.b-c_d!x9")
    assert layer.require_valid_group_name("room-1.x")
    with pytest.raises(InvalidChannelName, match=r"100 characters"):
        layer.require_valid_channel_name("a" * 100)
    with pytest.raises(TypeError, match="'bad name'"):
        layer.require_valid_channel_name("bad name")
    with pytest.raises(TypeError, match="must be a str"):
        layer.require_valid_group_name(b"bytes")
    with pytest.raises(TypeError, match="end at the !"):
        layer.require_valid_channel_name("a!b", receive=True)
    assert layer.require_valid_channel_name("a!", receive=True)
    assert layer.non_local_name("specific.x!abc") == "specific.x!"
    assert layer.non_local_name("plain") == "plain"
    assert layer.valid_channel_names(["a", "b"])
    with pytest.raises(TypeError):
        layer.valid_channel_names([])
    with pytest.warns(DeprecationWarning):
        assert layer.valid_channel_name("ok")
    with pytest.warns(DeprecationWarning):
        assert layer.valid_group_name("ok")


def test_capacity_resolution_first_match_wins() -> None:
    layer = BaseChannelLayer(
        capacity=10,
        channel_capacity={"http.*": 2, re.compile(r"^http\.response"): 5, "ws!*": 3},
    )
    assert layer.get_capacity("http.request") == 2
    assert layer.get_capacity("http.response") == 2
    assert layer.get_capacity("ws!abc") == 3
    assert layer.get_capacity("other") == 10
    with pytest.raises(TypeError, match="channel_capacity keys"):
        BaseChannelLayer(channel_capacity={42: 1})  # type: ignore[dict-item]


async def test_base_contract_methods_raise_not_implemented() -> None:
    layer = BaseChannelLayer()
    with pytest.raises(NotImplementedError):
        await layer.send("a", {"type": "x"})
    with pytest.raises(NotImplementedError):
        await layer.group_send("g", {"type": "x"})
    await layer.close()


async def test_non_dict_message_rejected() -> None:
    layer = InMemoryChannelLayer()
    with pytest.raises(TypeError, match="message must be a dict"):
        await layer.send("a", ["not", "a", "dict"])  # type: ignore[arg-type]


async def test_five_thousand_member_group_send_delivers_to_all() -> None:
    # Speed is measured by benchmarks/layers_inmemory, not asserted here.
    layer = InMemoryChannelLayer()
    members = [await layer.new_channel() for _ in range(5000)]
    for member in members:
        await layer.group_add("crowd", member)
    await layer.group_send("crowd", {"type": "hello", "text": "everyone"})
    received = [await layer.receive(member) for member in members]
    assert all(message == {"type": "hello", "text": "everyone"} for message in received)
    assert layer.channels == {}


async def test_expired_message_removes_channel_from_groups() -> None:
    layer = InMemoryChannelLayer(expiry=0.05)
    await layer.group_add("g", "dead")
    await layer.group_add("g", "alive")
    await layer.send("dead", {"type": "never.read"})
    await asyncio.sleep(0.1)  # let the message's lifetime pass; nothing to await instead
    await layer.group_send("g", {"type": "after"})
    assert layer.groups["g"].keys() == {"alive"}
    assert await asyncio.wait_for(layer.receive("alive"), 1) == {"type": "after"}


async def test_idle_channels_are_dropped() -> None:
    layer = InMemoryChannelLayer()
    await layer.send("transient", {"type": "x"})
    await layer.receive("transient")
    waiter = asyncio.ensure_future(layer.receive("waiting"))
    await asyncio.sleep(0)
    assert "waiting" in layer.channels
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert layer.channels == {}


async def test_flush_keeps_waiting_receivers_working() -> None:
    layer = InMemoryChannelLayer()
    waiter = asyncio.ensure_future(layer.receive("kept"))
    await asyncio.sleep(0)
    await layer.flush()
    await layer.send("kept", {"type": "after.flush"})
    assert await asyncio.wait_for(waiter, 1) == {"type": "after.flush"}


async def test_channel_capacity_does_not_crash_send() -> None:
    # Channels 4.3: any channel_capacity makes every send raise (uncompiled patterns).
    layer = InMemoryChannelLayer(channel_capacity={"limited": 1})
    await layer.send("limited", {"type": "x"})
    with pytest.raises(ChannelFull):
        await layer.send("limited", {"type": "y"})
    await layer.send("unlimited", {"type": "z"})


async def test_send_from_a_plain_thread_wakes_the_receiver() -> None:
    from asgiref.sync import async_to_sync

    # In debug mode asyncio raises if a future of this loop is completed from another thread.
    asyncio.get_running_loop().set_debug(True)
    layer = InMemoryChannelLayer()
    waiting = asyncio.ensure_future(layer.receive("from-thread"))
    await asyncio.sleep(0)  # let the receiver start waiting on this loop
    errors: list[BaseException] = []

    def send_in_thread() -> None:
        # No event loop in this thread: async_to_sync runs the send on a loop of its own.
        try:
            async_to_sync(layer.send)("from-thread", {"type": "hello.from.thread"})
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=send_in_thread)
    thread.start()
    done, _ = await asyncio.wait({waiting}, timeout=5)  # wait() never blocks on cancellation
    thread.join(5)
    assert errors == []
    assert waiting in done
    assert waiting.result() == {"type": "hello.from.thread"}
