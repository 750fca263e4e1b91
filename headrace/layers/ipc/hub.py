"""The IPC hub: every queue and group of the IPC layer, in one process, behind a Unix socket.

Theory of operation
-------------------
Processes on one host share channel-layer state through a *hub*: an asyncio Unix-socket server
holding per-channel queues, parked receivers and group memberships in plain dicts. Clients
(:mod:`headrace.layers.ipc.layer`) send requests; a receive with nothing queued parks at the hub
and is answered by the next send, so delivery costs one socket write and nobody polls.

Who runs the hub. Any process using the layer may host it: a client that cannot connect takes an
exclusive ``flock`` on ``<path>.lock`` and, if it gets the lock, starts the hub on a daemon thread
with its own event loop (:class:`HubHost`). The kernel drops the lock when the process dies, so
there is no stuck lock: survivors see their connection close, one of them wins the lock and
starts a new hub, and every client replays the group memberships it made (each client remembers
them with their expiry), so survivors keep their groups. Messages queued in a dead hub are lost
(the layer promises at most once delivery). ``python -m headrace.layers.ipc`` runs a hub on its
own, e.g. under systemd next to separately started web and worker processes.

State rules. A queue holds ``(expires_at, payload)`` pairs; wall-clock expiry works across
processes. Expired entries are dropped when a queue is touched and by a once-a-second sweep driven
by heaps, so the sweep costs O(what expired), not O(everything).

Group fan-out. ``group_send`` walks the members once: a member with a parked receive is batched
per client connection, a member with none gets a queued copy (the same ``bytes`` object, so
copies cost a reference, not memory) unless its queue is full, in which case it is skipped.
Deliveries are coalesced per connection and loop iteration: every delivery of the same payload
object (the parked receives a ``group_send`` reaches, and receives that pick up queued copies of
it) joins ONE ``DELIVER_MANY`` frame carrying the payload once and the request ids; the frame is
composed at flush time in the place of the first delivery, so nothing moves later in the stream.
The client resolves the ids locally. A thousand members in one process cost one small marshal
and one write instead of a thousand. Only clients that announce protocol
version ``PROTOCOL_BATCHED`` in HELLO get such frames; older clients (a rolling upgrade) get one
reply per receive, as before. Capacity rules come from each
client's HELLO (its ``capacity``/``channel_capacity``), so ``group_send`` applies the sender's
rules to every member, and a full member is skipped. A client that disconnects loses its parked
receives; its group memberships stay until they expire, like with Redis.

Receiving from any of several channels (protocol 5). RECEIVE_ANY takes the first queued message
of its channels, looked at in the order the client gave (the client shuffles them per call, so a
busy channel cannot starve a quiet one); with nothing queued it parks in the line of EVERY one of
its channels under its one request id (``HubConnection.any_waits`` remembers which). The first
message of any of them takes it out of all those lines at once and answers it, with the channel,
in a frame of its own; CANCEL withdraws it from every line. So exactly one message answers it,
and a cancelled one either got nothing or has its message pushed back by the client.

Watched channels (protocol 3). A process-local (``!``) channel has one receiving process, so
its client WATCHes it once instead of parking a receive per message: the hub records
``channel -> (connection, watch id)``, hands over whatever was queued, and from then on PUSHes
each message to that connection, batched like deliveries (one frame per payload, listing watch
ids). A group message to a thousand watched members of one process is then one frame with a
thousand small ints, and the members re-arming cost the hub nothing. Messages from ``send`` are
pushed *counted*: the connection holds them until the client reports them CONSUMED (or hands
them back with PUSH_FRONT), and a ``send`` finding ``capacity`` counted messages held plus queued
gets FULL, as for any channel. Group copies are pushed uncounted; the client bounds them by the
member's capacity (a full member misses the copy, as here). Watches end with UNWATCH (a
receiver left), DETACH (the client's loop is closing: it then hands back what it buffered), a
WATCH of the same channel from another connection (the old one is told DISPLACED) or the
connection closing; messages of a channel nobody watches queue here as usual.

History and presence (protocol 4). Each client's HELLO carries its ``history`` / ``presence``
options, parsed into its :class:`ClientProfile`; like capacity rules, the sender's options
decide. A group with history keeps the sent payloads in a :class:`HistoryLog` (bytes, as sent)
and every member's copy is stamped once per send with ``[epoch, offset]`` (see
:func:`~headrace.layers.ipc.wire.stamp_payload`), so a fan-out still shares one payload.
Presence members are owned by the client (layer instance) that added them: an :class:`Owner`
holds the time of the client's last sign of life (a GROUP_ADD or a BEAT, which the client
sends every ttl/3 while it has members: one frame per client, not per member) and its members
with their ttl. A presence sweep every :data:`PRESENCE_SWEEP` seconds removes the members whose
owner has been silent for their ttl, as a group_discard would: from the group and the roster,
sending the leave event once (this hub is the only one that notices). It looks only at owners
silent for at least their shortest ttl. A dead hub loses history (the next one starts new
epochs) and presence; clients replay their members, with their info, without join events.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fcntl
import heapq
import itertools
import os
import re
import socket
import threading
import time
from collections import deque
from typing import Any

from headrace.layers.base import LayerStatistics
from headrace.layers.history import (
    PRESENCE_JOIN,
    PRESENCE_LEAVE,
    GroupFeatures,
    HistorySettings,
    HistoryStore,
    Position,
    PresenceSettings,
    pop_member,
    presence_event,
)
from headrace.layers.ipc.wire import (
    PROTOCOL_BATCHED,
    PROTOCOL_VERSION,
    FramedProtocol,
    Op,
    Status,
    encode_frame,
    encode_message,
    stamp_payload,
)

__all__ = ["HubHost", "HubState", "new_event_loop", "serve_hub"]

SWEEP_INTERVAL = 1.0
PRESENCE_SWEEP = 0.1  # seconds between looks for presence members whose owner went silent

Entry = tuple[float, bytes]


class CapacityRules:
    """The capacity rules one client announced in HELLO."""

    __slots__ = ("default", "patterns")

    def __init__(self, default: int, patterns: list[tuple[str, int]]) -> None:
        self.default = default
        self.patterns = [(re.compile(source), capacity) for source, capacity in patterns]

    def capacity(self, channel: str) -> int:
        for pattern, capacity in self.patterns:
            if pattern.match(channel):
                return capacity
        return self.default


DEFAULT_RULES = CapacityRules(100, [])


class ClientProfile:
    """What one client announced in HELLO: capacity rules, id, history/presence options and
    message expiry (for the presence events sent on its behalf)."""

    __slots__ = ("client_id", "expiry", "features", "rules")

    def __init__(
        self,
        rules: CapacityRules,
        client_id: str = "",
        features: GroupFeatures | None = None,
        expiry: float = 60.0,
    ) -> None:
        self.rules = rules
        self.client_id = client_id
        self.features = features if features is not None else GroupFeatures()
        self.expiry = expiry


DEFAULT_PROFILE = ClientProfile(DEFAULT_RULES)


class PresenceMember:
    __slots__ = ("info", "profile", "settings")

    def __init__(self, info: Any, profile: ClientProfile, settings: PresenceSettings) -> None:
        self.info = info
        self.profile = profile
        self.settings = settings


class Owner:
    """A client's presence members, ``(group, channel) -> ttl``, and its last sign of life."""

    __slots__ = ("last_seen", "members", "shortest_ttl")

    def __init__(self, now: float) -> None:
        self.last_seen = now
        self.members: dict[tuple[str, str], float] = {}
        self.shortest_ttl = float("inf")


