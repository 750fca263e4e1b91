"""Group history and presence: the public types, the per-group configuration, and the
in-process structures the in-memory layer and the IPC hub keep them in.

Theory of operation
-------------------
A group configured with **history** is a stream: every ``group_send`` gets the next
``offset`` (1, 2, 3, ...) in the stream's ``epoch``, a random string chosen when the stream is
created. The stream keeps the newest ``size`` messages for at most ``ttl`` seconds. Whenever
what was sent can no longer be told apart from what was kept (``flush()``, a store restarted
empty, the whole stream expiring after ``ttl`` seconds without a send), the stream starts again
in a new epoch at offset 1, so a position from before can never be mistaken for one after.

Reading since a position ``(epoch, offset)`` answers "what did I miss": the kept messages with
a greater offset. The answer is ``recovered`` when nothing in between was dropped: the epoch is
the current one, ``offset`` is not ahead of the stream, and the oldest kept message is at most
``offset + 1`` (nothing kept counts as ``newest + 1``). Otherwise ``recovered`` is False and
the messages are every kept one, so the reader can decide to reload.

A group configured with **presence** records an ``info`` dict per member. Members are kept
alive by their layer; a member whose layer stops refreshing it disappears within ``ttl``.

Both are configured in a layer's ``CONFIG`` by fnmatch patterns, first match wins::

    "history": {"chat.*": {"size": 100, "ttl": 300}},
    "presence": {"chat.*": {"ttl": 30, "events": True}},

:class:`GroupFeatures` parses and validates that once (errors name the bad key) and answers,
cached per group name, which history and presence settings apply. Every backend uses it;
:class:`HistoryLog` and :class:`HistoryStore` are the in-process stream structures.
"""

from __future__ import annotations

import fnmatch
import re
import secrets
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from headrace.exceptions import ConfigError

__all__ = [
    "POSITION_KEY",
    "PRESENCE_JOIN",
    "PRESENCE_LEAVE",
    "GroupFeatures",
    "GroupHistory",
    "HistoryLog",
    "HistorySettings",
    "HistoryStore",
    "Position",
    "PresenceSettings",
    "check_history_query",
    "check_info",
    "new_epoch",
    "pop_member",
    "presence_event",
    "recovered_since",
]

POSITION_KEY = "__position__"
"""Key of ``[epoch, offset]`` in every message delivered from a group with history."""

PRESENCE_JOIN = "presence.join"
PRESENCE_LEAVE = "presence.leave"

_S = TypeVar("_S")
M = TypeVar("M")

_CACHED_GROUPS = 4096
"""How many group names :class:`GroupFeatures` remembers the answer for."""


@dataclass(frozen=True, slots=True)
class Position:
    """Where a message sits in its group's stream."""

    epoch: str
    offset: int

    def as_list(self) -> list[Any]:
        """``[epoch, offset]``: the form carried in messages under :data:`POSITION_KEY`."""
        return [self.epoch, self.offset]

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> Position | None:
        """The position a delivered message carries, or None when it carries none."""
        value = message.get(POSITION_KEY)
        if not isinstance(value, list | tuple) or len(value) != 2:
            return None
        epoch, offset = value
        if not isinstance(epoch, str) or not isinstance(offset, int):
            return None
        return cls(epoch, offset)


@dataclass(frozen=True, slots=True)
class GroupHistory:
    """What ``group_history`` answers."""

    epoch: str
    offset: int
    messages: list[tuple[int, dict[str, Any]]]
    recovered: bool


@dataclass(frozen=True, slots=True)
class HistorySettings:
    size: int
    ttl: float


@dataclass(frozen=True, slots=True)
class PresenceSettings:
    ttl: float
    events: bool = False

    @property
    def heartbeat(self) -> float:
        """Seconds between refreshes of a live member (a third of ``ttl``)."""
        return self.ttl / 3


def new_epoch() -> str:
    """A fresh random epoch string."""
    return secrets.token_hex(8)


def presence_event(kind: str, group: str, channel: str, info: Mapping[str, Any]) -> dict[str, Any]:
    """The ``presence.join`` / ``presence.leave`` message for ``channel`` in ``group`` (named, so
    a member of several presence groups can tell whose roster changed)."""
    return {"type": kind, "group": group, "channel": channel, "info": dict(info)}


def recovered_since(since: Position | None, epoch: str, newest: int, oldest_kept: int) -> bool:
    """Whether reading after ``since`` misses nothing (see the module docstring);
    ``oldest_kept`` is the offset of the oldest kept message, ``newest + 1`` when none is."""
    if since is None:
        return True
    return since.epoch == epoch and oldest_kept - 1 <= since.offset <= newest


