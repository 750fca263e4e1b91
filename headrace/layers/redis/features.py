"""History and presence of the Redis layer's groups (see :mod:`.group_scripts` for the keys).

Theory of operation
-------------------
A group matching a ``history`` or ``presence`` pattern keeps all of its state -- members,
stream, epoch, presence -- on the shard of its *name*, so one script call does a whole
operation atomically: ``group_send`` appends to the stream (``XADD ... MAXLEN``), takes the
next offset and pushes the member copies carrying that offset in the same call, so the offsets
members see are exactly the stream's. That is one round trip per send with any number of shards
(Cluster included) for process-local members: on a sharded layer with these features every
process reads its inboxes on *every* shard (one extra blocking reader per shard and inbox), and
the script pushes a local member's copy into its process's inbox on the group's shard. A
*normal* channel member whose queue lives on another shard gets its copy through one extra
parallel call per such shard (normal channels are read on their own shard only).

Presence: ``group_add`` records the member's expiry (a sorted set) and its ``presence.leave``
event (a hash, which carries the info), and pushes the ``presence.join`` event to every member
in the same call when it is new. This process refreshes the expiry of the members *it* added
every ``ttl / 3`` seconds (the heartbeat); any script call that touches the group's presence
(heartbeat, ``group_add``, ``group_presence``, ``group_presence_count``) first removes members
whose expiry passed and pushes their leave event -- atomically, so each expiry is announced
once, by whichever process notices first.
"""

from __future__ import annotations

import asyncio
import secrets
import struct
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, Protocol, TypeVar

from redis.exceptions import RedisError

from headrace.layers.history import (
    PRESENCE_JOIN,
    PRESENCE_LEAVE,
    GroupFeatures,
    GroupHistory,
    HistorySettings,
    Position,
    PresenceSettings,
    check_history_query,
    new_epoch,
    presence_event,
)
from headrace.layers.redis import group_scripts
from headrace.layers.redis.connections import RETRYABLE, LoopResources, Script
from headrace.layers.redis.hosts import AnyRedis
from headrace.layers.redis.mailbox import now_ms
from headrace.layers.redis.ring import HashRing, shard_name
from headrace.layers.redis.serializers import MessageSerializer

T = TypeVar("T")


class LayerView(Protocol):
    """What this module uses of :class:`~headrace.layers.redis.core.RedisChannelLayer`."""

    _shards: list[tuple[int, str]]
    _ring: HashRing
    group_features: GroupFeatures
    group_expiry: float
    serializer: MessageSerializer

    @property
    def shard_count(self) -> int: ...

    def shard_of(self, channel: str) -> int: ...

    def get_capacity(self, channel: str) -> int: ...

    def _ttls(self) -> tuple[int, int]: ...

    async def _resources(self) -> LoopResources: ...

    def _client(self, resources: Any, shard: int) -> tuple[AnyRedis, str]: ...

    async def _retry(self, operation: Callable[[], Awaitable[T]]) -> T: ...


__all__ = ["GroupFeatureStore"]

_SEND = Script(group_scripts.SEND)
_HISTORY = Script(group_scripts.HISTORY)
_MEMBER_ADD = Script(group_scripts.MEMBER_ADD)
_MEMBER_DISCARD = Script(group_scripts.MEMBER_DISCARD)
_SWEEP = Script(group_scripts.SWEEP)
_PRESENCE = Script(group_scripts.PRESENCE)
_FORWARD = Script(group_scripts.FORWARD)

Args = list[str | bytes | int]

_BEAT_ERRORS: tuple[type[BaseException], ...] = (*RETRYABLE, RedisError)


class _Heartbeat:
    """The presence members one event loop of this process added, and its refresh task."""

    __slots__ = ("groups", "task")

    def __init__(self) -> None:
        self.groups: dict[str, set[str]] = {}
        self.task: asyncio.Task[None] | None = None


