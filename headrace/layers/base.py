"""The channel layer contract every backend implements, and the helpers they share.

Theory of operation
-------------------
A channel layer moves message dicts between application instances. It knows two kinds of
names and one kind of membership:

* a **channel** is a named FIFO of messages. ``send(channel, message)`` appends,
  ``receive(channel)`` waits for and removes the oldest one. A message is delivered at most
  once: to exactly one receiver, or to nobody if it expires first (after ``expiry`` seconds).
  A channel holds at most ``capacity`` messages (or the first ``channel_capacity`` pattern that
  matches its name); sending to a full channel raises :class:`~headrace.exceptions.ChannelFull`.
* a **process-local channel** has a ``!`` in its name (``specific.abc!xyz``). ``new_channel()``
  creates one; only the layer instance that created it is expected to receive from it, which
  lets backends deliver it without a shared queue.
* a **group** is a named set of channels (the ``groups`` extension). ``group_send`` sends a copy
  to every member and never raises for full members (they just miss the message). Membership
  lapses after ``group_expiry`` seconds unless renewed by another ``group_add``.
* groups matching a ``history`` pattern keep their recent messages (``group_send`` returns
  their :class:`~headrace.layers.history.Position`, ``group_history`` reads them); groups
  matching a ``presence`` pattern record an ``info`` dict per member (the ``history`` and
  ``presence`` extensions, see :mod:`headrace.layers.history` and docs/history-presence.md).

Names are ASCII letters, digits, ``-``, ``_`` and ``.`` (channels may add one ``!`` and a
suffix), shorter than :attr:`BaseChannelLayer.MAX_NAME_LENGTH` characters. Invalid names raise
:class:`~headrace.exceptions.InvalidChannelName`, a ``TypeError`` like in Channels.

``channel_capacity`` maps patterns to capacities: a string is a glob (``"http.request*"``), a
compiled ``re.Pattern`` is used as-is; the first match wins, in mapping order. Channels 4.3
stores the raw mapping and crashes on every send when it is set; here it is compiled once in
``__init__``.

Backends subclass :class:`BaseChannelLayer`, call ``super().__init__(...)`` with the common
keywords and implement the coroutines. ``headrace.testing.layers`` checks a backend against
this contract.
"""

from __future__ import annotations

import fnmatch
import itertools
import re
import secrets
import string
import time
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

from headrace.exceptions import ConfigError, InvalidChannelName
from headrace.layers.history import GroupFeatures, GroupHistory, Position

__all__ = [
    "BaseChannelLayer",
    "CapacityPattern",
    "LayerMessage",
    "LayerStatistics",
    "Statistics",
    "Tally",
    "statistics_of",
]

LayerMessage = dict[str, Any]
"""A message on a channel layer: a dict with a ``type`` key, serialisable by the backend."""

CapacityPattern = str | re.Pattern[str]
"""A ``channel_capacity`` key: a glob string or a compiled regular expression."""

_SUFFIX_ALPHABET = string.ascii_letters + string.digits

Statistics = dict[str, float]
"""What ``global_statistics()`` / ``channel_statistics()`` return (the ``statistics``
extension): ``messages_count``, ``messages_count_per_second``, ``messages_pending``,
``messages_max_age`` (seconds), ``channel_full_count``, ``channel_full_count_per_second``."""

_monotonic = time.monotonic

CHANNELS_COUNTED = 65536
"""How many channels :class:`LayerStatistics` keeps counters for (the oldest go first)."""