def pop_member(rosters: dict[str, dict[str, _S]], group: str, channel: str) -> _S | None:
    """Remove ``channel`` from ``rosters[group]`` (and the roster once empty); what it held,
    or None when it was not there. The presence bookkeeping of the in-process stores."""
    roster = rosters.get(group)
    entry = roster.pop(channel, None) if roster is not None else None
    if roster is not None and not roster:
        del rosters[group]
    return entry


def check_info(info: object) -> dict[str, Any]:
    """The presence info to record: ``info`` itself, {} for None; TypeError for a non-dict."""
    if info is None:
        return {}
    if not isinstance(info, dict):
        raise TypeError(f"info must be a dict or None, not {type(info).__name__}")
    return info


def check_history_query(since: object, limit: object) -> None:
    """Raise for a ``since`` that is not a Position or a ``limit`` that is not an int >= 0."""
    if since is not None and not isinstance(since, Position):
        raise TypeError(f"since must be a Position or None, not {type(since).__name__}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be None or an int >= 0, not {limit!r}")


# ---------------------------------------------------------------------- configuration


def _positive_number(value: object, where: str, integer: bool = False) -> float:
    wrong_kind = isinstance(value, bool) or not isinstance(value, int if integer else int | float)
    if wrong_kind or not isinstance(value, int | float) or value <= 0:
        kind = "a positive int" if integer else "a positive number"
        raise ConfigError(f"{where} must be {kind}, not {value!r}")
    return value


def _pattern_entries(option: str, value: object) -> list[tuple[str, Mapping[str, Any]]]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{option} must map group patterns to settings, not {value!r}")
    entries: list[tuple[str, Mapping[str, Any]]] = []
    for pattern, settings in value.items():
        if not isinstance(pattern, str) or not pattern:
            raise ConfigError(f"{option}: group patterns must be non-empty str, not {pattern!r}")
        if not isinstance(settings, Mapping):
            raise ConfigError(f"{option}[{pattern!r}] must be a dict, not {settings!r}")
        entries.append((pattern, settings))
    return entries


def _reject_unknown(where: str, settings: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(str(key) for key in settings if key not in known)
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}")


def _history_settings(pattern: str, settings: Mapping[str, Any]) -> HistorySettings:
    where = f"history[{pattern!r}]"
    _reject_unknown(where, settings, {"size", "ttl"})
    for key in ("size", "ttl"):
        if key not in settings:
            raise ConfigError(f"{where} needs {key!r}")
    size = int(_positive_number(settings["size"], f"{where}['size']", integer=True))
    return HistorySettings(size, float(_positive_number(settings["ttl"], f"{where}['ttl']")))


def _presence_settings(pattern: str, settings: Mapping[str, Any]) -> PresenceSettings:
    where = f"presence[{pattern!r}]"
    _reject_unknown(where, settings, {"ttl", "events"})
    if "ttl" not in settings:
        raise ConfigError(f"{where} needs 'ttl'")
    events = settings.get("events", False)
    if not isinstance(events, bool):
        raise ConfigError(f"{where}['events'] must be True or False, not {events!r}")
    return PresenceSettings(float(_positive_number(settings["ttl"], f"{where}['ttl']")), events)


class GroupFeatures:
    """The parsed ``history`` and ``presence`` options, answering per group name."""

    __slots__ = ("_answers", "history", "presence")

    def __init__(self, history: object = None, presence: object = None) -> None:
        self.history: list[tuple[str, re.Pattern[str], HistorySettings]] = [
            (pattern, _compiled(pattern), _history_settings(pattern, settings))
            for pattern, settings in _pattern_entries("history", {} if history is None else history)
        ]
        self.presence: list[tuple[str, re.Pattern[str], PresenceSettings]] = [
            (pattern, _compiled(pattern), _presence_settings(pattern, settings))
            for pattern, settings in _pattern_entries(
                "presence", {} if presence is None else presence
            )
        ]
        self._answers: dict[str, tuple[HistorySettings | None, PresenceSettings | None]] = {}

    def __bool__(self) -> bool:
        return bool(self.history or self.presence)

    def of(self, group: str) -> tuple[HistorySettings | None, PresenceSettings | None]:
        """(history settings, presence settings) of ``group``; None where not configured."""
        answer = self._answers.get(group)
        if answer is None:
            answer = (_first_match(self.history, group), _first_match(self.presence, group))
            if len(self._answers) >= _CACHED_GROUPS:
                self._answers.clear()
            self._answers[group] = answer
        return answer

    def history_of(self, group: str) -> HistorySettings | None:
        return self.of(group)[0] if self.history else None

    def presence_of(self, group: str) -> PresenceSettings | None:
        return self.of(group)[1] if self.presence else None

    def require_history(self, group: str) -> HistorySettings:
        """The history settings of ``group``; ValueError naming it when it has none."""
        settings = self.history_of(group)
        if settings is None:
            raise ValueError(f"group {group!r} has no history (no 'history' pattern matches it)")
        return settings

    def require_presence(self, group: str) -> PresenceSettings:
        """The presence settings of ``group``; ValueError naming it when it has none."""
        settings = self.presence_of(group)
        if settings is None:
            raise ValueError(f"group {group!r} has no presence (no 'presence' pattern matches it)")
        return settings

    def as_config(self) -> dict[str, dict[str, dict[str, Any]]]:
        """The options back in ``CONFIG`` form (what a layer sends to a hub)."""
        return {
            "history": {p: {"size": s.size, "ttl": s.ttl} for p, _, s in self.history},
            "presence": {p: {"ttl": s.ttl, "events": s.events} for p, _, s in self.presence},
        }