class GroupFeatureStore:
    """History and presence operations of one :class:`RedisChannelLayer`."""

    def __init__(self, layer: LayerView) -> None:
        self.layer = layer
        self._shard_of_tag = {base: shard for shard, (_, base) in enumerate(layer._shards)}
        self._heartbeats: dict[LoopResources, _Heartbeat] = {}
        self._stopped = False

    def special(self, group: str) -> bool:
        """True when ``group`` has history or presence (its state lives on its own shard)."""
        history, presence = self.layer.group_features.of(group)
        return history is not None or presence is not None

    # ------------------------------------------------------------------ helpers

    def _group_base(self, group: str) -> tuple[int, str]:
        shard = self.layer._ring.index(group) if self.layer.shard_count > 1 else 0
        return shard, self.layer._shards[shard][1]

    def _home_tag(self, group: str, channel: str) -> str:
        """Where the group's copies for ``channel`` go: a process-local channel's inbox on the
        group's own shard (every process reads its inboxes on every shard, see
        ``RedisChannelLayer._read_inbox_everywhere``), a normal channel's queue on its shard."""
        if "!" in channel:
            return self._group_base(group)[1]
        return self.layer._shards[self.layer.shard_of(shard_name(channel))][1]

    def _delivery_args(self, now: int) -> Args:
        """Membership cutoff, queue ttl and the element's expiry digits."""
        ttl = self.layer._ttls()[0]
        return [now - int(self.layer.group_expiry * 1000), ttl, b"%013d" % (now + ttl)]

    async def _call(self, group: str, script: Script, keys: list[str], args: Args) -> Any:
        resources = await self.layer._resources()
        shard, _ = self._group_base(group)
        client, _ = self.layer._client(resources, shard)
        return await self.layer._retry(lambda: script(client, keys, args))

    async def _forward(self, foreign: Sequence[bytes]) -> None:
        """Push the copies for members homed on other shards: one call per shard."""
        if not foreign:
            return
        resources = await self.layer._resources()
        by_shard: dict[int, Args] = {}
        for index in range(0, len(foreign), 4):
            home, key, capacity, element = foreign[index : index + 4]
            shard = self._shard_of_tag[home.decode()]
            by_shard.setdefault(shard, [now_ms(), self.layer._ttls()[0]]).extend(
                [key, capacity, element]
            )
        calls = []
        for shard, args in by_shard.items():
            client, _ = self.layer._client(resources, shard)
            keys = [_text(args[2])]
            calls.append(self.layer._retry(partial(_FORWARD, client, keys, args)))
        await asyncio.gather(*calls)

    # ------------------------------------------------------------------ send, history

    async def send(self, group: str, payload: bytes) -> Position | None:
        """One script call on the group's shard: keep the message, deliver the copies."""
        history = self.layer.group_features.history_of(group)
        _, base = self._group_base(group)
        now = now_ms()
        cutoff, ttl, expiry_digits = self._delivery_args(now)
        dedupe_ttl = self.layer._ttls()[1]
        keys = [f"{base}:h:{group}", f"{base}:hm:{group}", f"{base}:d:{secrets.token_hex(8)}"]
        keys.append(f"{base}:s")
        size, history_ttl = _history_numbers(history)
        args: Args = [now, cutoff, ttl, expiry_digits, payload, base, dedupe_ttl, group]
        args += [size, history_ttl, new_epoch()]
        position, foreign = await self._call(group, _SEND, keys, args)
        await self._forward(foreign)
        if not position:
            return None
        epoch, offset = position.decode().rsplit(":", 1)
        return Position(epoch, int(offset))

    async def history(self, group: str, since: Position | None, limit: int | None) -> GroupHistory:
        check_history_query(since, limit)
        settings = self.layer.group_features.require_history(group)
        _, base = self._group_base(group)
        keys = [f"{base}:h:{group}", f"{base}:hm:{group}"]
        args: Args = [now_ms(), _history_numbers(settings)[1], new_epoch()]
        args += [since.epoch if since else "", since.offset if since else 0]
        args.append("" if limit is None else limit)
        epoch, newest, recovered, framed = await self._call(group, _HISTORY, keys, args)
        decode = self.layer.serializer.deserialize
        messages = [(offset, decode(payload)) for offset, payload in _unframe(framed)]
        return GroupHistory(epoch.decode(), int(newest), messages, bool(recovered))

    # ------------------------------------------------------------------ membership

    async def add(self, group: str, channel: str, info: dict[str, Any] | None) -> None:
        presence = self.layer.group_features.presence_of(group)
        _, base = self._group_base(group)
        now = now_ms()
        member_info = dict(info or {})
        serialize = self.layer.serializer.serialize
        leave = serialize(presence_event(PRESENCE_LEAVE, group, channel, member_info))
        join = serialize(presence_event(PRESENCE_JOIN, group, channel, member_info))
        args: Args = [now, max(1, int(self.layer.group_expiry * 1000)), base, group]
        args += [self._home_tag(group, channel), channel, self.layer.get_capacity(channel)]
        args += [_ms(presence.ttl) if presence else 0, leave, _flag(presence)]
        args += [*self._delivery_args(now), join]
        foreign = await self._call(group, _MEMBER_ADD, [f"{base}:pz:{group}"], args)
        await self._forward(foreign)
        if presence is not None and not self._stopped:
            await self._track(group, channel, presence)

    async def discard(self, group: str, channel: str) -> None:
        presence = self.layer.group_features.presence_of(group)
        _, base = self._group_base(group)
        now = now_ms()
        entry = self._home_tag(group, channel)
        if "!" not in channel:
            entry = f"{entry}|{self.layer.get_capacity(channel)}|{channel}"
        args: Args = [now, base, group, entry, channel, _flag(presence)]
        args += self._delivery_args(now)
        foreign = await self._call(group, _MEMBER_DISCARD, [f"{base}:pz:{group}"], args)
        await self._forward(foreign)
        heartbeat = self._heartbeats.get(await self.layer._resources())
        if heartbeat is not None:
            heartbeat.groups.get(group, set()).discard(channel)

    # ------------------------------------------------------------------ presence

    async def presence(self, group: str) -> dict[str, dict[str, Any]]:
        answer = await self._presence_call(group, count_only=False)
        decode = self.layer.serializer.deserialize
        return {
            answer[i].decode(): dict(decode(answer[i + 1]).get("info") or {})
            for i in range(0, len(answer), 2)
        }

    async def presence_count(self, group: str) -> int:
        return int(await self._presence_call(group, count_only=True))

    async def _presence_call(self, group: str, count_only: bool) -> Any:
        settings = self.layer.group_features.require_presence(group)
        _, base = self._group_base(group)
        now = now_ms()
        args: Args = [now, base, group, "1" if count_only else "0", _flag(settings)]
        args += self._delivery_args(now)
        answer, foreign = await self._call(group, _PRESENCE, [f"{base}:pz:{group}"], args)
        await self._forward(foreign)
        return answer

    async def _track(self, group: str, channel: str, settings: PresenceSettings) -> None:
        resources = await self.layer._resources()
        heartbeat = self._heartbeats.get(resources)
        if heartbeat is None:
            for old in [old for old in self._heartbeats if old.closed]:
                del self._heartbeats[old]
            heartbeat = self._heartbeats[resources] = _Heartbeat()
        heartbeat.groups.setdefault(group, set()).add(channel)
        if heartbeat.task is None or heartbeat.task.done():
            heartbeat.task = resources.spawn(self._beat(resources, heartbeat))

    async def _beat(self, resources: LoopResources, heartbeat: _Heartbeat) -> None:
        """Refresh this loop's members and notice expired ones, every ``ttl / 3``."""
        while heartbeat.groups and not resources.closed:
            periods = [self._settings_of(group).heartbeat for group in heartbeat.groups]
            await asyncio.sleep(min(periods))
            for group, channels in list(heartbeat.groups.items()):
                if not channels:
                    del heartbeat.groups[group]
                    continue
                try:
                    await self.refresh(group, sorted(channels))
                except _BEAT_ERRORS:
                    continue  # Redis away (or failing over): the next beat tries again

    def _settings_of(self, group: str) -> PresenceSettings:
        return self.layer.group_features.require_presence(group)

    async def refresh(self, group: str, channels: Sequence[str]) -> None:
        """Extend the expiry of ``channels`` (members added here) and sweep expired ones."""
        settings = self._settings_of(group)
        _, base = self._group_base(group)
        now = now_ms()
        args: Args = [now, base, group, _ms(settings.ttl), _flag(settings)]
        args += [*self._delivery_args(now), "", *channels]
        foreign = await self._call(group, _SWEEP, [f"{base}:pz:{group}"], args)
        await self._forward(foreign)

    def stop(self) -> None:
        """Stop refreshing presence from now on (what a hung or dead process looks like)."""
        self._stopped = True
        for heartbeat in self._heartbeats.values():
            heartbeat.groups.clear()
            if heartbeat.task is not None:
                heartbeat.task.cancel()

    def forget(self) -> None:
        """After a flush: stop refreshing (the members are gone)."""
        for heartbeat in self._heartbeats.values():
            heartbeat.groups.clear()


_FRAME = struct.Struct(group_scripts.FRAME)


def _unframe(framed: bytes) -> list[tuple[int, bytes]]:
    """The (offset, payload) entries of HISTORY's framed answer."""
    entries = []
    position, header = 0, _FRAME.size
    while position < len(framed):
        offset, length = _FRAME.unpack_from(framed, position)
        position += header
        entries.append((int(offset), framed[position : position + length]))
        position += length
    return entries


def _history_numbers(settings: HistorySettings | None) -> tuple[int, int]:
    """(size, ttl ms) for the scripts; size 0 means no history."""
    return (0, 0) if settings is None else (settings.size, _ms(settings.ttl))


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _flag(settings: PresenceSettings | None) -> str:
    return "1" if settings is not None and settings.events else "0"


def _text(value: str | bytes | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
