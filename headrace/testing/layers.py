"""The channel layer conformance suite: the executable form of the layer contract.

Every backend in headrace runs it, and third-party backends can too. Subclass
:class:`ChannelLayerConformance` in a test module under a name pytest collects (``Test...``) and
supply the factory::

    from headrace.testing.layers import ChannelLayerConformance

    class TestMyLayer(ChannelLayerConformance):
        async def make_layer(self, **config: Any) -> BaseChannelLayer:
            return MyLayer(prefix=unique_prefix(), **config)

``make_layer(**config)`` must return a fresh layer isolated from other tests' data. ``config``
holds only the contract's keywords: ``expiry``, ``group_expiry``, ``capacity``,
``channel_capacity``. The suite closes every layer it made (after ``flush()`` when supported).

Hooks a backend may override:

* ``supports_flush`` / ``supports_groups`` — set False to skip those parts of the contract
  (tests for an absent extension pass vacuously; say so in the backend's docs);
* ``shares_state_between_instances`` — True when two instances from ``make_layer`` (same
  config) talk to the same store, as Redis, IPC or RabbitMQ layers do; then cross-instance
  delivery is checked too. The in-memory layer keeps it False;
* ``expiry_seconds`` — the short ``expiry``/``group_expiry`` used by expiry tests (default 1);
  ``expiry_grace`` — how long past it to wait before checking (default 0.5);
* ``receive_timeout`` — bound on every awaited receive, so a broken backend fails, not hangs;
* ``local_channels_keep_messages`` — False when a process-local channel holds messages only
  while a receive waits on it (the Redis pub/sub layer); its cancel-under-traffic test is
  then skipped.

The contract checked here:

1. **Ordering** — messages on one channel are received in send order.
2. **At most once** — each message reaches exactly one receiver, also with several receivers
   waiting on one channel concurrently, and receives cancelled in a race lose nothing —
   also receives cancelled at random moments while a sender keeps sending, and an instance
   closed half-way through a channel (what a stopping worker does): every message arrives
   exactly once;
   received messages equal the sent ones and do not share mutable state with the sender's dict.
3. **Capacity** — a channel holding ``capacity`` messages raises
   :class:`~headrace.exceptions.ChannelFull` on the next send; ``channel_capacity`` glob and
   regex keys override it per channel (first match wins).
4. **Groups** — every member gets its own copy, group_add is idempotent, group_discard stops
   delivery and tolerates non-members, group_send to an empty group is a no-op and never
   raises for full members (the others still receive).
5. **Expiry** — a message older than ``expiry`` is never delivered; a membership older than
   ``group_expiry`` no longer receives group messages.
6. **Process-local channels** — ``new_channel()`` names are valid, unique, contain ``!`` and
   start with the given prefix; messages sent to them are received by the creating instance.
7. **Flush** — drops pending messages and group memberships.
8. **Names and limits** — invalid channel/group names and names of ``MAX_NAME_LENGTH`` or more
   characters raise ``TypeError`` (:class:`~headrace.exceptions.InvalidChannelName`); names of
   ``MAX_NAME_LENGTH - 1`` work; str, bytes, int, float, bool, None, list and dict values and
   1 MB messages round-trip unchanged.
9. **Close** — ``close()`` succeeds and may be called twice.
10. **Statistics** — ``global_statistics()`` / ``channel_statistics(channel)`` count accepted
    and refused sends, in total and in the last whole second, and what is pending.

The Channels-1 (ASGI draft spec) view over a backend, :class:`headrace.asgi.AsgiChannelLayer`,
has its own suite, :class:`headrace.testing.asgi_layers.AsgiLayerConformance`; every backend
runs both.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import re
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, ClassVar, TypeVar

import pytest

from headrace.exceptions import ChannelFull
from headrace.layers.base import BaseChannelLayer, LayerMessage

__all__ = ["STATISTICS_KEYS", "ChannelLayerConformance"]

STATISTICS_KEYS = (
    "messages_count",
    "messages_count_per_second",
    "messages_pending",
    "messages_max_age",
    "channel_full_count",
    "channel_full_count_per_second",
)
"""What ``channel_statistics()`` returns (``global_statistics()`` may leave out the two
queue-state ones)."""

T = TypeVar("T")


class ChannelLayerConformance:
    """Base class of the conformance suite; subclasses implement :meth:`make_layer`."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.asyncio]

    supports_flush: ClassVar[bool] = True
    supports_groups: ClassVar[bool] = True
    shares_state_between_instances: ClassVar[bool] = False
    expiry_seconds: ClassVar[float] = 1.0
    expiry_grace: ClassVar[float] = 0.5
    receive_timeout: ClassVar[float] = 5.0
    local_channels_keep_messages: ClassVar[bool] = True

    # ------------------------------------------------------------------ hooks

    async def make_layer(self, **config: Any) -> BaseChannelLayer:
        """Return a new, isolated layer built with the contract keywords in ``config``."""
        raise NotImplementedError("conformance subclasses must implement make_layer()")

    async def wait_for_expiry(self) -> None:
        """Let ``expiry_seconds`` (plus grace) pass; backends with coarser clocks override."""
        await asyncio.sleep(self.expiry_seconds + self.expiry_grace)

    # ------------------------------------------------------------------ helpers

    @asynccontextmanager
    async def layer(self, **config: Any) -> AsyncIterator[BaseChannelLayer]:
        layer = await self.make_layer(**config)
        try:
            yield layer
        finally:
            if self.supports_flush:
                await layer.flush()
            await layer.close()

    async def within(self, awaitable: Awaitable[T]) -> T:
        return await asyncio.wait_for(awaitable, self.receive_timeout)

    async def receive(self, layer: BaseChannelLayer, channel: str) -> LayerMessage:
        return await self.within(layer.receive(channel))

    async def next_is(self, layer: BaseChannelLayer, channel: str, expected: LayerMessage) -> None:
        """Send a marker after whatever is (not) pending, and check what arrives first."""
        marker = {"type": "marker.after"}
        await layer.send(channel, marker)
        first = await self.receive(layer, channel)
        if expected == marker:
            assert first == marker, f"expected nothing before the marker, got {first!r}"
        else:
            assert first == expected
            assert await self.receive(layer, channel) == marker

    # ------------------------------------------------------------------ 1. ordering

    async def test_send_receive_roundtrip(self) -> None:
        async with self.layer() as layer:
            await layer.send("test-channel-1", {"type": "test.message", "text": "Ahoy-hoy!"})
            received = await self.receive(layer, "test-channel-1")
            assert received == {"type": "test.message", "text": "Ahoy-hoy!"}

    async def test_ordering_per_channel(self) -> None:
        async with self.layer(capacity=100) as layer:
            for index in range(50):
                await layer.send("ordered", {"type": "seq", "n": index})
            received = [(await self.receive(layer, "ordered"))["n"] for _ in range(50)]
            assert received == list(range(50))

    async def test_channels_are_independent(self) -> None:
        async with self.layer() as layer:
            await layer.send("left", {"type": "m", "side": "left"})
            await layer.send("right", {"type": "m", "side": "right"})
            assert (await self.receive(layer, "right"))["side"] == "right"
            assert (await self.receive(layer, "left"))["side"] == "left"

    async def test_receive_waits_for_a_later_send(self) -> None:
        async with self.layer() as layer:
            waiting = asyncio.ensure_future(self.receive(layer, "later"))
            await asyncio.sleep(0)
            await layer.send("later", {"type": "late.arrival"})
            assert await waiting == {"type": "late.arrival"}

    # ------------------------------------------------------------------ 2. at most once

    async def test_message_delivered_once(self) -> None:
        async with self.layer() as layer:
            await layer.send("once", {"type": "only.one"})
            assert await self.receive(layer, "once") == {"type": "only.one"}
            await self.next_is(layer, "once", {"type": "marker.after"})

    async def test_concurrent_receivers_each_get_one_message(self) -> None:
        async with self.layer() as layer:
            receivers = [asyncio.ensure_future(self.receive(layer, "shared")) for _ in range(5)]
            await asyncio.sleep(0)
            for index in range(5):
                await layer.send("shared", {"type": "work", "n": index})
            results = await self.within(asyncio.gather(*receivers))
            assert sorted(message["n"] for message in results) == list(range(5))

    async def test_cancelled_receiver_loses_nothing(self) -> None:
        async with self.layer() as layer:
            doomed = asyncio.ensure_future(layer.receive("cancel-me"))
            await asyncio.sleep(0)
            doomed.cancel()
            with pytest.raises(asyncio.CancelledError):
                await doomed
            await layer.send("cancel-me", {"type": "survivor"})
            assert await self.receive(layer, "cancel-me") == {"type": "survivor"}

    async def test_racing_receives_cancelled_lose_nothing(self) -> None:
        """Receive three channels at once, keep the first result, cancel the others (what the
        ASGI-1 view's multi-channel receive does): a receive cancelled just after a message was
        handed to it must put it back, so every message arrives once, in order."""
        channels = ["race-a", "race-b", "race-c"]
        async with self.layer() as layer:
            for index in range(10):
                for channel in channels:
                    await layer.send(channel, {"type": "race", "n": index, "on": channel})
            seen: dict[str, list[int]] = {channel: [] for channel in channels}
            for _ in range(60):
                if sum(len(numbers) for numbers in seen.values()) == 30:
                    break
                tasks = [asyncio.ensure_future(layer.receive(channel)) for channel in channels]
                await self.within(asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED))
                for task in tasks:
                    task.cancel()
                await asyncio.wait(tasks)
                for task in tasks:
                    if not task.cancelled() and task.exception() is None:
                        message = task.result()
                        seen[message["on"]].append(message["n"])
            assert seen == {channel: list(range(10)) for channel in channels}

    async def _receive_with_cancellations(
        self, layer: BaseChannelLayer, channel: str, count: int, sender: BaseChannelLayer
    ) -> list[int]:
        """Send ``count`` numbered messages from ``sender`` while ``layer`` receives them with
        receives cancelled after a random short time (0 to 3 ms) or let run (one in four);
        returns the numbers received, in order of arrival."""
        chooser = random.Random()

        async def send_all() -> None:
            for number in range(count):
                await sender.send(channel, {"type": "numbered", "n": number})
                if chooser.random() < 0.3:
                    await asyncio.sleep(chooser.uniform(0, 0.002))

        sending = asyncio.ensure_future(send_all())
        received: list[int] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.receive_timeout * 4
        try:
            while len(received) < count and loop.time() < deadline:
                task = asyncio.ensure_future(layer.receive(channel))
                if chooser.random() < 0.25:
                    await asyncio.wait([task], timeout=self.receive_timeout)
                else:
                    await asyncio.wait([task], timeout=chooser.uniform(0, 0.003))
                task.cancel()
                await asyncio.wait([task])
                if not task.cancelled() and task.exception() is None:
                    received.append(task.result()["n"])
            await self.within(sending)
        finally:
            sending.cancel()
        return received

    async def test_receives_cancelled_under_traffic_lose_nothing(self) -> None:
        """A consumer whose receive is cancelled at random moments while a sender keeps
        sending (what a worker stopping, or a multi-channel receive, does to it): every
        message is received exactly once by the receives that follow (a message put back
        after a cancelled receive may come after one sent later)."""
        count = 200
        async with self.layer(capacity=count) as layer:
            received = await self._receive_with_cancellations(layer, "cancel-storm", count, layer)
            assert sorted(received) == list(range(count)), _difference(received, count)

    async def test_receives_cancelled_under_traffic_lose_nothing_across_instances(self) -> None:
        """The same with the sender on another instance and the receiving instance closed
        half-way, as a stopping worker is: what it had not received yet stays on the channel
        for the next reader, and nothing arrives twice."""
        if not self.shares_state_between_instances:
            return
        count = 200
        async with self.layer(capacity=count) as sender, self.layer(capacity=count) as second:
            first = await self.make_layer(capacity=count)
            try:
                early = await self._receive_with_cancellations(
                    first, "handover", count // 2, sender
                )
            finally:
                await first.close()
            for number in range(count // 2, count):
                await sender.send("handover", {"type": "numbered", "n": number})
            late: list[int] = []
            while len(early) + len(late) < count:
                late.append((await self.receive(second, "handover"))["n"])
            assert sorted(early + late) == list(range(count)), _difference(early + late, count)
            await self.next_is(second, "handover", {"type": "marker.after"})

    async def test_local_receives_cancelled_under_traffic_lose_nothing(self) -> None:
        """The same on a process-local channel (a reply channel re-armed by its consumer)."""
        if not self.local_channels_keep_messages:
            return
        count = 200
        async with self.layer(capacity=count) as layer:
            channel = await layer.new_channel()
            received = await self._receive_with_cancellations(layer, channel, count, layer)
            assert sorted(received) == list(range(count)), _difference(received, count)

    async def test_received_message_is_a_copy(self) -> None:
        async with self.layer() as layer:
            original: dict[str, Any] = {"type": "mutable", "items": [1, 2], "nested": {"k": "v"}}
            await layer.send("copies", original)
            original["items"].append(3)
            original["nested"]["k"] = "changed"
            received = await self.receive(layer, "copies")
            assert received == {"type": "mutable", "items": [1, 2], "nested": {"k": "v"}}

    # ------------------------------------------------------------------ statistics

    async def test_statistics(self) -> None:
        """The ``statistics`` extension: accepted and refused sends, pending messages and the
        oldest one's age per channel, totals over the layer (``messages_pending`` and
        ``messages_max_age`` there when the backend keeps them)."""
        async with self.layer(capacity=3) as layer:
            assert "statistics" in layer.extensions
            for index in range(3):
                await layer.send("counted", {"type": "m", "n": index})
            with pytest.raises(ChannelFull):
                await layer.send("counted", {"type": "overflow"})
            stats = await layer.channel_statistics("counted")
            assert set(stats) == set(STATISTICS_KEYS)
            assert stats["messages_count"] == 3
            assert stats["messages_pending"] == 3
            assert stats["channel_full_count"] == 1
            assert 0 <= stats["messages_max_age"] < layer.expiry
            assert (await self.receive(layer, "counted"))["n"] == 0
            assert (await layer.channel_statistics("counted"))["messages_pending"] == 2
            untouched = await layer.channel_statistics("never-used")
            assert untouched["messages_count"] == untouched["messages_pending"] == 0
            totals = await layer.global_statistics()
            assert totals["messages_count"] >= 3
            assert totals["channel_full_count"] >= 1
            assert {"messages_count_per_second", "channel_full_count_per_second"} <= set(totals)
            if "messages_pending" in totals:
                assert totals["messages_pending"] >= 2
                assert 0 <= totals["messages_max_age"] < layer.expiry
            with pytest.raises(TypeError):
                await layer.channel_statistics("bad name!!")

    async def test_statistics_per_second_rates(self) -> None:
        """The rates count the last whole second: five sends show up as a rate of one to five
        on the channel (and at least that over the layer) within the next two seconds."""
        async with self.layer() as layer:
            for index in range(5):
                await layer.send("rated", {"type": "m", "n": index})
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 3
            seen = 0
            while loop.time() < deadline:
                seen = int((await layer.channel_statistics("rated"))["messages_count_per_second"])
                if seen:
                    break
                await asyncio.sleep(0.05)
            assert 1 <= seen <= 5
            assert (await layer.channel_statistics("quiet"))["messages_count_per_second"] == 0

    # ------------------------------------------------------------------ 3. capacity

    async def test_capacity_raises_channel_full(self) -> None:
        async with self.layer(capacity=3) as layer:
            for index in range(3):
                await layer.send("bounded", {"type": "fill", "n": index})
            with pytest.raises(ChannelFull):
                await layer.send("bounded", {"type": "overflow"})
            assert (await self.receive(layer, "bounded"))["n"] == 0
            await layer.send("bounded", {"type": "fits.again"})

    async def test_channel_capacity_glob_and_regex(self) -> None:
        config = {"small.*": 1, re.compile(r"^tiny-\d+$"): 2}
        async with self.layer(capacity=5, channel_capacity=config) as layer:
            await layer.send("small.one", {"type": "fill"})
            with pytest.raises(ChannelFull):
                await layer.send("small.one", {"type": "overflow"})
            for _ in range(2):
                await layer.send("tiny-7", {"type": "fill"})
            with pytest.raises(ChannelFull):
                await layer.send("tiny-7", {"type": "overflow"})
            for _ in range(5):
                await layer.send("default-sized", {"type": "fill"})
            with pytest.raises(ChannelFull):
                await layer.send("default-sized", {"type": "overflow"})

    # ------------------------------------------------------------------ 4. groups

    async def test_group_send_reaches_every_member(self) -> None:
        if not self.supports_groups:
            return
        async with self.layer() as layer:
            await layer.group_add("gang", "member-a")
            await layer.group_add("gang", "member-b")
            await layer.group_send("gang", {"type": "shout"})
            assert await self.receive(layer, "member-a") == {"type": "shout"}
            assert await self.receive(layer, "member-b") == {"type": "shout"}

    async def test_group_members_get_independent_copies(self) -> None:
        if not self.supports_groups:
            return
        async with self.layer() as layer:
            await layer.group_add("copies", "first")
            await layer.group_add("copies", "second")
            await layer.group_send("copies", {"type": "shared", "items": [1]})
            first = await self.receive(layer, "first")
            first["items"].append(2)
            assert await self.receive(layer, "second") == {"type": "shared", "items": [1]}

    async def test_group_add_is_idempotent(self) -> None:
        if not self.supports_groups:
            return
        async with self.layer() as layer:
            await layer.group_add("twice", "member")
            await layer.group_add("twice", "member")
            await layer.group_send("twice", {"type": "once.only"})
            await self.next_is(layer, "member", {"type": "once.only"})

    async def test_group_discard_stops_delivery(self) -> None:
        if not self.supports_groups:
            return
        async with self.layer() as layer:
            await layer.group_add("club", "stays")
            await layer.group_add("club", "leaves")
            await layer.group_discard("club", "leaves")
            await layer.group_discard("club", "never-joined")
            await layer.group_send("club", {"type": "news"})
            assert await self.receive(layer, "stays") == {"type": "news"}
            await self.next_is(layer, "leaves", {"type": "marker.after"})

    async def test_group_send_to_empty_group(self) -> None:
        if not self.supports_groups:
            return
        async with self.layer() as layer:
            await layer.group_send("nobody-here", {"type": "void"})
            await layer.group_add("emptied", "gone")
            await layer.group_discard("emptied", "gone")
            await layer.group_send("emptied", {"type": "void"})
            await self.next_is(layer, "gone", {"type": "marker.after"})

    async def test_group_send_skips_full_members(self) -> None:
        if not self.supports_groups:
            return
        async with self.layer(capacity=1) as layer:
            await layer.group_add("mixed", "full-member")
            await layer.group_add("mixed", "free-member")
            await layer.send("full-member", {"type": "already.here"})
            await layer.group_send("mixed", {"type": "broadcast"})
            assert await self.receive(layer, "free-member") == {"type": "broadcast"}
            assert await self.receive(layer, "full-member") == {"type": "already.here"}

    # ------------------------------------------------------------------ 5. expiry

    async def test_message_expiry(self) -> None:
        async with self.layer(expiry=self.expiry_seconds) as layer:
            await layer.send("perishable", {"type": "stale"})
            await self.wait_for_expiry()
            await layer.send("perishable", {"type": "fresh"})
            assert await self.receive(layer, "perishable") == {"type": "fresh"}

    async def test_group_expiry(self) -> None:
        if not self.supports_groups:
            return
        async with self.layer(group_expiry=self.expiry_seconds) as layer:
            await layer.group_add("fleeting", "lapsed")
            await self.wait_for_expiry()
            await layer.group_add("fleeting", "renewed")
            await layer.group_send("fleeting", {"type": "after.expiry"})
            assert await self.receive(layer, "renewed") == {"type": "after.expiry"}
            await self.next_is(layer, "lapsed", {"type": "marker.after"})

    # ------------------------------------------------------------------ 6. process-local

    async def test_new_channel_names(self) -> None:
        async with self.layer() as layer:
            names = {await layer.new_channel() for _ in range(50)}
            assert len(names) == 50
            for name in names:
                assert "!" in name
                assert layer.require_valid_channel_name(name)
            custom = await layer.new_channel(prefix="custom")
            assert custom.startswith("custom")

    async def test_new_channel_send_receive(self) -> None:
        async with self.layer() as layer:
            name = await layer.new_channel()
            await layer.send(name, {"type": "to.specific"})
            assert await self.receive(layer, name) == {"type": "to.specific"}

    async def test_new_channel_in_groups(self) -> None:
        if not self.supports_groups:
            return
        async with self.layer() as layer:
            first, second = await layer.new_channel(), await layer.new_channel()
            await layer.group_add("locals", first)
            await layer.group_add("locals", second)
            await layer.group_send("locals", {"type": "hello.locals"})
            assert await self.receive(layer, first) == {"type": "hello.locals"}
            assert await self.receive(layer, second) == {"type": "hello.locals"}

    async def test_two_instances(self) -> None:
        async with self.layer() as one, self.layer() as two:
            name_one, name_two = await one.new_channel(), await two.new_channel()
            assert name_one != name_two
            if not self.shares_state_between_instances:
                return
            await two.send(name_one, {"type": "across"})
            assert await self.receive(one, name_one) == {"type": "across"}
            if self.supports_groups:
                await one.group_add("shared-group", name_one)
                await two.group_add("shared-group", name_two)
                await two.group_send("shared-group", {"type": "both"})
                assert await self.receive(one, name_one) == {"type": "both"}
                assert await self.receive(two, name_two) == {"type": "both"}

    # ------------------------------------------------------------------ 7. flush

    async def test_flush(self) -> None:
        if not self.supports_flush:
            return
        async with self.layer() as layer:
            await layer.send("flushed", {"type": "dropped"})
            if self.supports_groups:
                await layer.group_add("flushed-group", "flushed")
            await layer.flush()
            if self.supports_groups:
                await layer.group_send("flushed-group", {"type": "dropped.too"})
            await self.next_is(layer, "flushed", {"type": "marker.after"})

    # ------------------------------------------------------------------ 8. names and limits

    async def test_invalid_names_raise_type_error(self) -> None:
        async with self.layer() as layer:
            for bad in ["spaced name", "", "ünïcode", "two!bangs!", 42]:
                with pytest.raises(TypeError):
                    await layer.send(bad, {"type": "m"})  # type: ignore[arg-type]
            if self.supports_groups:
                for bad_group in ["group!", "spaced group", ""]:
                    with pytest.raises(TypeError):
                        await layer.group_add(bad_group, "fine")
                    with pytest.raises(TypeError):
                        await layer.group_send(bad_group, {"type": "m"})
                with pytest.raises(TypeError):
                    await layer.group_add("fine", "bad channel")

    async def test_name_length_limit(self) -> None:
        async with self.layer() as layer:
            longest = "a" * (layer.MAX_NAME_LENGTH - 1)
            await layer.send(longest, {"type": "m"})
            assert await self.receive(layer, longest) == {"type": "m"}
            with pytest.raises(TypeError):
                await layer.send(longest + "a", {"type": "m"})
            if self.supports_groups:
                await layer.group_add(longest, "member")
                with pytest.raises(TypeError):
                    await layer.group_add(longest + "a", "member")

    async def test_message_value_types_roundtrip(self) -> None:
        message = {
            "type": "typed",
            "text": "üñí €",
            "bytes": b"\x00\xff",
            "int": 2**40,
            "negative": -7,
            "float": 1.5,
            "true": True,
            "none": None,
            "list": [1, "a", b"b", [2.5]],
            "dict": {"nested": {"deeper": [None, False]}},
        }
        async with self.layer() as layer:
            await layer.send("typed", message)
            assert await self.receive(layer, "typed") == message

    async def test_one_megabyte_message(self) -> None:
        async with self.layer() as layer:
            payload = bytes(range(256)) * 4096
            await layer.send("big", {"type": "big", "data": payload, "text": "x" * 1_000_000})
            received = await self.receive(layer, "big")
            assert received["data"] == payload
            assert len(received["text"]) == 1_000_000

    # ------------------------------------------------------------------ 9. close

    async def test_close_twice(self) -> None:
        layer = await self.make_layer()
        await layer.send("closing", {"type": "m"})
        assert await self.receive(layer, "closing") == {"type": "m"}
        if self.supports_flush:
            await layer.flush()
        await layer.close()
        await layer.close()


def _difference(received: list[int], count: int) -> str:
    """What is wrong with ``received`` as the numbers ``0 .. count-1``, each once, in order."""
    missing = sorted(set(range(count)) - set(received))
    duplicated = sorted({n for n in received if received.count(n) > 1})
    out_of_order = [(a, b) for a, b in itertools.pairwise(received) if b < a]
    return f"missing {missing}, duplicated {duplicated}, out of order {out_of_order[:10]}"