class HubState:
    """Queues, parked receivers and groups; every method is synchronous and O(touched)."""

    def __init__(self) -> None:
        self.queues: dict[str, deque[Entry]] = {}
        self.waiters: dict[str, deque[tuple[HubConnection, int]]] = {}
        self.groups: dict[str, dict[str, float]] = {}
        self.watchers: dict[str, tuple[HubConnection, int]] = {}
        self._queue_heap: list[tuple[float, str]] = []
        self._group_heap: list[tuple[float, str, str]] = []
        self.statistics = LayerStatistics()
        self.history: HistoryStore[bytes] = HistoryStore()
        self.presence: dict[str, dict[str, PresenceMember]] = {}
        self.owners: dict[str, Owner] = {}

    # ---------------------------------------------------------------- channels

    def send(self, channel: str, payload: bytes, expires_at: float, capacity: int) -> bool:
        """Deliver or enqueue; False when the channel is full."""
        sent = self._send(channel, payload, expires_at, capacity)
        if sent:
            self.statistics.accepted(channel)
        else:
            self.statistics.refused(channel)
        return sent

    def _send(self, channel: str, payload: bytes, expires_at: float, capacity: int) -> bool:
        watcher = self.watchers.get(channel)
        if watcher is not None:
            connection, watch_id = watcher
            queue = self.queues.get(channel)
            if connection.held(channel) + (len(queue) if queue else 0) >= capacity:
                return False
            if connection.push(channel, watch_id, payload, expires_at, counted=True):
                return True
        if self._hand_to_waiter(channel, payload, expires_at):
            return True
        return self._enqueue(channel, payload, expires_at, capacity, time.time())

    def _enqueue(
        self, channel: str, payload: bytes, expires_at: float, capacity: int, now: float
    ) -> bool:
        """Queue a message nobody is waiting for; False when the channel is full."""
        queue = self.queues.get(channel)
        if queue is None:
            queue = self.queues[channel] = deque()
        else:
            self._drop_expired(queue, now)
        if len(queue) >= capacity:
            return False
        if not queue:
            heapq.heappush(self._queue_heap, (expires_at, channel))
        queue.append((expires_at, payload))
        return True

    def push_front(self, channel: str, payload: bytes, expires_at: float) -> None:
        """Put a message back at the head of ``channel`` (or hand it to whoever takes it now)."""
        watcher = self.watchers.get(channel)
        if watcher is not None and watcher[0].push(
            channel, watcher[1], payload, expires_at, counted=True
        ):
            return
        if self._hand_to_waiter(channel, payload, expires_at):
            return
        queue = self.queues.setdefault(channel, deque())
        queue.appendleft((expires_at, payload))
        heapq.heappush(self._queue_heap, (expires_at, channel))

    def receive(self, channel: str, connection: HubConnection, request_id: int) -> None:
        if not connection.reachable:
            return
        queue = self.queues.get(channel)
        if queue:
            self._drop_expired(queue, time.time())
            if queue:
                expires_at, payload = queue.popleft()
                connection.deliver(request_id, payload, expires_at)
                return
        self.waiters.setdefault(channel, deque()).append((connection, request_id))
        connection.park(channel)

    def receive_any(self, channels: list[str], connection: HubConnection, request_id: int) -> None:
        """Answer with the first queued message of ``channels`` (in their order), else park
        one receive in the line of each of them (module docs)."""
        if not channels or not all(type(channel) is str for channel in channels):
            raise ValueError("RECEIVE_ANY needs a non-empty list of channel names")
        if not connection.reachable:
            return
        queues = self.queues
        for channel in channels:
            queue = queues.get(channel)
            if queue:
                self._drop_expired(queue, time.time())
                if queue:
                    expires_at, payload = queue.popleft()
                    connection.reply(request_id, Status.OK, (payload, expires_at, channel))
                    return
        connection.any_waits[request_id] = channels
        waiters = self.waiters
        for channel in channels:
            waiters.setdefault(channel, deque()).append((connection, request_id))
            connection.park(channel)

    def _withdraw(
        self, connection: HubConnection, request_id: int, channels: list[str], taken: str | None
    ) -> None:
        """Take a parked RECEIVE_ANY out of the lines of its channels (but ``taken``'s, which
        it has just left)."""
        for channel in channels:
            if channel == taken:
                continue
            waiting = self.waiters.get(channel)
            if waiting is None:
                continue
            with contextlib.suppress(ValueError):
                waiting.remove((connection, request_id))
                connection.unpark(channel)
            if not waiting:
                del self.waiters[channel]

    def cancel(self, channel: str, connection: HubConnection, request_id: int) -> None:
        """Drop a parked receive and answer it CANCELLED; if its message already went out,
        there is nothing to do (the client pushes that message back)."""
        channels = connection.any_waits.pop(request_id, None) if connection.any_waits else None
        if channels is not None:
            self._withdraw(connection, request_id, channels, None)
            connection.reply(request_id, Status.CANCELLED, None)
            return
        waiting = self.waiters.get(channel)
        if waiting is None:
            return
        try:
            waiting.remove((connection, request_id))
        except ValueError:
            return
        if not waiting:
            del self.waiters[channel]
        connection.unpark(channel)
        connection.reply(request_id, Status.CANCELLED, None)

    def forget_connection(self, connection: HubConnection) -> None:
        self.detach(connection)
        connection.any_waits.clear()
        for channel in list(connection.parked):
            waiting = self.waiters.get(channel)
            if waiting is None:
                continue
            kept = deque(item for item in waiting if item[0] is not connection)
            if kept:
                self.waiters[channel] = kept
            else:
                del self.waiters[channel]

    def _hand_to_waiter(self, channel: str, payload: bytes, expires_at: float) -> bool:
        waiter = self._take_waiter(channel)
        if waiter is None:
            return False
        return self._deliver(waiter[0], waiter[1], channel, payload, expires_at)

    def _deliver(
        self,
        connection: HubConnection,
        request_id: int,
        channel: str,
        payload: bytes,
        expires_at: float,
    ) -> bool:
        """Answer a parked receive taken from ``channel``'s line; a RECEIVE_ANY leaves the
        lines of its other channels and is told the channel."""
        if connection.any_waits:
            channels = connection.any_waits.pop(request_id, None)
            if channels is not None:
                self._withdraw(connection, request_id, channels, channel)
                return connection.reply(request_id, Status.OK, (payload, expires_at, channel))
        return connection.deliver(request_id, payload, expires_at)

    def _take_waiter(self, channel: str) -> tuple[HubConnection, int] | None:
        """Pop the oldest parked receive on ``channel`` whose client is still connected."""
        waiting = self.waiters.get(channel)
        while waiting:
            connection, request_id = waiting.popleft()
            if not waiting:
                del self.waiters[channel]
            connection.unpark(channel)
            if connection.reachable:
                return connection, request_id
            waiting = self.waiters.get(channel)
        return None

    # ---------------------------------------------------------------- watched channels

    def watch(self, channel: str, connection: HubConnection, watch_id: int) -> None:
        """Push ``channel``'s messages to ``connection`` from now on, starting with its queue."""
        if not connection.reachable:
            return
        previous = self.watchers.get(channel)
        if previous is not None and previous != (connection, watch_id):
            previous[0].watching.pop(channel, None)
            previous[0].reply(0, Status.DISPLACED, previous[1])
        self.watchers[channel] = (connection, watch_id)
        connection.watching[channel] = watch_id
        queue = self.queues.pop(channel, None)
        if queue:
            now = time.time()
            for expires_at, payload in queue:
                if expires_at > now:
                    connection.push(channel, watch_id, payload, expires_at, counted=True)

    def unwatch(self, channel: str, connection: HubConnection, watch_id: int) -> None:
        if self.watchers.get(channel) == (connection, watch_id):
            del self.watchers[channel]
        if connection.watching.get(channel) == watch_id:
            del connection.watching[channel]

    def detach(self, connection: HubConnection) -> None:
        """End every watch of ``connection``."""
        for channel, watch_id in list(connection.watching.items()):
            self.unwatch(channel, connection, watch_id)

    @staticmethod
    def _drop_expired(queue: deque[Entry], now: float) -> None:
        while queue and queue[0][0] <= now:
            queue.popleft()

    # ---------------------------------------------------------------- groups

    def group_add(self, group: str, channel: str, expires_at: float) -> None:
        self.groups.setdefault(group, {})[channel] = expires_at
        heapq.heappush(self._group_heap, (expires_at, group, channel))

    def group_discard(self, group: str, channel: str) -> None:
        members = self.groups.get(group)
        if members is None:
            return
        members.pop(channel, None)
        if not members:
            del self.groups[group]
        if self.presence:
            self._forget_presence(group, channel)

    def group_send(
        self,
        group: str,
        payload: bytes,
        expires_at: float,
        rules: CapacityRules,
        history: HistorySettings | None = None,
    ) -> Position | None:
        """Fan ``payload`` out; in a group with history keep it first and return its
        position (members get it stamped)."""
        position = None
        if history is not None:
            now = time.monotonic()
            position = self.history.log_of(group, history, now).append(payload, now)
            payload = stamp_payload(payload, position.epoch, position.offset)
        members = self.groups.get(group)
        if members:
            self._fan_out(members, payload, expires_at, rules)
        return position

    def _fan_out(
        self, members: dict[str, float], payload: bytes, expires_at: float, rules: CapacityRules
    ) -> None:
        now = time.time()
        watchers = self.watchers
        accepted, refused = self.statistics.accepted, self.statistics.refused
        for channel, member_until in list(members.items()):
            if member_until <= now:
                continue
            watcher = watchers.get(channel)
            if watcher is not None and watcher[0].push(
                channel, watcher[1], payload, expires_at, counted=False
            ):
                accepted(channel)  # the member's process bounds uncounted copies
                continue
            waiter = self._take_waiter(channel)
            if waiter is not None:
                self._deliver(waiter[0], waiter[1], channel, payload, expires_at)
                accepted(channel)
            elif self._enqueue(channel, payload, expires_at, rules.capacity(channel), now):
                accepted(channel)
            else:
                refused(channel)

    # ---------------------------------------------------------------- presence

    def join(
        self,
        group: str,
        channel: str,
        info: Any,
        profile: ClientProfile,
        settings: PresenceSettings,
        announce: bool,
    ) -> None:
        """Record ``channel``'s info (it was just added to ``group``); the join event goes
        out for a new member unless this is a replay."""
        roster = self.presence.setdefault(group, {})
        previous = roster.get(channel)
        if previous is not None and previous.profile.client_id != profile.client_id:
            self._disown(previous.profile.client_id, group, channel)
        roster[channel] = PresenceMember(info, profile, settings)
        owner = self.owners.get(profile.client_id)
        if owner is None:
            owner = self.owners[profile.client_id] = Owner(time.monotonic())
        owner.last_seen = time.monotonic()
        owner.members[(group, channel)] = settings.ttl
        owner.shortest_ttl = min(owner.shortest_ttl, settings.ttl)
        if previous is None and announce and settings.events:
            self._announce(group, PRESENCE_JOIN, channel, info, profile)

    def _forget_presence(self, group: str, channel: str) -> None:
        member = pop_member(self.presence, group, channel)
        if member is None:
            return
        self._disown(member.profile.client_id, group, channel)
        if member.settings.events:
            self._announce(group, PRESENCE_LEAVE, channel, member.info, member.profile)

    def _disown(self, client_id: str, group: str, channel: str) -> None:
        owner = self.owners.get(client_id)
        if owner is not None:
            owner.members.pop((group, channel), None)
            if not owner.members:
                del self.owners[client_id]

    def _announce(
        self, group: str, kind: str, channel: str, info: Any, profile: ClientProfile
    ) -> None:
        members = self.groups.get(group)
        if members:
            payload = encode_message(presence_event(kind, group, channel, info))
            self._fan_out(members, payload, time.time() + profile.expiry, profile.rules)

    def beat(self, client_id: str) -> None:
        """A sign of life from ``client_id``: its presence members stay."""
        owner = self.owners.get(client_id)
        if owner is not None:
            owner.last_seen = time.monotonic()

    def sweep_presence(self, now: float) -> None:
        """Remove the members whose owner has been silent for their ttl."""
        for owner in list(self.owners.values()):
            silent = now - owner.last_seen
            if silent < owner.shortest_ttl:
                continue
            for (group, channel), ttl in list(owner.members.items()):
                if ttl <= silent:
                    self.group_discard(group, channel)

    def group_presence(self, group: str) -> dict[str, Any]:
        roster = self.presence.get(group)
        return {channel: member.info for channel, member in roster.items()} if roster else {}

    def group_presence_count(self, group: str) -> int:
        return len(self.presence.get(group, ()))

    # ---------------------------------------------------------------- statistics

    def channel_statistics(self, channel: str) -> tuple[Any, ...]:
        """Counters, pending messages (queued here or pushed to a watcher and not taken yet)
        and the expiry time of the oldest queued one."""
        queue = self.queues.get(channel)
        if queue:
            self._drop_expired(queue, time.time())
        watcher = self.watchers.get(channel)
        held = watcher[0].held(channel) if watcher is not None else 0
        oldest = queue[0][0] if queue else None
        pending = (len(queue) if queue else 0) + held
        return (*self.statistics.channel_counts(channel), pending, oldest)

    def global_statistics(self) -> tuple[Any, ...]:
        """The same over every channel; pending and the oldest are read from the live queues
        when asked (O(channels) here, nothing on the send and receive paths)."""
        now = time.time()
        pending, oldest = 0, None
        for queue in self.queues.values():
            self._drop_expired(queue, now)
            if queue:
                pending += len(queue)
                head = queue[0][0]
                oldest = head if oldest is None else min(oldest, head)
        for channel, (connection, _) in self.watchers.items():
            pending += connection.held(channel)
        return (*self.statistics.global_counts(), pending, oldest)

    # ---------------------------------------------------------------- housekeeping

    def flush(self) -> None:
        self.queues.clear()
        self.groups.clear()
        self.history.clear()
        self.presence.clear()
        self.owners.clear()
        self._queue_heap.clear()
        self._group_heap.clear()

    def sweep(self, now: float) -> None:
        """Drop expired messages and memberships; O(what expired)."""
        heap = self._queue_heap
        while heap and heap[0][0] <= now:
            _, channel = heapq.heappop(heap)
            queue = self.queues.get(channel)
            if queue is None:
                continue
            self._drop_expired(queue, now)
            if queue:
                heapq.heappush(heap, (queue[0][0], channel))
            else:
                del self.queues[channel]
        groups = self._group_heap
        while groups and groups[0][0] <= now:
            expires_at, group, channel = heapq.heappop(groups)
            members = self.groups.get(group)
            if members is not None and members.get(channel) == expires_at:
                self.group_discard(group, channel)


