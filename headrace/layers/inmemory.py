"""An in-process channel layer: exact contract semantics with costs proportional to the work.

Theory of operation
-------------------
Each channel is a :class:`_Channel`: a deque of pending entries plus a deque of receivers
waiting for one. ``send`` appends an entry and wakes the first waiting receiver; the woken
receiver takes the head entry itself (if somebody else took it first, it waits again), so a
cancelled receiver never swallows a message. A channel object with no entries and no waiters is
deleted, so memory follows live traffic, not every name ever used.

Expiry without scanning. Every message gets the same lifetime (``expiry``), so messages expire
in the order they were sent, across all channels. The layer keeps one global deque of
``(deadline, channel name, message)`` entries in send order; the same tuple object sits in
its channel's deque. Expiring pops from the global deque's left while the deadline has passed;
an entry is still pending exactly when it is the head of its channel's deque (channels are FIFO
and older entries leave first), so removal is O(1). Total work is O(messages that expired), not
O(channels + members) on every call as in Channels 4.3 (where a 5,000-member group_send takes
seconds). Expiry runs on ``receive`` and ``group_send``, and on ``send`` only when the target
looks full, so expired messages never cause ChannelFull. As in Channels, a channel that loses a
message to expiry is removed from its groups, found through a reverse index, not by scanning.
The same pass drops the already received entries at the left of the global deque (up to the
oldest pending one), so received messages are released at once in the usual case, not held
until their deadline.

Group memberships work the same way: one global deque of ``(deadline, group, channel, token)``
in join order; a renewed ``group_add`` gets a new token, so stale deque records are ignored.

Several threads, several loops. Senders on another thread (a plain thread calling
``async_to_sync(layer.group_send)`` runs its own event loop; ``runserver`` runs the interface
server's loop and the Channels-1 view's loop over one instance) wake receivers through
``call_soon_threadsafe``. Every method does its bookkeeping under one ``threading.Lock``, never
held across an ``await``: without it a receiver on one thread could drop a channel object as
idle at the moment a sender on another appended to it, losing the message, or a sender could
append between a receiver's "empty" check and its registering as a waiter, leaving it asleep.

``group_send`` copies the message once per member (cheaply: a shallow copy when every value is
immutable, ``copy.deepcopy`` otherwise) and delivers synchronously; full members are skipped.

History and presence (:mod:`headrace.layers.history`). A group with history has a
:class:`~headrace.layers.history.HistoryLog` in ``self.history``; ``group_send`` appends a copy
of the message (O(1)) and stamps each member's copy with ``[epoch, offset]``. A group with
presence has ``self.presence[group] = {channel: (info, added at)}``, kept beside the membership:
whatever removes a member (group_discard, group_expiry, a message lost to expiry) removes its
presence and sends the leave event. Every member here belongs to this process, which refreshes
them as long as it runs, so presence entries do not lapse while the layer lives; for tests,
:meth:`InMemoryChannelLayer.stop_presence_heartbeat` makes the layer behave as a process whose
heartbeat stopped: from then on an entry lapses ``ttl`` after it was last added, noticed (and its
leave sent) by the next layer call.

Channels' ``channel_capacity`` crash is fixed in :class:`~headrace.layers.base.BaseChannelLayer`,
which compiles the patterns; capacities are looked up once per channel object.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from headrace.exceptions import ChannelFull
from headrace.layers.base import (
    BaseChannelLayer,
    CapacityPattern,
    LayerMessage,
    LayerStatistics,
    Statistics,
    statistics_of,
)
from headrace.layers.history import (
    POSITION_KEY,
    PRESENCE_JOIN,
    PRESENCE_LEAVE,
    GroupHistory,
    HistoryStore,
    Position,
    check_history_query,
    check_info,
    pop_member,
    presence_event,
)

__all__ = ["InMemoryChannelLayer"]

_IMMUTABLE_SCALARS = (str, bytes, int, float, bool, type(None))


def copy_message(message: LayerMessage) -> LayerMessage:
    """A copy of ``message`` that shares nothing mutable with it."""
    return _copier(message)(message)


_Entry = tuple[float, str, LayerMessage]
"""(deadline, channel name, message): one object in both the channel's and the expiry deque."""


def _copier(message: LayerMessage) -> Callable[[LayerMessage], LayerMessage]:
    """The cheapest copy function that isolates receivers of ``message`` from each other."""
    for value in message.values():
        if not isinstance(value, _IMMUTABLE_SCALARS):
            return copy.deepcopy
    return dict