class Tally:
    """Counts by channel — in total, in the current second and in the second before — with
    two dict updates per count (no objects per channel). The per-channel totals keep the
    :data:`CHANNELS_COUNTED` channels counted first; older ones go when a second rolls over."""

    __slots__ = (
        "_second",
        "by_channel",
        "last_second",
        "last_total",
        "this_second",
        "this_total",
        "total",
    )

    def __init__(self) -> None:
        self.total = 0
        self.this_total = 0
        self.last_total = 0
        self.by_channel: dict[str, int] = {}
        self.this_second: dict[str, int] = {}
        self.last_second: dict[str, int] = {}
        self._second = 0

    def add(self, channel: str, count: int = 1) -> None:
        second = int(_monotonic())
        if second != self._second:
            self._roll(second)
        self.total += count
        self.this_total += count
        by_channel, this_second = self.by_channel, self.this_second
        by_channel[channel] = by_channel.get(channel, 0) + count
        this_second[channel] = this_second.get(channel, 0) + count

    def _roll(self, second: int) -> None:
        if second == self._second + 1:
            self.last_second, self.last_total = self.this_second, self.this_total
        else:
            self.last_second, self.last_total = {}, 0
        self.this_second, self.this_total = {}, 0
        self._second = second
        excess = len(self.by_channel) - CHANNELS_COUNTED
        if excess > 0:
            for channel in list(itertools.islice(self.by_channel, excess)):
                del self.by_channel[channel]

    def per_second(self, channel: str | None = None) -> int:
        """How many were counted in the last whole second (for ``channel``, or in all)."""
        second = int(time.monotonic())
        if second == self._second:
            counts, total = self.last_second, self.last_total
        elif second == self._second + 1:
            counts, total = self.this_second, self.this_total
        else:
            return 0
        return total if channel is None else counts.get(channel, 0)


class LayerStatistics:
    """Accepted and refused (``ChannelFull``) sends, in total and per channel, with their
    rates in the last whole second: what the in-process backends (and the IPC hub) keep.
    ``accepted(channel)`` / ``refused(channel)`` are the tallies' bound ``add`` methods."""

    __slots__ = ("accepted", "full", "messages", "refused")

    def __init__(self) -> None:
        self.messages = Tally()
        self.full = Tally()
        self.accepted = self.messages.add
        self.refused = self.full.add

    def global_counts(self) -> tuple[int, int, int, int]:
        """(messages, messages last second, full, full last second)."""
        messages, full = self.messages, self.full
        return messages.total, messages.per_second(), full.total, full.per_second()

    def channel_counts(self, channel: str) -> tuple[int, int, int, int]:
        messages, full = self.messages, self.full
        return (
            messages.by_channel.get(channel, 0),
            messages.per_second(channel),
            full.by_channel.get(channel, 0),
            full.per_second(channel),
        )


def statistics_of(counts: tuple[int, int, int, int], pending: int, max_age: float) -> Statistics:
    """The statistics dict from ``(messages, per second, full, per second)`` and the queue."""
    messages, messages_per_second, full, full_per_second = counts
    return {
        "messages_count": messages,
        "messages_count_per_second": messages_per_second,
        "messages_pending": pending,
        "messages_max_age": max(0.0, max_age),
        "channel_full_count": full,
        "channel_full_count_per_second": full_per_second,
    }