DELIVERY, PUSH, COUNTED_PUSH = 0, 1, 2  # the kinds of batch


class DeliveryBatch:
    """One payload on its way to one connection: for RECEIVE ids (a delivery) or for watch ids
    (a push, counted or not)."""

    __slots__ = ("expires_at", "ids", "kind", "payload", "place")

    def __init__(
        self, place: int, kind: int, payload: bytes, expires_at: float, first_id: int
    ) -> None:
        self.place = place
        self.kind = kind
        self.payload = payload
        self.expires_at = expires_at
        self.ids = [first_id]

    def frame(self) -> tuple[Any, ...]:
        if self.kind != DELIVERY:
            counted = self.kind == COUNTED_PUSH
            return (0, Status.PUSH, (self.ids, self.payload, self.expires_at, counted))
        if len(self.ids) == 1:
            return (self.ids[0], Status.OK, (self.payload, self.expires_at))
        return (0, Status.DELIVER_MANY, (self.ids, self.payload, self.expires_at))


class HubConnection(FramedProtocol):
    """One client connection as the hub sees it."""

    def __init__(self, state: HubState) -> None:
        super().__init__(self.handle)
        self.state = state
        self.rules = DEFAULT_RULES
        self.profile = DEFAULT_PROFILE
        self.parked: dict[str, int] = {}  # channel -> receives parked on it
        self.any_waits: dict[int, list[str]] = {}  # parked RECEIVE_ANY id -> its channels
        self.batched = False  # the client announced DELIVER_MANY support in HELLO
        self.watching: dict[str, int] = {}  # channel -> watch id, for channels it watches
        self.counted: dict[str, int] = {}  # channel -> counted pushes not yet CONSUMED
        self._deliveries: dict[tuple[int, float, int], DeliveryBatch] = {}
        self.open = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self.state.forget_connection(self)

    def park(self, channel: str) -> None:
        self.parked[channel] = self.parked.get(channel, 0) + 1

    def unpark(self, channel: str) -> None:
        _count_down(self.parked, channel)

    @property
    def reachable(self) -> bool:
        """False once the client has gone, so deliveries are re-routed rather than lost."""
        return self.open and self.transport is not None and not self.transport.is_closing()

    def reply(self, request_id: int, status: int, value: Any) -> bool:
        """Answer a request; False when the client has gone (so the caller re-routes)."""
        if not self.reachable:
            return False
        self.write((request_id, status, value))
        return True

    def deliver(self, request_id: int, payload: bytes, expires_at: float) -> bool:
        """Answer a RECEIVE with a message; False when the client has gone.

        Deliveries of the same payload object in one loop iteration (a group message reaching
        parked receives, or queued copies of it being picked up) share one frame, composed at
        flush time in the place of the first of them."""
        if not self.reachable:
            return False
        if not self.batched:
            self.write((request_id, Status.OK, (payload, expires_at)))
            return True
        self._batch(DELIVERY, payload, expires_at, request_id)
        return True

    def push(
        self, channel: str, watch_id: int, payload: bytes, expires_at: float, counted: bool
    ) -> bool:
        """Send a message for a channel this connection watches; False when it has gone."""
        if not self.reachable:
            return False
        if counted:
            self.counted[channel] = self.counted.get(channel, 0) + 1
        self._batch(COUNTED_PUSH if counted else PUSH, payload, expires_at, watch_id)
        return True

    def held(self, channel: str) -> int:
        """Counted pushes for ``channel`` the client has not consumed or handed back yet."""
        return self.counted.get(channel, 0)

    def settle(self, channel: str) -> None:
        """The client consumed (or handed back) one counted push for ``channel``."""
        _count_down(self.counted, channel)

    def _batch(self, kind: int, payload: bytes, expires_at: float, first_id: int) -> None:
        key = (id(payload), expires_at, kind)  # the batch holds ``payload``: its id stays unique
        batch = self._deliveries.get(key)
        if batch is None:
            place = self._reserve()
            self._deliveries[key] = DeliveryBatch(place, kind, payload, expires_at, first_id)
        else:
            batch.ids.append(first_id)

    def _compose(self, outgoing: list[bytes]) -> None:
        deliveries, self._deliveries = self._deliveries, {}
        for batch in deliveries.values():
            outgoing[batch.place] = encode_frame(batch.frame())

    def handle(self, item: tuple[Any, ...]) -> None:
        try:
            self._dispatch(item)
        except Exception as exc:  # a malformed request must not take the hub down
            if len(item) > 1 and isinstance(item[1], int):
                self.reply(item[1], Status.ERROR, f"{type(exc).__name__}: {exc}")

    def _dispatch(self, item: tuple[Any, ...]) -> None:
        op, request_id = item[0], item[1]
        state = self.state
        if op == Op.SEND:
            channel, payload, expiry = item[2], item[3], item[4]
            sent = state.send(channel, payload, time.time() + expiry, self.rules.capacity(channel))
            self.reply(request_id, Status.OK if sent else Status.FULL, None)
        elif op == Op.RECEIVE:
            state.receive(item[2], self, request_id)
        elif op == Op.RECEIVE_ANY:
            state.receive_any(item[2], self, request_id)
        elif op == Op.CANCEL:
            state.cancel(item[2], self, item[3])
        elif op == Op.PUSH_FRONT:
            if len(item) > 5 and item[5]:
                self.settle(item[2])  # a counted push handed back: no longer held here
            state.push_front(item[2], item[3], item[4])
        elif op == Op.CONSUMED:
            for channel in item[2]:
                self.settle(channel)
        elif op == Op.WATCH:
            state.watch(item[2], self, item[3])
        elif op == Op.GROUP_SEND:
            group = item[2]
            features = self.profile.features
            history = features.history_of(group) if features else None
            position = state.group_send(group, item[3], time.time() + item[4], self.rules, history)
            answer = None if position is None else (position.epoch, position.offset)
            self.reply(request_id, Status.OK, answer)
        elif op == Op.BEAT:
            state.beat(self.profile.client_id)
        else:
            self._dispatch_admin(op, request_id, item)

    def _dispatch_admin(self, op: int, request_id: int, item: tuple[Any, ...]) -> None:
        state = self.state
        if op == Op.GROUP_ADD:
            state.group_add(item[2], item[3], item[4])
            if len(item) > 6:
                self._join(item[2], item[3], item[5], item[6])
        elif op in _READS:
            self.reply(request_id, Status.OK, self._read(op, item))
            return
        elif op == Op.GROUP_DISCARD:
            state.group_discard(item[2], item[3])
        elif op == Op.UNWATCH:
            state.unwatch(item[2], self, item[3])
        elif op == Op.DETACH:
            state.detach(self)
        elif op == Op.HELLO:
            self.rules = CapacityRules(item[2], list(item[3]))
            self.batched = len(item) > 4 and item[4] >= PROTOCOL_BATCHED
            if len(item) > 7:
                features = GroupFeatures(**item[6])
                self.profile = ClientProfile(self.rules, item[5], features, item[7])
            self.reply(request_id, Status.OK, PROTOCOL_VERSION)
            return
        elif op == Op.FLUSH:
            state.flush()
        elif op == Op.STATISTICS:
            channel = item[2]
            statistics = (
                state.global_statistics() if channel is None else state.channel_statistics(channel)
            )
            self.reply(request_id, Status.OK, statistics)
            return
        else:
            raise ValueError(f"unknown opcode {op!r}")
        self.reply(request_id, Status.OK, None)

    def _join(self, group: str, channel: str, info: Any, announce: bool) -> None:
        settings = self.profile.features.presence_of(group)
        if settings is not None:
            self.state.join(group, channel, info, self.profile, settings, bool(announce))

    def _read(self, op: int, item: tuple[Any, ...]) -> Any:
        """The answer to GROUP_HISTORY, PRESENCE or PRESENCE_COUNT."""
        state, group = self.state, item[2]
        if op == Op.PRESENCE:
            return state.group_presence(group)
        if op == Op.PRESENCE_COUNT:
            return state.group_presence_count(group)
        settings = self.profile.features.require_history(group)
        since = None if item[3] is None else Position(item[3], item[4])
        return state.history.read(group, settings, since, item[5], time.monotonic())