def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern))


def _first_match(entries: list[tuple[str, re.Pattern[str], _S]], group: str) -> _S | None:
    for _, regex, settings in entries:
        if regex.match(group):
            return settings
    return None


# ---------------------------------------------------------------------- in-process streams


class HistoryLog(Generic[M]):
    """One group's stream in memory: ``(offset, deadline, message)`` newest last. ``M`` is
    what is kept per message (a dict in the in-memory layer, encoded bytes in the IPC hub)."""

    __slots__ = ("entries", "epoch", "expires", "offset", "settings")

    def __init__(self, settings: HistorySettings, now: float) -> None:
        self.settings = settings
        self.epoch = new_epoch()
        self.offset = 0
        self.entries: deque[tuple[int, float, M]] = deque(maxlen=settings.size)
        self.expires = now + settings.ttl

    def adopt(self, settings: HistorySettings) -> None:
        """Use ``settings`` from now on (another process configured the group differently);
        the newest kept messages stay, in the same epoch."""
        self.settings = settings
        self.entries = deque(self.entries, maxlen=settings.size)

    def append(self, message: M, now: float) -> Position:
        """Keep ``message`` (the caller's own copy, without :data:`POSITION_KEY`)."""
        self.offset += 1
        deadline = now + self.settings.ttl
        self.entries.append((self.offset, deadline, message))
        self.expires = deadline
        return Position(self.epoch, self.offset)

    def trim(self, now: float) -> None:
        entries = self.entries
        while entries and entries[0][1] <= now:
            entries.popleft()

    def read(
        self, since: Position | None, limit: int | None, now: float
    ) -> tuple[list[tuple[int, M]], bool]:
        """(the kept messages after ``since``, recovered); every kept one when ``since`` is
        None or not recoverable; at most the oldest ``limit``."""
        self.trim(now)
        entries = self.entries
        oldest = entries[0][0] if entries else self.offset + 1
        recovered = recovered_since(since, self.epoch, self.offset, oldest)
        after = since.offset if since is not None and recovered else 0
        skip = max(0, after - oldest + 1)
        count = len(entries) - skip if limit is None else min(limit, len(entries) - skip)
        return [(entries[i][0], entries[i][2]) for i in range(skip, skip + count)], recovered


class HistoryStore(Generic[M]):
    """Every group's :class:`HistoryLog`; a stream whose ttl passed without a send is gone
    (its epoch with it). Expired streams are dropped when touched and by a sweep run at most
    once per ``sweep_every`` seconds."""

    __slots__ = ("_next_sweep", "logs", "sweep_every")

    def __init__(self, sweep_every: float = 1.0) -> None:
        self.logs: dict[str, HistoryLog[M]] = {}
        self.sweep_every = sweep_every
        self._next_sweep = 0.0

    def log_of(self, group: str, settings: HistorySettings, now: float) -> HistoryLog[M]:
        """``group``'s live stream, created (in a new epoch) when absent or expired."""
        if now >= self._next_sweep:
            self._sweep(now)
        log = self.logs.get(group)
        if log is None or log.expires <= now:
            log = self.logs[group] = HistoryLog(settings, now)
        elif log.settings is not settings and log.settings != settings:
            log.adopt(settings)
        return log

    def read(
        self,
        group: str,
        settings: HistorySettings,
        since: Position | None,
        limit: int | None,
        now: float,
    ) -> tuple[str, int, list[tuple[int, M]], bool]:
        """(epoch, newest offset, messages after ``since``, recovered) of ``group``."""
        log = self.log_of(group, settings, now)
        messages, recovered = log.read(since, limit, now)
        return log.epoch, log.offset, messages, recovered

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + self.sweep_every
        for group in [group for group, log in self.logs.items() if log.expires <= now]:
            del self.logs[group]

    def clear(self) -> None:
        self.logs.clear()
