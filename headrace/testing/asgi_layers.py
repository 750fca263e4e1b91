"""The Channels-1 (ASGI draft spec) conformance suite: the sync view over a backend.

:class:`~headrace.asgi.AsgiChannelLayer` is one adapter over every async backend; this suite
checks it over each of them, the way :mod:`headrace.testing.layers` checks the backends. Tests
are plain synchronous functions, as Channels-1 code is. Subclass :class:`AsgiLayerConformance`
under a name pytest collects and supply the backend::

    from headrace.testing.asgi_layers import AsgiLayerConformance

    class TestMyLayerAsgi(AsgiLayerConformance):
        def make_backend(self, **config: Any) -> BaseChannelLayer:
            return MyLayer(prefix=unique_prefix(), **config)

``make_backend(**config)`` returns a fresh, isolated backend (``config`` holds only the
contract's keywords: ``expiry``, ``group_expiry``, ``capacity``, ``channel_capacity``). The
suite wraps it in a view, and flushes and closes the view after each test.

Hooks:

* ``shares_state_between_instances`` — True when two backends from ``make_backend`` share one
  store (IPC, Redis); then a message sent by one view is checked to reach another.
* ``local_channels_keep_messages`` — False for a backend whose process-local (``!``) channels
  only take messages while a receive waits, and drop their group memberships when a receive
  gives up (Redis pub/sub): tests that poll a ``!`` channel with nothing in it are skipped.
* ``receive_deadline`` — how long a test waits for a message that must come (default 10 s).

What is checked: send/receive and the ``(channel, message)`` / ``(None, None)`` shapes; FIFO
order per channel, also through multi-channel receives; nothing lost or duplicated when several
channels have messages at once; ``block=True`` returning ``(None, None)`` when nothing comes and
waking for a message sent later from another thread; sending from many threads at once; the
name rules (``!``, ``?``, the reserved single-reader marker, the length limit); ``new_channel``
uniqueness and patterns; MessageTooLarge (1 MiB), TypeError for non-dicts and unserialisable
values; ChannelFull, and ``send_group`` never raising it; groups of normal, ``!`` and ``?``
channels; flush; ``extensions`` and the configuration attributes; ``receive_async``; close.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import pytest

from headrace.asgi import MAX_MESSAGE_SIZE, SINGLE_READER_MARKER, AsgiChannelLayer
from headrace.exceptions import ChannelFull, ChannelLayerError, MessageTooLarge
from headrace.layers.base import BaseChannelLayer

__all__ = ["AsgiLayerConformance"]

Received = tuple[str, dict[str, Any]] | tuple[None, None]


class AsgiLayerConformance:
    """Base class of the ASGI-1 view suite; subclasses implement :meth:`make_backend`."""

    shares_state_between_instances: ClassVar[bool] = False
    local_channels_keep_messages: ClassVar[bool] = True
    receive_deadline: ClassVar[float] = 10.0

    # ------------------------------------------------------------------ hooks

    def make_backend(self, **config: Any) -> BaseChannelLayer:
        """Return a new, isolated async backend built with the contract keywords."""
        raise NotImplementedError("ASGI conformance subclasses must implement make_backend()")

    # ------------------------------------------------------------------ helpers

    @contextmanager
    def view(self, **config: Any) -> Iterator[AsgiChannelLayer]:
        layer = AsgiChannelLayer(self.make_backend(**config), alias="conformance")
        try:
            yield layer
        finally:
            if not layer.closed:
                layer.flush()
                layer.close()

    def receive_one(self, layer: AsgiChannelLayer, channels: list[str]) -> tuple[str, Any]:
        """Receive with ``block=True`` until a message comes (bounded by receive_deadline)."""
        deadline = time.monotonic() + self.receive_deadline
        while time.monotonic() < deadline:
            channel, message = layer.receive(channels, block=True)
            if channel is not None:
                return channel, message
        raise AssertionError(f"nothing arrived on {channels} within {self.receive_deadline} s")

    def assert_empty(self, layer: AsgiChannelLayer, channel: str) -> None:
        """Nothing is pending on ``channel``: a marker sent now is the next message."""
        layer.send(channel, {"marker": True})
        assert self.receive_one(layer, [channel]) == (channel, {"marker": True})

    # ------------------------------------------------------------------ send and receive

    def test_send_receive_shapes(self) -> None:
        with self.view() as layer:
            layer.send("asgi.roundtrip", {"text": "Ahoy-hoy!"})
            assert self.receive_one(layer, ["asgi.roundtrip"]) == (
                "asgi.roundtrip",
                {"text": "Ahoy-hoy!"},
            )
            assert layer.receive(["asgi.roundtrip"]) == (None, None)
            assert layer.receive(["asgi.roundtrip", "asgi.other"], block=False) == (None, None)

    def test_nonblocking_receive_delivers(self) -> None:
        with self.view() as layer:
            layer.send("asgi.poll", {"n": 1})
            deadline = time.monotonic() + self.receive_deadline
            received: Received = (None, None)
            while received == (None, None) and time.monotonic() < deadline:
                received = layer.receive(["asgi.poll"], block=False)
            assert received == ("asgi.poll", {"n": 1})

    def test_order_per_channel(self) -> None:
        with self.view() as layer:
            for index in range(30):
                layer.send("asgi.ordered", {"n": index})
            got = [
                self.receive_one(layer, ["asgi.ordered", "asgi.idle"])[1]["n"] for _ in range(30)
            ]
            assert got == list(range(30))

    def test_several_channels_nothing_lost_or_doubled(self) -> None:
        channels = ["asgi.multi-a", "asgi.multi-b", "asgi.multi-c"]
        with self.view() as layer:
            for index in range(10):
                for channel in channels:
                    layer.send(channel, {"n": index, "on": channel})
            seen: dict[str, list[int]] = {channel: [] for channel in channels}
            for _ in range(30):
                channel, message = self.receive_one(layer, channels)
                assert message["on"] == channel
                seen[channel].append(message["n"])
            assert seen == {channel: list(range(10)) for channel in channels}
            for channel in channels:
                self.assert_empty(layer, channel)

    def test_block_true_times_out_with_nothing(self) -> None:
        with self.view() as layer:
            layer.blocking_timeout = 0.2
            assert layer.receive(["asgi.silent"], block=True) == (None, None)

    def test_block_true_wakes_for_a_send_from_another_thread(self) -> None:
        with self.view() as layer:
            layer.blocking_timeout = self.receive_deadline
            started = threading.Event()
            results: list[Received] = []

            def receiver() -> None:
                started.set()
                results.append(layer.receive(["asgi.wake"], block=True))

            thread = threading.Thread(target=receiver)
            thread.start()
            assert started.wait(self.receive_deadline)
            layer.send("asgi.wake", {"woken": True})
            thread.join(self.receive_deadline * 2)
            assert not thread.is_alive()
            if results == [(None, None)]:  # the receive gave up before the send (slow machine)
                results = [self.receive_one(layer, ["asgi.wake"])]
            assert results == [("asgi.wake", {"woken": True})]

    def test_many_sending_threads(self) -> None:
        with self.view(capacity=500) as layer:

            def sender(number: int) -> None:
                for index in range(25):
                    layer.send("asgi.threads", {"sender": number, "n": index})

            threads = [threading.Thread(target=sender, args=(number,)) for number in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(self.receive_deadline * 2)
            per_sender: dict[int, list[int]] = {number: [] for number in range(4)}
            for _ in range(100):
                message = self.receive_one(layer, ["asgi.threads"])[1]
                per_sender[message["sender"]].append(message["n"])
            assert per_sender == {number: list(range(25)) for number in range(4)}

    def test_receive_from_another_thread_than_the_sender(self) -> None:
        with self.view() as layer:
            results: list[tuple[str, Any]] = []
            thread = threading.Thread(
                target=lambda: results.append(self.receive_one(layer, ["asgi.cross"]))
            )
            layer.send("asgi.cross", {"from": "main"})
            thread.start()
            thread.join(self.receive_deadline * 2)
            assert results == [("asgi.cross", {"from": "main"})]

    def test_received_message_is_independent_of_the_sent_dict(self) -> None:
        with self.view() as layer:
            original: dict[str, Any] = {"items": [1, 2], "nested": {"k": "v"}}
            layer.send("asgi.copy", original)
            original["items"].append(3)
            original["nested"]["k"] = "changed"
            assert self.receive_one(layer, ["asgi.copy"])[1] == {
                "items": [1, 2],
                "nested": {"k": "v"},
            }

    def test_value_types_roundtrip(self) -> None:
        message = {
            "text": "üñí €",
            "bytes": b"\x00\xff",
            "int": 2**40,
            "float": 1.5,
            "bool": True,
            "none": None,
            "list": [1, "a", b"b", [2.5]],
            "dict": {"nested": {"deeper": [None, False]}},
        }
        with self.view() as layer:
            layer.send("asgi.types", message)
            assert self.receive_one(layer, ["asgi.types"])[1] == message

    # ------------------------------------------------------------------ names

    def test_invalid_names(self) -> None:
        with self.view() as layer:
            for bad in ["spaced name", "", "ünïcode", "two!bangs!", "both!and?", "a?b?c", 42]:
                with pytest.raises(TypeError):
                    layer.send(bad, {"m": 1})  # type: ignore[arg-type]
                with pytest.raises(TypeError):
                    layer.receive([bad])  # type: ignore[list-item]
            with pytest.raises(TypeError):
                layer.send(f"normal{SINGLE_READER_MARKER}name", {"m": 1})
            with pytest.raises(TypeError, match="bare prefix"):
                layer.receive(["http.response!"])
            with pytest.raises(TypeError):
                layer.receive("not-a-list")
            with pytest.raises(TypeError):
                layer.receive([])
            for bad_group in ["group!", "group?", "spaced group", ""]:
                with pytest.raises(TypeError):
                    layer.group_add(bad_group, "fine")
                with pytest.raises(TypeError):
                    layer.send_group(bad_group, {"m": 1})
            with pytest.raises(TypeError):
                layer.group_add("fine", "bad channel")

    def test_name_length_limit(self) -> None:
        with self.view() as layer:
            longest = "a" * (layer.MAX_NAME_LENGTH - 1)
            layer.send(longest, {"m": 1})
            assert self.receive_one(layer, [longest]) == (longest, {"m": 1})
            with pytest.raises(TypeError):
                layer.send(longest + "a", {"m": 1})
            with pytest.raises(TypeError):
                layer.group_add(longest + "a", "member")

    def test_new_channel_patterns_and_uniqueness(self) -> None:
        with self.view() as layer:
            specific = {layer.new_channel("asgi.reply!") for _ in range(50)}
            single = {layer.new_channel("asgi.body?") for _ in range(50)}
            assert len(specific) == 50 and len(single) == 50
            for name in specific:
                assert name.startswith("asgi.reply") and name.count("!") == 1
                assert not name.endswith("!")
            for name in single:
                assert name.startswith("asgi.body?") and len(name) > len("asgi.body?")
            for bad in ["no-type-char", "two!!", "!", "?", "a!b!", "sp ace!", 7]:
                with pytest.raises(TypeError):
                    layer.new_channel(bad)  # type: ignore[arg-type]

    def test_process_specific_channel_is_received_here(self) -> None:
        with self.view() as layer:
            name = layer.new_channel("asgi.response!")
            layer.send(name, {"status": 200})
            layer.send(name, {"more": True})
            assert self.receive_one(layer, [name]) == (name, {"status": 200})
            assert self.receive_one(layer, [name, "asgi.unrelated"]) == (name, {"more": True})

    def test_single_reader_channel(self) -> None:
        with self.view() as layer:
            name = layer.new_channel("asgi.request.body?")
            for index in range(5):
                layer.send(name, {"chunk": index})
            got = [self.receive_one(layer, [name])[1]["chunk"] for _ in range(5)]
            assert got == list(range(5))

    def test_two_views(self) -> None:
        with self.view() as one, self.view() as two:
            local_one, local_two = one.new_channel("asgi.two!"), two.new_channel("asgi.two!")
            assert local_one != local_two
            if not self.shares_state_between_instances:
                return
            two.send(local_one, {"across": "to one"})
            assert self.receive_one(one, [local_one]) == (local_one, {"across": "to one"})
            single = one.new_channel("asgi.shared?")
            one.send(single, {"read": "by two"})
            assert self.receive_one(two, [single]) == (single, {"read": "by two"})
            two.send("asgi.shared-normal", {"n": 1})
            assert self.receive_one(one, ["asgi.shared-normal"]) == ("asgi.shared-normal", {"n": 1})

    # ------------------------------------------------------------------ limits

    def test_message_too_large(self) -> None:
        with self.view() as layer:
            assert layer.MessageTooLarge is MessageTooLarge
            too_big = {"content": b"x" * (MAX_MESSAGE_SIZE + 1)}
            with pytest.raises(MessageTooLarge):
                layer.send("asgi.big", too_big)
            with pytest.raises(MessageTooLarge):
                layer.send_group("asgi-big-group", too_big)
            with pytest.raises(MessageTooLarge):
                layer.send("asgi.big", {"parts": ["é" * 1000] * 600})
            fits = {"content": b"y" * (MAX_MESSAGE_SIZE - 1024)}
            layer.send("asgi.big", fits)
            assert self.receive_one(layer, ["asgi.big"])[1] == fits

    def test_bad_messages_raise_type_error(self) -> None:
        with self.view() as layer:
            for bad in ["text", [1], None, {"a": {1, 2}}, {"a": object()}, {1: "int key"}]:
                with pytest.raises(TypeError):
                    layer.send("asgi.bad", bad)  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                layer.send("asgi.bad", {"huge": 2**70})
            self.assert_empty(layer, "asgi.bad")

    def test_channel_full(self) -> None:
        with self.view(capacity=2) as layer:
            assert layer.ChannelFull is ChannelFull
            layer.send("asgi.full", {"n": 0})
            layer.send("asgi.full", {"n": 1})
            with pytest.raises(ChannelFull):
                layer.send("asgi.full", {"n": 2})
            assert self.receive_one(layer, ["asgi.full"])[1] == {"n": 0}
            layer.send("asgi.full", {"n": 3})

    def test_send_group_never_raises_channel_full(self) -> None:
        with self.view(capacity=1) as layer:
            layer.group_add("asgi-crowd", "asgi.crowd-full")
            layer.group_add("asgi-crowd", "asgi.crowd-free")
            layer.send("asgi.crowd-full", {"already": "here"})
            layer.send_group("asgi-crowd", {"to": "all"})
            assert self.receive_one(layer, ["asgi.crowd-free"])[1] == {"to": "all"}
            assert self.receive_one(layer, ["asgi.crowd-full"])[1] == {"already": "here"}

    def test_configuration_attributes(self) -> None:
        capacities = {"asgi.small*": 1, re.compile(r"^asgi\.tiny-\d+$"): 2}
        with self.view(
            capacity=7, expiry=33, group_expiry=444, channel_capacity=capacities
        ) as layer:
            assert layer.capacity == 7
            assert layer.expiry == 33
            assert layer.group_expiry == 444
            assert layer.get_capacity("asgi.small.one") == 1
            assert layer.get_capacity("asgi.tiny-3") == 2
            assert layer.get_capacity("asgi.other") == 7
            assert [capacity for _, capacity in layer.channel_capacity] == [1, 2]
            layer.send("asgi.small.one", {"n": 1})
            with pytest.raises(ChannelFull):
                layer.send("asgi.small.one", {"n": 2})

    def test_extensions(self) -> None:
        with self.view() as layer:
            assert {"groups", "flush", "async"} <= set(layer.extensions)
            has_statistics = "statistics" in layer.backend.extensions
            assert ("statistics" in layer.extensions) is has_statistics
            if not has_statistics:
                with pytest.raises(ChannelLayerError, match="statistics"):
                    layer.global_statistics()

    def test_statistics(self) -> None:
        """The ``statistics`` extension through the sync view: counts of accepted and refused
        sends, what is pending, and every layer in headrace keeps them."""
        with self.view(capacity=2) as layer:
            assert "statistics" in layer.extensions
            layer.send("asgi.counted", {"n": 1})
            layer.send("asgi.counted", {"n": 2})
            with pytest.raises(ChannelFull):
                layer.send("asgi.counted", {"n": 3})
            stats = layer.channel_statistics("asgi.counted")
            assert stats["messages_count"] == 2
            assert stats["messages_pending"] == 2
            assert stats["channel_full_count"] == 1
            assert 0 <= stats["messages_max_age"] < layer.expiry
            assert {"messages_count_per_second", "channel_full_count_per_second"} <= set(stats)
            assert layer.receive(["asgi.counted"], block=True)[1] == {"n": 1}
            assert layer.channel_statistics("asgi.counted")["messages_pending"] == 1
            totals = layer.global_statistics()
            assert totals["messages_count"] >= 2
            assert totals["channel_full_count"] >= 1
            with pytest.raises(TypeError):
                layer.channel_statistics("bad name!!")

    # ------------------------------------------------------------------ groups

    def test_groups(self) -> None:
        with self.view() as layer:
            specific = layer.new_channel("asgi.member!")
            single = layer.new_channel("asgi.member?")
            for member in ["asgi.member-normal", specific, single]:
                layer.group_add("asgi-room", member)
                layer.group_add("asgi-room", member)  # idempotent
            layer.group_add("asgi-room", "asgi.member-leaves")
            layer.group_discard("asgi-room", "asgi.member-leaves")
            layer.group_discard("asgi-room", "asgi.never-joined")
            layer.send_group("asgi-room", {"news": 1})
            for member in ["asgi.member-normal", specific, single]:
                assert self.receive_one(layer, [member]) == (member, {"news": 1})
            for member in ["asgi.member-normal", single, "asgi.member-leaves"]:
                self.assert_empty(layer, member)
            layer.send_group("asgi-nobody", {"void": True})

    def test_flush(self) -> None:
        with self.view() as layer:
            layer.send("asgi.flushed", {"dropped": True})
            layer.group_add("asgi-flushed", "asgi.flushed")
            layer.flush()
            layer.send_group("asgi-flushed", {"dropped": "too"})
            self.assert_empty(layer, "asgi.flushed")

    def test_polling_an_empty_local_channel_keeps_it(self) -> None:
        if not self.local_channels_keep_messages:
            return  # see the hook: such backends drop a local channel a receive gave up on
        with self.view() as layer:
            name = layer.new_channel("asgi.kept!")
            layer.group_add("asgi-kept", name)
            assert layer.receive([name]) == (None, None)
            layer.send(name, {"after": "poll"})
            layer.send_group("asgi-kept", {"group": "after poll"})
            assert self.receive_one(layer, [name]) == (name, {"after": "poll"})
            assert self.receive_one(layer, [name]) == (name, {"group": "after poll"})

    # ------------------------------------------------------------------ async, close

    def test_receive_async(self) -> None:
        with self.view() as layer:

            async def scenario() -> tuple[Received, Received]:
                layer.blocking_timeout = 0.2
                nothing = await layer.receive_async(["asgi.async-silent"])
                layer.blocking_timeout = self.receive_deadline
                waiting = asyncio.ensure_future(layer.receive_async(["asgi.async"]))
                await asyncio.sleep(0)
                await asyncio.to_thread(layer.send, "asgi.async", {"awaited": True})
                return nothing, await asyncio.wait_for(waiting, self.receive_deadline * 2)

            nothing, got = asyncio.run(scenario())
            assert nothing == (None, None)
            assert got == ("asgi.async", {"awaited": True})

    def test_cancelled_receive_async_loses_nothing(self) -> None:
        with self.view() as layer:

            async def scenario() -> None:
                doomed = asyncio.ensure_future(layer.receive_async(["asgi.cancel"]))
                await asyncio.sleep(0.05)
                doomed.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await doomed

            asyncio.run(scenario())
            layer.send("asgi.cancel", {"survivor": True})
            assert self.receive_one(layer, ["asgi.cancel"]) == ("asgi.cancel", {"survivor": True})

    def test_close(self) -> None:
        layer = AsgiChannelLayer(self.make_backend(), alias="conformance")
        layer.send("asgi.closing", {"n": 1})
        assert self.receive_one(layer, ["asgi.closing"]) == ("asgi.closing", {"n": 1})
        layer.flush()
        layer.close()
        layer.close()
        with pytest.raises(ChannelLayerError, match="closed"):
            layer.send("asgi.closing", {"n": 2})