_READS = frozenset((Op.GROUP_HISTORY, Op.PRESENCE, Op.PRESENCE_COUNT))


def _count_down(counts: dict[str, int], key: str) -> None:
    """Decrement ``counts[key]``, removing the key when it reaches zero."""
    remaining = counts.get(key, 0) - 1
    if remaining > 0:
        counts[key] = remaining
    else:
        counts.pop(key, None)


async def _sweep_forever(state: HubState) -> None:
    ticks_per_sweep = round(SWEEP_INTERVAL / PRESENCE_SWEEP)
    for tick in itertools.count(1):
        await asyncio.sleep(PRESENCE_SWEEP)
        if state.owners:
            state.sweep_presence(time.monotonic())
        if tick % ticks_per_sweep == 0:
            state.sweep(time.time())


async def serve_hub(
    listener: socket.socket, stop: asyncio.Event | None = None, state: HubState | None = None
) -> None:
    """Serve the hub protocol on an already-listening Unix socket until ``stop`` is set."""
    loop = asyncio.get_running_loop()
    state = state if state is not None else HubState()
    server = await loop.create_unix_server(lambda: HubConnection(state), sock=listener)
    sweeper = asyncio.create_task(_sweep_forever(state))
    try:
        await (stop.wait() if stop is not None else asyncio.Event().wait())
    finally:
        sweeper.cancel()
        server.close()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (as the server does), else the standard loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def prepare_directory(path: str) -> None:
    """Create the socket's directory as ``0700`` and refuse one another user owns."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, mode=0o700, exist_ok=True)
    info = os.stat(folder)
    if info.st_uid != os.getuid():
        raise PermissionError(f"IPC layer directory {folder} belongs to another user")


def bind_listener(path: str) -> socket.socket:
    """Bind and listen on ``path``, replacing a stale socket file left by a dead hub."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
        os.chmod(path, 0o600)
        listener.listen(1024)
    except BaseException:
        listener.close()
        raise
    listener.setblocking(False)
    return listener


