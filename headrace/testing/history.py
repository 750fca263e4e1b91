"""The conformance suite for group history and presence (the ``history`` and ``presence``
extensions of the layer contract, docs/history-presence.md).

Every backend with those extensions runs it; subclass :class:`HistoryPresenceConformance` in a
test module under a name pytest collects and supply the factory::

    from headrace.testing.history import HistoryPresenceConformance

    class TestMyLayerHistory(HistoryPresenceConformance):
        async def make_layer(self, **config: Any) -> BaseChannelLayer:
            return MyLayer(prefix=unique_prefix(), **config)

``make_layer(**config)`` returns a fresh layer isolated from other tests' data; ``config``
holds ``history`` and ``presence`` (the CONFIG options) and may hold the contract's other
keywords. The suite flushes and closes every layer it made.

Hooks a backend may override:

* ``shares_state_between_instances`` — True when two instances from ``make_layer`` (same
  config) see the same groups (Redis, IPC, RabbitMQ); then senders, members and watchers are
  spread over two instances;
* :meth:`lose_history` — make the store forget ``group``'s history the way it can happen in
  production (default: ``flush()``; Redis may restart or delete the stream);
* :meth:`stop_heartbeat` — make ``layer`` stop refreshing the presence of the channels it
  added, as a process that hangs or dies without discarding them (default: the backend's
  ``stop_presence_heartbeat()``);
* ``presence_ttl`` — the short presence ttl of the expiry tests (default 1 s); members must
  then disappear within ``expiry_deadline`` seconds (polled, default 15);
* ``history_ttl`` — the short history ttl of the history expiry test (default 1 s);
* ``receive_timeout`` — bound on every awaited receive.

What is checked:

1. **Positions** — ``group_send`` returns ``Position(epoch, offset)`` with offsets 1, 2, 3 ...
   in one epoch for a group with history, None for other groups; members receive each message
   with ``[epoch, offset]`` under ``POSITION_KEY``.
2. **Reading** — ``group_history`` keeps the newest ``size`` messages exactly as sent (no
   ``POSITION_KEY``), oldest first; ``since`` returns the ones after it; ``limit`` keeps the
   oldest ``limit`` so paging forward visits every message once; ``recovered`` is False for a
   position older than what is kept, ahead of the stream, or from another epoch; history older
   than ``ttl`` goes.
3. **Epochs** — after the history is lost the epoch changes, offsets start at 1 again and an
   old position is not recovered.
4. **Joining live traffic** — a member that joins a group while messages flow, reads history
   since an earlier position and then takes live messages after the last offset it emitted
   gets every message once, in order.
5. **Presence** — ``group_add(info=)`` records the info, re-adding replaces it without a new
   join event, ``group_presence`` / ``group_presence_count`` answer (also for 1,000 members);
   ``presence.join`` reaches every member including the joiner, ``presence.leave`` the
   remaining members on ``group_discard``; neither carries a position nor takes an offset;
   without ``events`` nothing is sent.
6. **Liveness** — members whose layer stops its heartbeat disappear (a leave event goes out
   once) while those of a live layer stay.
7. **Flush and errors** — ``flush()`` drops history and presence; groups without the feature
   raise ValueError naming the group; bad ``history`` / ``presence`` options raise ConfigError
   naming the key; bad ``since``, ``limit`` and ``info`` are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, ClassVar, TypeVar

import pytest

from headrace.exceptions import ConfigError
from headrace.layers.base import BaseChannelLayer, LayerMessage
from headrace.layers.history import POSITION_KEY, GroupHistory, Position

__all__ = ["HistoryPresenceConformance", "join_with_history", "presence"]

T = TypeVar("T")

_names = itertools.count()


def _unique(prefix: str) -> str:
    return f"{prefix}.t{next(_names)}x{time.monotonic_ns() % 1_000_000_007}"


async def join_with_history(
    layer: BaseChannelLayer,
    group: str,
    channel: str,
    since: Position | None,
    receive_timeout: float,
    until_offset: int,
) -> list[int]:
    """What a consumer does to join live traffic without a gap or a duplicate: join, read
    history since ``since``, then the live messages after the last offset emitted. Returns
    the offsets emitted, up to ``until_offset``."""
    await layer.group_add(group, channel)
    history = await layer.group_history(group, since=since)
    emitted = [offset for offset, _ in history.messages]
    last = emitted[-1] if emitted else (since.offset if since is not None else 0)
    while last < until_offset:
        message = await asyncio.wait_for(layer.receive(channel), receive_timeout)
        position = Position.from_message(message)
        assert position is not None, f"a live message without a position: {message!r}"
        assert position.epoch == history.epoch
        if position.offset > last:
            emitted.append(position.offset)
            last = position.offset
    return emitted


def presence(event: str, group: str, channel: str, info: dict[str, Any]) -> dict[str, Any]:
    """The ``presence.join`` (``event="join"``) or ``presence.leave`` message a member expects."""
    return {"type": f"presence.{event}", "group": group, "channel": channel, "info": info}


class HistoryPresenceConformance:
    """Base class of the history and presence suite; subclasses implement make_layer()."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.asyncio]

    shares_state_between_instances: ClassVar[bool] = False
    presence_ttl: ClassVar[float] = 1.0
    history_ttl: ClassVar[float] = 1.0
    expiry_deadline: ClassVar[float] = 15.0
    receive_timeout: ClassVar[float] = 5.0
    history_size: ClassVar[int] = 10

    # ------------------------------------------------------------------ hooks

    async def make_layer(self, **config: Any) -> BaseChannelLayer:
        """Return a new, isolated layer built with ``config``."""
        raise NotImplementedError("conformance subclasses must implement make_layer()")

    async def lose_history(self, layer: BaseChannelLayer, group: str) -> None:
        """Make the store forget ``group``'s history."""
        await layer.flush()

    async def stop_heartbeat(self, layer: BaseChannelLayer) -> None:
        """Make ``layer`` stop refreshing the presence of the channels it added."""
        stop = getattr(layer, "stop_presence_heartbeat", None)
        if stop is None:
            raise NotImplementedError(
                f"{type(layer).__name__} has no stop_presence_heartbeat(); "
                "override stop_heartbeat() in the conformance subclass"
            )
        result = stop()
        if asyncio.iscoroutine(result):
            await result

    # ------------------------------------------------------------------ helpers

    def config(self, **overrides: Any) -> dict[str, Any]:
        ttl = self.presence_ttl
        config: dict[str, Any] = {
            "history": {
                "hist.*": {"size": self.history_size, "ttl": 300},
                "both.*": {"size": self.history_size, "ttl": 300},
                "short.*": {"size": self.history_size, "ttl": self.history_ttl},
                "big.*": {"size": 10_000, "ttl": 300},
            },
            "presence": {
                "pres.*": {"ttl": 30, "events": True},
                "both.*": {"ttl": 30, "events": True},
                "quiet.*": {"ttl": 30},
                "live.*": {"ttl": ttl, "events": True},
                "steady.*": {"ttl": ttl * 2},
            },
        }
        config.update(overrides)
        return config

    @asynccontextmanager
    async def layer(self, **config: Any) -> AsyncIterator[BaseChannelLayer]:
        layer = await self.make_layer(**(config or self.config()))
        try:
            yield layer
        finally:
            with contextlib.suppress(Exception):
                await layer.flush()
            await layer.close()

    @asynccontextmanager
    async def two_layers(
        self, **config: Any
    ) -> AsyncIterator[tuple[BaseChannelLayer, BaseChannelLayer]]:
        """Two instances over one store, or one instance twice when state is not shared."""
        async with self.layer(**config) as one:
            if not self.shares_state_between_instances:
                yield one, one
                return
            async with self.layer(**config) as two:
                yield one, two

    @staticmethod
    async def one_member_each(
        group: str, one: BaseChannelLayer, two: BaseChannelLayer
    ) -> tuple[str, str]:
        """A new channel of each layer, added to ``group`` (no info)."""
        first, second = await one.new_channel(), await two.new_channel()
        await one.group_add(group, first)
        await two.group_add(group, second)
        return first, second

    @staticmethod
    async def group_and_two_channels(layer: BaseChannelLayer, kind: str) -> tuple[str, str, str]:
        """A new group name of pattern ``kind.*`` and two new channels of ``layer``."""
        return _unique(kind), await layer.new_channel(), await layer.new_channel()

    async def within(self, awaitable: Awaitable[T]) -> T:
        return await asyncio.wait_for(awaitable, self.receive_timeout)

    async def receive(self, layer: BaseChannelLayer, channel: str) -> LayerMessage:
        return await self.within(layer.receive(channel))

    async def until_marker(
        self, group: str, *members: tuple[BaseChannelLayer, str]
    ) -> list[LayerMessage]:
        """Send a marker to ``group`` (through the first member's layer) and return what the
        members received before it, in member order; every member must be in the group."""
        await members[0][0].group_send(group, {"type": "marker.after"})
        received: list[LayerMessage] = []
        for layer, channel in members:
            while (message := await self.receive(layer, channel))["type"] != "marker.after":
                received.append(message)
        return received

    async def send_numbered(
        self, layer: BaseChannelLayer, group: str, count: int
    ) -> list[Position]:
        positions = []
        for number in range(count):
            position = await layer.group_send(group, {"type": "chat.message", "n": number})
            assert isinstance(position, Position)
            positions.append(position)
        return positions

    async def poll(self, check: Any, what: str) -> None:
        """Await ``check()`` until it is true, failing after ``expiry_deadline`` seconds."""
        deadline = time.monotonic() + self.expiry_deadline
        while not await check():
            if time.monotonic() > deadline:
                pytest.fail(f"{what} did not happen within {self.expiry_deadline} s")
            await asyncio.sleep(0.05)

    # ------------------------------------------------------------------ 1. positions

    async def test_group_send_returns_positions(self) -> None:
        async with self.layer() as layer:
            group = _unique("hist")
            positions = await self.send_numbered(layer, group, 5)
            assert [p.offset for p in positions] == [1, 2, 3, 4, 5]
            assert len({p.epoch for p in positions}) == 1
            assert isinstance(positions[0].epoch, str) and positions[0].epoch
            assert await layer.group_send(_unique("plain"), {"type": "x"}) is None

    async def test_groups_have_their_own_streams(self) -> None:
        async with self.layer() as layer:
            one, two = _unique("hist"), _unique("hist")
            await self.send_numbered(layer, one, 3)
            (first,) = await self.send_numbered(layer, two, 1)
            assert first.offset == 1
            assert (await layer.group_history(one)).offset == 3

    async def test_members_receive_the_position(self) -> None:
        async with self.two_layers() as (one, two):
            group = _unique("hist")
            first, second = await self.one_member_each(group, one, two)
            position = await one.group_send(group, {"type": "chat.message", "text": "hi"})
            assert isinstance(position, Position)
            expected = {"type": "chat.message", "text": "hi", POSITION_KEY: position.as_list()}
            for layer, channel in ((one, first), (two, second)):
                message = await self.receive(layer, channel)
                assert message == expected
                assert Position.from_message(message) == position

    async def test_plain_groups_deliver_no_position(self) -> None:
        async with self.layer() as layer:
            group, channel = _unique("plain"), await layer.new_channel()
            await layer.group_add(group, channel)
            await layer.group_send(group, {"type": "x"})
            assert await self.receive(layer, channel) == {"type": "x"}

    # ------------------------------------------------------------------ 2. reading

    async def test_history_keeps_the_newest_size_messages_as_sent(self) -> None:
        async with self.two_layers() as (one, two):
            group = _unique("hist")
            count = self.history_size + 4
            positions = await self.send_numbered(one, group, count)
            history = await two.group_history(group)
            assert isinstance(history, GroupHistory)
            assert history.epoch == positions[-1].epoch
            assert history.offset == count
            assert history.recovered is True
            kept = range(count - self.history_size + 1, count + 1)
            assert [offset for offset, _ in history.messages] == list(kept)
            assert [m for _, m in history.messages] == [
                {"type": "chat.message", "n": offset - 1} for offset in kept
            ]

    async def test_history_of_a_new_group(self) -> None:
        async with self.layer() as layer:
            group = _unique("hist")
            empty = await layer.group_history(group)
            assert (empty.offset, empty.messages, empty.recovered) == (0, [], True)
            assert isinstance(empty.epoch, str) and empty.epoch
            assert (await layer.group_history(group, since=Position(empty.epoch, 0))).recovered

    async def test_relayed_position_is_not_kept(self) -> None:
        async with self.layer() as layer:
            group, channel = _unique("hist"), await layer.new_channel()
            await layer.group_add(group, channel)
            relayed = {"type": "relay", POSITION_KEY: ["elsewhere", 7], "data": [1, {"a": 2}]}
            position = await layer.group_send(group, relayed)
            assert isinstance(position, Position)
            received = await self.receive(layer, channel)
            assert received[POSITION_KEY] == position.as_list()
            (kept,) = (await layer.group_history(group)).messages
            assert kept == (1, {"type": "relay", "data": [1, {"a": 2}]})

    async def test_since_returns_what_came_after(self) -> None:
        async with self.two_layers() as (one, two):
            group = _unique("hist")
            positions = await self.send_numbered(one, group, 6)
            after = await two.group_history(group, since=positions[2])
            assert after.recovered is True
            assert [offset for offset, _ in after.messages] == [4, 5, 6]
            newest = await two.group_history(group, since=positions[-1])
            assert (newest.recovered, newest.messages, newest.offset) == (True, [], 6)

    async def test_since_older_than_kept_is_not_recovered(self) -> None:
        async with self.layer() as layer:
            group = _unique("hist")
            positions = await self.send_numbered(layer, group, self.history_size + 3)
            old = await layer.group_history(group, since=positions[0])
            assert old.recovered is False
            assert len(old.messages) == self.history_size
            edge = positions[2]  # the message right before the oldest kept one
            at_edge = await layer.group_history(group, since=edge)
            assert at_edge.recovered is True
            assert at_edge.messages[0][0] == edge.offset + 1

    async def test_foreign_or_future_position_is_not_recovered(self) -> None:
        async with self.layer() as layer:
            group = _unique("hist")
            positions = await self.send_numbered(layer, group, 3)
            foreign = await layer.group_history(
                group, since=Position("not-" + positions[0].epoch, 1)
            )
            assert foreign.recovered is False
            assert [offset for offset, _ in foreign.messages] == [1, 2, 3]
            future = await layer.group_history(group, since=Position(positions[0].epoch, 9))
            assert future.recovered is False

    async def test_limit_keeps_the_oldest_and_pages_forward(self) -> None:
        async with self.layer() as layer:
            group = _unique("hist")
            positions = await self.send_numbered(layer, group, 7)
            epoch = positions[0].epoch
            first = await layer.group_history(group, limit=3)
            assert [offset for offset, _ in first.messages] == [1, 2, 3]
            seen: list[int] = []
            since = Position(epoch, 0)
            while True:
                page = await layer.group_history(group, since=since, limit=2)
                assert page.recovered is True
                if not page.messages:
                    break
                seen.extend(offset for offset, _ in page.messages)
                since = Position(epoch, page.messages[-1][0])
            assert seen == [1, 2, 3, 4, 5, 6, 7]
            none = await layer.group_history(group, limit=0)
            assert (none.messages, none.offset, none.epoch) == ([], 7, epoch)

    async def test_history_expires_after_ttl(self) -> None:
        async with self.layer() as layer:
            group = _unique("short")
            positions = await self.send_numbered(layer, group, 3)

            async def expired() -> bool:
                history = await layer.group_history(group, since=positions[0])
                return not history.messages and history.recovered is False

            await self.poll(expired, "history older than its ttl going")

    # ------------------------------------------------------------------ 3. epochs

    async def test_epoch_changes_when_history_is_lost(self) -> None:
        async with self.layer() as layer:
            group = _unique("hist")
            positions = await self.send_numbered(layer, group, 4)
            await self.lose_history(layer, group)
            after = await layer.group_history(group, since=positions[-1])
            assert after.recovered is False
            assert after.epoch != positions[0].epoch
            (restarted,) = await self.send_numbered(layer, group, 1)
            assert restarted == Position(after.epoch, 1)

    async def test_flush_drops_history_and_presence(self) -> None:
        async with self.layer() as layer:
            history_group, presence_group = _unique("hist"), _unique("quiet")
            positions = await self.send_numbered(layer, history_group, 2)
            await layer.group_add(presence_group, await layer.new_channel(), {"n": 1})
            await layer.flush()
            history = await layer.group_history(history_group, since=positions[-1])
            assert (history.recovered, history.messages, history.offset) == (False, [], 0)
            assert await layer.group_presence(presence_group) == {}
            assert await layer.group_presence_count(presence_group) == 0

    # ------------------------------------------------------------------ 4. live traffic

    async def test_joining_live_traffic_has_no_gap_and_no_duplicate(self) -> None:
        total = 400
        async with self.two_layers(**self.config(capacity=2 * total)) as (sender, member):
            group, channel = _unique("big"), await member.new_channel()
            before = await self.send_numbered(sender, group, 20)
            started = asyncio.Event()

            async def keep_sending() -> None:
                for number in range(20, total):
                    await sender.group_send(group, {"type": "chat.message", "n": number})
                    if number == 40:
                        started.set()
                    await asyncio.sleep(0)

            sending = asyncio.create_task(keep_sending())
            try:
                await self.within(started.wait())
                emitted = await self.within(
                    join_with_history(
                        member, group, channel, before[9], self.receive_timeout, total
                    )
                )
            finally:
                await sending
            assert emitted == list(range(11, total + 1))

    # ------------------------------------------------------------------ 5. presence

    async def test_presence_records_and_updates_info(self) -> None:
        async with self.two_layers() as (one, two):
            group = _unique("quiet")
            first, second = await one.new_channel(), await two.new_channel()
            await one.group_add(group, first, {"user": "ann", "tags": ["a"]})
            await two.group_add(group, second)
            assert await one.group_presence(group) == {
                first: {"user": "ann", "tags": ["a"]},
                second: {},
            }
            await one.group_add(group, first, {"user": "ann", "status": "away"})
            assert (await two.group_presence(group))[first] == {"user": "ann", "status": "away"}
            assert await two.group_presence_count(group) == 2
            answer = await one.group_presence(group)
            answer[first]["user"] = "changed"
            assert (await one.group_presence(group))[first]["user"] == "ann"
            await two.group_discard(group, second)
            assert await one.group_presence(group) == {first: {"user": "ann", "status": "away"}}
            assert await one.group_presence_count(group) == 1

    async def test_presence_of_an_empty_group(self) -> None:
        async with self.layer() as layer:
            group = _unique("quiet")
            assert await layer.group_presence(group) == {}
            assert await layer.group_presence_count(group) == 0

    async def test_presence_count_of_a_thousand_members(self) -> None:
        async with self.layer() as layer:
            group = _unique("quiet")
            channels = [await layer.new_channel() for _ in range(1000)]
            await asyncio.gather(
                *(layer.group_add(group, c, {"i": i}) for i, c in enumerate(channels))
            )
            assert await layer.group_presence_count(group) == 1000
            members = await layer.group_presence(group)
            assert members[channels[123]] == {"i": 123}
            assert len(members) == 1000

    async def test_join_and_leave_events(self) -> None:
        async with self.two_layers() as (one, two):
            group = _unique("pres")
            first, second = await one.new_channel(), await two.new_channel()
            await one.group_add(group, first, {"user": "ann"})
            join_first = presence("join", group, first, {"user": "ann"})
            assert await self.receive(one, first) == join_first
            await two.group_add(group, second, {"user": "bob"})
            join_second = presence("join", group, second, {"user": "bob"})
            assert await self.receive(one, first) == join_second
            assert await self.receive(two, second) == join_second
            await two.group_add(group, second, {"user": "bob", "status": "away"})  # no new join
            assert await self.until_marker(group, (one, first), (two, second)) == []
            await one.group_discard(group, second)
            leave = presence("leave", group, second, {"user": "bob", "status": "away"})
            assert await self.receive(one, first) == leave
            await one.group_discard(group, second)  # not a member any more: nothing
            assert await self.until_marker(group, (one, first)) == []

    async def test_events_take_no_offset_and_carry_no_position(self) -> None:
        async with self.layer() as layer:
            group, first, second = await self.group_and_two_channels(layer, "both")
            await layer.group_add(group, first)
            assert POSITION_KEY not in await self.receive(layer, first)
            (one,) = await self.send_numbered(layer, group, 1)
            await layer.group_add(group, second)
            (two,) = await self.send_numbered(layer, group, 1)
            assert (one.offset, two.offset) == (1, 2)
            received = [await self.receive(layer, first) for _ in range(3)]
            assert [m["type"] for m in received] == [
                "chat.message",
                "presence.join",
                "chat.message",
            ]
            assert POSITION_KEY not in received[1]
            assert [offset for offset, _ in (await layer.group_history(group)).messages] == [1, 2]

    async def test_no_events_without_events(self) -> None:
        async with self.layer() as layer:
            group, first, second = await self.group_and_two_channels(layer, "quiet")
            await layer.group_add(group, first, {"n": 1})
            await layer.group_add(group, second, {"n": 2})
            await layer.group_discard(group, second)
            assert await self.until_marker(group, (layer, first)) == []

    async def test_features_need_their_configuration(self) -> None:
        async with self.layer() as layer:
            group = _unique("plain")
            for call in (
                layer.group_history(group),
                layer.group_presence(group),
                layer.group_presence_count(group),
            ):
                with pytest.raises(ValueError, match=group):
                    await call
            with pytest.raises(ValueError, match="hist"):
                await layer.group_presence(_unique("hist"))

    async def test_bad_queries_are_refused(self) -> None:
        async with self.layer() as layer:
            group = _unique("hist")
            with pytest.raises(TypeError, match="since"):
                await layer.group_history(group, since=("epoch", 1))  # type: ignore[arg-type]
            for limit in (-1, 1.5, "3"):
                with pytest.raises(ValueError, match="limit"):
                    await layer.group_history(group, limit=limit)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="info"):
                await layer.group_add(_unique("quiet"), await layer.new_channel(), ["x"])  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("option", "value", "named"),
        [
            ("history", ["chat.*"], "history"),
            ("history", {"chat.*": {"size": 10}}, "'ttl'"),
            ("history", {"chat.*": {"size": 0, "ttl": 5}}, "'size'"),
            ("history", {"chat.*": {"size": 10, "ttl": "5"}}, "'ttl'"),
            ("history", {"chat.*": {"size": 10, "ttl": 5, "sise": 1}}, "sise"),
            ("presence", {"chat.*": {"events": True}}, "'ttl'"),
            ("presence", {"chat.*": {"ttl": -1}}, "'ttl'"),
            ("presence", {"chat.*": {"ttl": 5, "events": "yes"}}, "'events'"),
            ("presence", {"chat.*": 30}, "presence"),
        ],
    )
    async def test_bad_options_raise_config_error(
        self, option: str, value: Any, named: str
    ) -> None:
        with pytest.raises(ConfigError, match=named):
            layer = await self.make_layer(**self.config(**{option: value}))
            await layer.close()

    async def test_first_matching_pattern_wins(self) -> None:
        config = self.config(
            history={"room.vip.*": {"size": 2, "ttl": 60}, "room.*": {"size": 5, "ttl": 60}}
        )
        async with self.layer(**config) as layer:
            vip, room = _unique("room.vip"), _unique("room")
            await self.send_numbered(layer, vip, 6)
            await self.send_numbered(layer, room, 6)
            assert len((await layer.group_history(vip)).messages) == 2
            assert len((await layer.group_history(room)).messages) == 5

    # ------------------------------------------------------------------ 6. liveness

    async def test_members_without_heartbeat_disappear_with_one_leave(self) -> None:
        async with self.layer() as watching, self.layer() as stopping:
            if not self.shares_state_between_instances:
                stopping = watching
            group = _unique("live")
            watcher, gone = await watching.new_channel(), await stopping.new_channel()
            await watching.group_add(group, watcher, {"role": "watcher"})
            await stopping.group_add(group, gone, {"role": "gone"})
            await self.stop_heartbeat(stopping)
            keeping = asyncio.create_task(self._keep_adding(watching, group, watcher))
            try:
                await self.poll(
                    lambda: self._absent(watching, group, gone), "a member without heartbeat going"
                )
                assert watcher in await watching.group_presence(group)
                leaves = await self._leaves_of(watching, group, watcher, gone)
            finally:
                keeping.cancel()
            leave = {
                "type": "presence.leave",
                "group": group,
                "channel": gone,
                "info": {"role": "gone"},
            }
            assert leaves == [leave]

    async def _keep_adding(self, layer: BaseChannelLayer, group: str, channel: str) -> None:
        """Renew ``channel`` often when it shares the layer whose heartbeat was stopped."""
        while not self.shares_state_between_instances:
            await layer.group_add(group, channel, {"role": "watcher"})
            await asyncio.sleep(self.presence_ttl / 5)

    @staticmethod
    async def _absent(layer: BaseChannelLayer, group: str, channel: str) -> bool:
        return channel not in await layer.group_presence(group)

    async def _leaves_of(
        self, layer: BaseChannelLayer, group: str, watcher: str, gone: str
    ) -> list[LayerMessage]:
        """The leave events of ``gone`` the watcher got, waiting for the first one."""
        leaves: list[LayerMessage] = []
        while not leaves:
            message = await self.within(layer.receive(watcher))
            if message["type"] == "presence.leave" and message["channel"] == gone:
                leaves.append(message)
        for message in await self.until_marker(group, (layer, watcher)):
            if message["type"] == "presence.leave" and message["channel"] == gone:
                leaves.append(message)
        return leaves

    async def test_heartbeat_keeps_members(self) -> None:
        async with self.two_layers() as (one, two):
            group = _unique("steady")
            first, second = await self.one_member_each(group, one, two)
            await asyncio.sleep(self.presence_ttl * 3)  # 1.5 ttl: without heartbeats, gone
            assert set(await one.group_presence(group)) == {first, second}
            assert await two.group_presence_count(group) == 2