class BaseChannelLayer:
    """Common configuration, name rules and capacity lookup; subclasses do the I/O."""

    MAX_NAME_LENGTH: ClassVar[int] = 100
    extensions: ClassVar[list[str]] = ["groups", "flush"]

    channel_name_regex: ClassVar[re.Pattern[str]] = re.compile(r"^[a-zA-Z\d\-_.]+(![\d\w\-_.]*)?$")
    group_name_regex: ClassVar[re.Pattern[str]] = re.compile(r"^[a-zA-Z\d\-_.]+$")
    invalid_name_error: ClassVar[str] = (
        "{} name must be a valid unicode string with length < "
        + str(MAX_NAME_LENGTH)
        + " containing only ASCII alphanumerics, hyphens, underscores, or periods"
    )

    def __init__(
        self,
        expiry: float = 60,
        capacity: int = 100,
        channel_capacity: Mapping[CapacityPattern, int] | None = None,
        group_expiry: float = 86400,
        history: Mapping[str, Mapping[str, Any]] | None = None,
        presence: Mapping[str, Mapping[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            unknown = ", ".join(sorted(kwargs))
            raise TypeError(f"{type(self).__name__} got unknown options: {unknown}")
        self.expiry = expiry
        self.group_expiry = group_expiry
        self.capacity = capacity
        self.channel_capacity: list[tuple[re.Pattern[str], int]] = self.compile_capacities(
            channel_capacity or {}
        )
        self.group_features = GroupFeatures(history, presence)
        for option in ("history", "presence"):
            if getattr(self.group_features, option) and option not in self.extensions:
                raise ConfigError(f"{type(self).__name__} does not support the {option!r} option")

    # ------------------------------------------------------------------ capacity

    def compile_capacities(
        self, channel_capacity: Mapping[CapacityPattern, int]
    ) -> list[tuple[re.Pattern[str], int]]:
        """Turn a ``{glob or regex: capacity}`` mapping into an ordered list of (regex, cap)."""
        compiled: list[tuple[re.Pattern[str], int]] = []
        for pattern, value in channel_capacity.items():
            if isinstance(pattern, re.Pattern):
                compiled.append((pattern, int(value)))
            elif isinstance(pattern, str):
                compiled.append((re.compile(fnmatch.translate(pattern)), int(value)))
            else:
                raise TypeError(f"channel_capacity keys must be str or re.Pattern, not {pattern!r}")
        return compiled

    def get_capacity(self, channel: str) -> int:
        """The capacity of ``channel``: the first matching ``channel_capacity`` entry, else
        ``capacity``."""
        for pattern, capacity in self.channel_capacity:
            if pattern.match(channel):
                return capacity
        return self.capacity

    # ------------------------------------------------------------------ names

    def match_type_and_length(self, name: object) -> bool:
        """True when ``name`` is a str shorter than :attr:`MAX_NAME_LENGTH`."""
        return isinstance(name, str) and len(name) < self.MAX_NAME_LENGTH

    def require_valid_channel_name(self, name: object, receive: bool = False) -> bool:
        """Raise :class:`InvalidChannelName` unless ``name`` is a valid channel name.

        With ``receive=True`` a process-local name must end at the ``!`` (the old
        "receive on the non-local prefix" form)."""
        self._check_name("Channel", name, self.channel_name_regex)
        assert isinstance(name, str)
        if receive and "!" in name and not name.endswith("!"):
            raise InvalidChannelName("Specific channel names in receive() must end at the !")
        return True

    def require_valid_group_name(self, name: object) -> bool:
        """Raise :class:`InvalidChannelName` unless ``name`` is a valid group name."""
        self._check_name("Group", name, self.group_name_regex)
        return True

    def valid_channel_names(self, names: list[str], receive: bool = False) -> bool:
        """Validate a non-empty list of channel names."""
        if not isinstance(names, list) or not names:
            raise InvalidChannelName("names must be a non-empty list")
        for channel in names:
            self.require_valid_channel_name(channel, receive=receive)
        return True

    def valid_channel_name(self, channel_name: object, receive: bool = False) -> bool:
        """Deprecated spelling of :meth:`require_valid_channel_name` (kept for Channels code)."""
        warnings.warn(
            "valid_channel_name is deprecated, use require_valid_channel_name instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.require_valid_channel_name(channel_name, receive=receive)

    def valid_group_name(self, group_name: object) -> bool:
        """Deprecated spelling of :meth:`require_valid_group_name` (kept for Channels code)."""
        warnings.warn(
            "valid_group_name is deprecated, use require_valid_group_name instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.require_valid_group_name(group_name)

    def non_local_name(self, name: str) -> str:
        """The part of ``name`` up to and including ``!``; the whole name if it has none."""
        bang = name.find("!")
        return name if bang < 0 else name[: bang + 1]

    def _check_name(self, kind: str, name: object, regex: re.Pattern[str]) -> None:
        if not isinstance(name, str):
            raise InvalidChannelName(
                f"{kind} name must be a str, not {type(name).__name__}: "
                + self.invalid_name_error.format(kind)
            )
        if len(name) >= self.MAX_NAME_LENGTH:
            raise InvalidChannelName(
                f"{kind} name is {len(name)} characters long ({name[:20]!r}...): "
                + self.invalid_name_error.format(kind)
            )
        if not regex.match(name):
            raise InvalidChannelName(
                f"{kind} name {name!r} is invalid: " + (self.invalid_name_error.format(kind))
            )

    @staticmethod
    def require_valid_message(message: object) -> None:
        """Raise ``TypeError`` unless ``message`` is a dict (the only message shape)."""
        if not isinstance(message, dict):
            raise TypeError(f"message must be a dict, not {type(message).__name__}")

    @staticmethod
    def random_suffix(length: int = 12) -> str:
        """A random ``[A-Za-z0-9]`` string for unique process-local channel names."""
        return "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(length))

    # ------------------------------------------------------------------ the contract

    async def send(self, channel: str, message: LayerMessage) -> None:
        """Append ``message`` to ``channel``; raise ChannelFull when it is at capacity."""
        raise NotImplementedError("send() should be implemented in a channel layer")

    async def receive(self, channel: str) -> LayerMessage:
        """Wait for and remove the oldest unexpired message on ``channel``."""
        raise NotImplementedError("receive() should be implemented in a channel layer")

    async def new_channel(self, prefix: str = "specific") -> str:
        """Return a new, unique process-local channel name (contains ``!``) for this layer."""
        raise NotImplementedError("new_channel() should be implemented in a channel layer")

    async def flush(self) -> None:
        """Drop every message and group membership (the ``flush`` extension)."""
        raise NotImplementedError("flush() not implemented (flush extension)")

    async def group_add(self, group: str, channel: str, info: dict[str, Any] | None = None) -> None:
        """Add ``channel`` to ``group`` (or renew its membership). In a group with presence,
        record ``info`` ({} when None) for it; re-adding replaces the info (no new join)."""
        raise NotImplementedError("group_add() not implemented (groups extension)")

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group``; no error if it was not a member."""
        raise NotImplementedError("group_discard() not implemented (groups extension)")

    async def group_send(self, group: str, message: LayerMessage) -> Position | None:
        """Send a copy of ``message`` to every member of ``group``; full members are skipped.
        In a group with history the message is kept, members get it with
        ``[epoch, offset]`` under ``POSITION_KEY``, and its Position is returned (else None)."""
        raise NotImplementedError("group_send() not implemented (groups extension)")

    async def group_history(
        self, group: str, since: Position | None = None, limit: int | None = None
    ) -> GroupHistory:
        """The kept messages of ``group`` after ``since`` (all kept when None), oldest first,
        at most ``limit`` of them (the oldest); ValueError when the group has no history."""
        raise NotImplementedError("group_history() not implemented (history extension)")

    async def group_presence(self, group: str) -> dict[str, dict[str, Any]]:
        """``{channel: info}`` of the live members of ``group`` (a group with presence)."""
        raise NotImplementedError("group_presence() not implemented (presence extension)")

    async def group_presence_count(self, group: str) -> int:
        """How many live members ``group`` has, without fetching them."""
        raise NotImplementedError("group_presence_count() not implemented (presence extension)")

    async def global_statistics(self) -> Statistics:
        """Statistics over every channel (the ``statistics`` extension): ``messages_count``
        (accepted sends), ``messages_count_per_second`` (in the last whole second),
        ``messages_pending``, ``messages_max_age`` (seconds the oldest pending message has
        waited), ``channel_full_count``, ``channel_full_count_per_second``."""
        raise NotImplementedError("global_statistics() not implemented (statistics extension)")

    async def channel_statistics(self, channel: str) -> Statistics:
        """The same statistics for one channel."""
        raise NotImplementedError("channel_statistics() not implemented (statistics extension)")

    async def close(self) -> None:
        """Release connections and background tasks. Safe to call more than once."""
