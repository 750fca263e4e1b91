"""In-process delivery state of the RabbitMQ layer: mailboxes and statistics counters.

A :class:`Mailbox` holds the messages that reached this process for one channel and the
``receive()`` calls waiting for them. Consumers (the process queue's, and one per received
worker channel) fill mailboxes; receivers take from them. A receiver only ever waits on a
mailbox, so cancelling ``receive()`` cannot lose a message: one handed to a receiver that has
just gone goes back to the front of the mailbox for the next ``receive()``.

:class:`Statistics` counts accepted sends and ``ChannelFull`` refusals, in total and per
channel, with the counts of the last whole second as the per-second rates (three integers per
counter, so counting costs O(1) and memory is bounded).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import NamedTuple

from headrace.layers.mailbox import Mailbox as SharedMailbox

__all__ = ["Item", "Mailbox", "RateCounter", "Statistics", "now_ms"]

CHANNELS_TRACKED = 10_000
"""Per-channel counters kept (least recently counted channels are forgotten first)."""


def now_ms() -> int:
    return int(time.time() * 1000)


class Item(NamedTuple):
    """A message waiting in this process."""

    expires: int  # wall-clock ms
    body: bytes
    tag: int | None  # delivery tag to ack (worker channels), None when already settled
    generation: int  # connection generation the tag belongs to


Mailbox = SharedMailbox[Item]
"""A mailbox of this layer's items (see :mod:`headrace.layers.mailbox`)."""


class RateCounter:
    """A total, and how many were counted in the last whole second (the ``*_per_second``
    statistics, as the other layers count them)."""

    __slots__ = ("last_count", "second", "this_count", "total")

    def __init__(self) -> None:
        self.total = 0
        self.second = 0
        self.this_count = 0
        self.last_count = 0

    def add(self, now: float, amount: int = 1) -> None:
        self.total += amount
        second = int(now)
        if second != self.second:
            self.last_count = self.this_count if second == self.second + 1 else 0
            self.this_count = 0
            self.second = second
        self.this_count += amount

    def rate(self, now: float) -> float:
        second = int(now)
        if second == self.second:
            return self.last_count
        if second == self.second + 1:
            return self.this_count
        return 0


class _ChannelCounters:
    __slots__ = ("full", "messages")

    def __init__(self) -> None:
        self.messages = RateCounter()
        self.full = RateCounter()


class Statistics:
    """What one layer instance counted: accepted messages and ChannelFull refusals."""

    def __init__(self) -> None:
        self.overall = _ChannelCounters()
        self.channels: OrderedDict[str, _ChannelCounters] = OrderedDict()

    def _of(self, channel: str) -> _ChannelCounters:
        counters = self.channels.get(channel)
        if counters is None:
            counters = self.channels[channel] = _ChannelCounters()
            if len(self.channels) > CHANNELS_TRACKED:
                self.channels.popitem(last=False)
        else:
            self.channels.move_to_end(channel)
        return counters

    def accepted(self, channel: str | None, amount: int = 1) -> None:
        now = time.monotonic()
        self.overall.messages.add(now, amount)
        if channel is not None:
            self._of(channel).messages.add(now, amount)

    def refused(self, channel: str) -> None:
        now = time.monotonic()
        self.overall.full.add(now)
        self._of(channel).full.add(now)

    def figures(self, channel: str | None) -> dict[str, float]:
        """The counters of ``channel`` (``None``: of the whole instance) as statistics keys."""
        counters = self.overall if channel is None else self.channels.get(channel)
        if counters is None:
            counters = _ChannelCounters()
        now = time.monotonic()
        return {
            "messages_count": counters.messages.total,
            "messages_count_per_second": counters.messages.rate(now),
            "channel_full_count": counters.full.total,
            "channel_full_count_per_second": counters.full.rate(now),
        }

    def clear(self) -> None:
        self.overall = _ChannelCounters()
        self.channels.clear()