class HubHost:
    """Runs a hub for ``path`` on a daemon thread when this process wins ``<path>.lock``.

    One host per path per process (see :meth:`for_path`). The lock file descriptor and the
    listening socket are closed in forked children, so a child can never keep a dead parent's
    lock or accept queue alive.
    """

    _hosts: dict[str, HubHost] = {}
    _guard = threading.Lock()

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock_fd: int | None = None
        self.listener: socket.socket | None = None
        self.thread: threading.Thread | None = None
        self.state: HubState | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    @classmethod
    def for_path(cls, path: str) -> HubHost:
        with cls._guard:
            host = cls._hosts.get(path)
            if host is None:
                host = cls._hosts[path] = cls(path)
            return host

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def try_start(self) -> bool:
        """Start hosting if nobody else holds the lock; True when this process hosts the hub."""
        with self._guard:
            if self.running:
                return True
            if not self._acquire_lock():
                return False
            self.listener = bind_listener(self.path)
            ready = threading.Event()
            self.thread = threading.Thread(
                target=self._run, args=(ready,), name=f"headrace-ipc-hub {self.path}", daemon=True
            )
            self.thread.start()
            ready.wait(10)
            return True

    def _acquire_lock(self) -> bool:
        prepare_directory(self.path)
        fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.lock_fd = fd
        return True

    def _run(self, ready: threading.Event) -> None:
        assert self.listener is not None
        loop = new_event_loop()
        self._loop = loop
        self._stop = asyncio.Event()
        self.state = HubState()
        loop.call_soon(ready.set)
        try:
            loop.run_until_complete(serve_hub(self.listener, self._stop, self.state))
        finally:
            loop.close()

    def stop(self) -> None:
        """Stop hosting (tests and clean shutdown): close the socket, release the lock."""
        with self._guard:
            if self._loop is not None and self._stop is not None and self.running:
                self._loop.call_soon_threadsafe(self._stop.set)
                assert self.thread is not None
                self.thread.join(10)
            self._release(unlink=True)

    def _release(self, unlink: bool = False) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None
            if unlink:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None
        self.thread = None
        self._loop = None
        self._stop = None

    @classmethod
    def _stop_all_at_exit(cls) -> None:
        # Daemon threads still running an event loop while the interpreter finalises can
        # crash it; stop every hub this process hosts first (atexit runs before that).
        for host in list(cls._hosts.values()):
            host.stop()

    @classmethod
    def _after_fork_in_child(cls) -> None:
        for host in cls._hosts.values():
            host._release()
        cls._hosts = {}
        cls._guard = threading.Lock()


os.register_at_fork(after_in_child=HubHost._after_fork_in_child)
atexit.register(HubHost._stop_all_at_exit)