def _set_if_pending(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _wake(waiter: asyncio.Future[None]) -> None:
    """Wake a receiver, also when the sender runs on another thread's event loop (plain
    threads calling ``async_to_sync(layer.send)`` get a loop of their own)."""
    loop = waiter.get_loop()
    try:
        same_loop = asyncio.get_running_loop() is loop
    except RuntimeError:
        same_loop = False
    if same_loop:
        waiter.set_result(None)
    else:
        loop.call_soon_threadsafe(_set_if_pending, waiter)


class _Channel:
    __slots__ = ("capacity", "entries", "waiters")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.entries: deque[_Entry] = deque()
        self.waiters: deque[asyncio.Future[None]] | None = None  # created on first wait

    def add_waiter(self, waiter: asyncio.Future[None]) -> None:
        if self.waiters is None:
            self.waiters = deque()
        self.waiters.append(waiter)

    def wake_one(self) -> None:
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                _wake(waiter)
                return

    @property
    def idle(self) -> bool:
        return not self.entries and not self.waiters


class InMemoryChannelLayer(BaseChannelLayer):
    """Channel layer living in this process's memory; for tests and single-process apps."""

    extensions: ClassVar[list[str]] = ["groups", "flush", "statistics", "history", "presence"]

    def __init__(
        self,
        expiry: float = 60,
        group_expiry: float = 86400,
        capacity: int = 100,
        channel_capacity: Mapping[CapacityPattern, int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            expiry=expiry,
            capacity=capacity,
            channel_capacity=channel_capacity,
            group_expiry=group_expiry,
            **kwargs,
        )
        self._lock = threading.Lock()
        self.statistics = LayerStatistics()
        self._heartbeat_stopped_at: float | None = None
        self._reset_state()

    def _reset_state(self) -> None:
        self.channels: dict[str, _Channel] = {}
        self.groups: dict[str, dict[str, int]] = {}
        self._memberships: dict[str, set[str]] = {}
        self._message_deadlines: deque[_Entry] = deque()
        self._group_deadlines: deque[tuple[float, str, str, int]] = deque()
        self._join_counter = 0
        self.history: HistoryStore[LayerMessage] = HistoryStore()
        self.presence: dict[str, dict[str, tuple[LayerMessage, float]]] = {}

    # ------------------------------------------------------------------ channels

    async def send(self, channel: str, message: LayerMessage) -> None:
        """Append a copy of ``message`` to ``channel``; ChannelFull when it is at capacity
        (counting unexpired messages only)."""
        self.require_valid_message(message)
        self.require_valid_channel_name(channel)
        copied = copy_message(message)
        with self._lock:
            self._deliver(channel, copied, time.monotonic())

    def _deliver(self, name: str, message: LayerMessage, now: float) -> None:
        target = self.channels.get(name)
        if target is None:
            target = self.channels[name] = self._new_channel_queue(name)
        if len(target.entries) >= target.capacity:
            self._expire(now)  # expired messages do not count against capacity
            target = self.channels.setdefault(name, target)
            if len(target.entries) >= target.capacity:
                self.statistics.refused(name)
                raise ChannelFull(name)
        self.statistics.accepted(name)
        entry = (now + self.expiry, name, message)
        target.entries.append(entry)
        self._message_deadlines.append(entry)
        if target.waiters:
            target.wake_one()

    def _new_channel_queue(self, name: str) -> _Channel:
        if self.channel_capacity:
            return _Channel(self.get_capacity(name))
        return _Channel(self.capacity)

    async def receive(self, channel: str) -> LayerMessage:
        """Wait for the oldest message on ``channel``; concurrent receivers each get their own."""
        self.require_valid_channel_name(channel)
        lock = self._lock
        with lock:
            self._expire(time.monotonic())
            target = self._queue_of(channel)
            if target.entries:
                return self._take(channel, target)
            waiter = self._wait_on(target)
        while True:
            try:
                await waiter
            except BaseException:
                with lock:
                    self._abandon_wait(channel, target, waiter)
                raise
            with lock:
                target = self._queue_of(channel)  # flush() may have replaced it meanwhile
                if target.entries:
                    return self._take(channel, target)
                waiter = self._wait_on(target)

    def _queue_of(self, name: str) -> _Channel:
        target = self.channels.get(name)
        if target is None:
            target = self.channels[name] = self._new_channel_queue(name)
        return target

    @staticmethod
    def _wait_on(target: _Channel) -> asyncio.Future[None]:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        target.add_waiter(waiter)
        return waiter

    def _take(self, name: str, target: _Channel) -> LayerMessage:
        entry = target.entries.popleft()
        if target.entries:
            target.wake_one()
        self._drop_if_idle(name, target)
        return entry[2]

    def _abandon_wait(self, name: str, target: _Channel, waiter: asyncio.Future[None]) -> None:
        """A waiting receiver left. If it had been woken (its wake may still be on its way
        from another thread), pass the wake on, so no message waits with receivers asleep."""
        if not waiter.done():
            waiter.cancel()
        if target.waiters is not None:
            with contextlib.suppress(ValueError):
                target.waiters.remove(waiter)
        if target.entries:
            target.wake_one()
        self._drop_if_idle(name, target)

    def _drop_if_idle(self, name: str, target: _Channel) -> None:
        if target.idle and self.channels.get(name) is target:
            del self.channels[name]

    async def new_channel(self, prefix: str = "specific") -> str:
        """A new unique process-local channel name, ``<prefix>.inmemory!<random>``."""
        return f"{prefix}.inmemory!{self.random_suffix()}"

    # ------------------------------------------------------------------ expiry

    def _expire(self, now: float) -> None:
        deadlines = self._message_deadlines
        while deadlines and deadlines[0][0] <= now:
            entry = deadlines.popleft()
            name = entry[1]
            target = self.channels.get(name)
            if target is not None and target.entries and target.entries[0] is entry:
                target.entries.popleft()
                self._drop_if_idle(name, target)
                self._leave_all_groups(name)
        # Received entries in front of the oldest pending one go too, so a received message
        # is not held (and scanned by the garbage collector) until its deadline.
        self._oldest_deadline()
        self._expire_memberships(now)

    def _expire_memberships(self, now: float) -> None:
        deadlines = self._group_deadlines
        while deadlines and deadlines[0][0] <= now:
            _, group, channel, token = deadlines.popleft()
            members = self.groups.get(group)
            if members is not None and members.get(channel) == token:
                self._remove_member(group, channel)
        if self._heartbeat_stopped_at is not None:
            self._expire_presence(self._heartbeat_stopped_at, now)

    def _expire_presence(self, stopped_at: float, now: float) -> None:
        """Without a heartbeat, a presence entry lapses ttl after it was last added."""
        for group, roster in list(self.presence.items()):
            settings = self.group_features.require_presence(group)
            for channel, (_, added_at) in list(roster.items()):
                if max(added_at, stopped_at) + settings.ttl <= now:
                    self._remove_member(group, channel)

    def stop_presence_heartbeat(self) -> None:
        """Behave as a layer process whose heartbeat stopped (for tests of presence ttl)."""
        with self._lock:
            self._heartbeat_stopped_at = time.monotonic()

    def _leave_all_groups(self, channel: str) -> None:
        for group in list(self._memberships.get(channel, ())):
            self._remove_member(group, channel)

    # ------------------------------------------------------------------ groups

    async def group_add(self, group: str, channel: str, info: dict[str, Any] | None = None) -> None:
        """Add ``channel`` to ``group``, or renew its membership for another group_expiry;
        in a group with presence, record ``info`` (sending the join event on a first add)."""
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        recorded = copy_message(check_info(info))
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            self._join_counter += 1
            token = self._join_counter
            self.groups.setdefault(group, {})[channel] = token
            self._memberships.setdefault(channel, set()).add(group)
            self._group_deadlines.append((now + self.group_expiry, group, channel, token))
            if self.group_features.presence:
                self._record_presence(group, channel, recorded, now)

    def _record_presence(self, group: str, channel: str, info: LayerMessage, now: float) -> None:
        settings = self.group_features.presence_of(group)
        if settings is None:
            return
        roster = self.presence.setdefault(group, {})
        joined = channel not in roster
        roster[channel] = (info, now)
        if joined and settings.events:
            self._fan_out(
                list(self.groups[group]), presence_event(PRESENCE_JOIN, group, channel, info), now
            )

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group``; nothing happens if it was not a member."""
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        with self._lock:
            self._remove_member(group, channel)

    def _remove_member(self, group: str, channel: str) -> None:
        members = self.groups.get(group)
        if members is not None and members.pop(channel, None) is not None and not members:
            del self.groups[group]
        joined = self._memberships.get(channel)
        if joined is not None:
            joined.discard(group)
            if not joined:
                del self._memberships[channel]
        if self.presence:
            self._forget_presence(group, channel)

    def _forget_presence(self, group: str, channel: str) -> None:
        entry = pop_member(self.presence, group, channel)
        if entry is None:
            return
        settings = self.group_features.presence_of(group)
        remaining = self.groups.get(group)
        if settings is not None and settings.events and remaining:
            leave = presence_event(PRESENCE_LEAVE, group, channel, entry[0])
            self._fan_out(list(remaining), leave, time.monotonic())

    async def group_send(self, group: str, message: LayerMessage) -> Position | None:
        """Deliver a copy of ``message`` to every member; full members miss it silently.
        In a group with history, keep it and return its Position."""
        self.require_valid_message(message)
        self.require_valid_group_name(group)
        history = self.group_features.history_of(group)
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            if history is None:
                members = self.groups.get(group)
                if members:
                    self._fan_out(list(members), message, now)
                return None
            copier = _copier(message)
            kept = copier(message)  # history's own copy, without a relayed position
            if POSITION_KEY in kept:
                del kept[POSITION_KEY]
            position = self.history.log_of(group, history, now).append(kept, now)
            members = self.groups.get(group)
            if members:
                self._fan_out(list(members), message, now, copier, position)
            return position

    async def group_history(
        self, group: str, since: Position | None = None, limit: int | None = None
    ) -> GroupHistory:
        """The kept messages of ``group`` after ``since`` (see :class:`GroupHistory`)."""
        self.require_valid_group_name(group)
        settings = self.group_features.require_history(group)
        check_history_query(since, limit)
        with self._lock:
            epoch, newest, kept, recovered = self.history.read(
                group, settings, since, limit, time.monotonic()
            )
        messages = [(offset, copy_message(message)) for offset, message in kept]
        return GroupHistory(epoch, newest, messages, recovered)

    async def group_presence(self, group: str) -> dict[str, dict[str, Any]]:
        """``{channel: info}`` of the members of ``group`` (a group with presence)."""
        self._require_presence(group)
        with self._lock:
            self._expire(time.monotonic())
            roster = self.presence.get(group, {})
            return {channel: copy_message(info) for channel, (info, _) in roster.items()}

    async def group_presence_count(self, group: str) -> int:
        """How many members ``group`` (a group with presence) has: O(1)."""
        self._require_presence(group)
        with self._lock:
            self._expire(time.monotonic())
            return len(self.presence.get(group, ()))

    def _require_presence(self, group: str) -> None:
        self.require_valid_group_name(group)
        self.group_features.require_presence(group)

    def _fan_out(
        self,
        names: list[str],
        message: LayerMessage,
        now: float,
        copier: Callable[[LayerMessage], LayerMessage] | None = None,
        position: Position | None = None,
    ) -> None:
        """group_send's hot loop: _deliver inlined, one copy function and deadline for all;
        with ``position``, each copy gets its own ``[epoch, offset]`` list."""
        if copier is None:
            copier = _copier(message)
        epoch, offset = (None, 0) if position is None else (position.epoch, position.offset)
        deadline = now + self.expiry
        channels = self.channels
        append_deadline = self._message_deadlines.append
        accepted, refused = self.statistics.accepted, self.statistics.refused
        for name in names:
            target = channels.get(name)
            if target is None:
                target = channels[name] = self._new_channel_queue(name)
            if len(target.entries) >= target.capacity:
                refused(name)
                continue
            accepted(name)
            copied = copier(message)
            if epoch is not None:
                copied[POSITION_KEY] = [epoch, offset]
            entry = (deadline, name, copied)
            target.entries.append(entry)
            append_deadline(entry)
            if target.waiters:
                target.wake_one()

    # ------------------------------------------------------------------ lifecycle

    async def flush(self) -> None:
        """Drop every pending message and every group; waiting receivers keep waiting."""
        with self._lock:
            waiting = {name: target for name, target in self.channels.items() if target.waiters}
            self._reset_state()
            for name, target in waiting.items():
                target.entries.clear()
                self.channels[name] = target

    # ------------------------------------------------------------------ statistics

    async def global_statistics(self) -> Statistics:
        """Counters since the layer was made; pending and the oldest message's age are read
        from the live channels when asked (nothing is added to send or receive for them)."""
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            pending = sum(len(target.entries) for target in self.channels.values())
            return statistics_of(
                self.statistics.global_counts(), pending, self._age(self._oldest_deadline(), now)
            )

    async def channel_statistics(self, channel: str) -> Statistics:
        self.require_valid_channel_name(channel)
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            target = self.channels.get(channel)
            entries = target.entries if target is not None else deque()
            oldest = entries[0][0] if entries else None
            return statistics_of(
                self.statistics.channel_counts(channel), len(entries), self._age(oldest, now)
            )

    def _oldest_deadline(self) -> float | None:
        """The deadline of the oldest pending message. The deadline deque is in send order, so
        its first entry that is still pending is the head of its channel; taken entries in
        front of it are dropped on the way (amortised O(1))."""
        deadlines, channels = self._message_deadlines, self.channels
        while deadlines:
            entry = deadlines[0]
            target = channels.get(entry[1])
            if target is not None and target.entries and target.entries[0] is entry:
                return entry[0]
            deadlines.popleft()
        return None

    def _age(self, deadline: float | None, now: float) -> float:
        return 0.0 if deadline is None else now - (deadline - self.expiry)

    async def close(self) -> None:
        """Nothing to release; present for the contract."""
