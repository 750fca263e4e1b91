"""In-process delivery state of the Redis layers: mailboxes, inboxes, queue readers.

A :class:`Mailbox` holds the messages that reached this process for one channel and the
``receive()`` calls waiting for them. Readers (one per inbox or received normal channel) fill
mailboxes; receivers take from them. Because a receiver only ever waits on a mailbox, cancelling
``receive()`` cannot lose a message: one that arrives for a receiver that has just gone stays in
the mailbox for the next ``receive()``.
"""

from __future__ import annotations

import asyncio
import time

from headrace.layers.mailbox import Mailbox as SharedMailbox

__all__ = ["Inbox", "Item", "Mailbox", "QueueReader", "Settle", "now_ms"]

Item = tuple[int, bytes, bool]
"""(expiry time in ms, payload, counted in Redis: True for a direct send to a local channel)."""


def now_ms() -> int:
    return int(time.time() * 1000)


Mailbox = SharedMailbox[Item]
"""A mailbox of this layer's items (see :mod:`headrace.layers.mailbox`)."""


class Inbox:
    """One process-local inbox read in this loop: its mailboxes by suffix and its reader."""

    __slots__ = ("mailboxes", "nonlocal_name", "task")

    def __init__(self, nonlocal_name: str) -> None:
        self.nonlocal_name = nonlocal_name
        self.mailboxes: dict[str, Mailbox] = {}
        self.task: asyncio.Task[None] | None = None

    def mailbox(self, suffix: str) -> Mailbox:
        box = self.mailboxes.get(suffix)
        if box is None:
            box = self.mailboxes[suffix] = Mailbox()
        return box

    def forget_if_idle(self, suffix: str) -> None:
        box = self.mailboxes.get(suffix)
        if box is not None and box.idle():
            del self.mailboxes[suffix]


class QueueReader:
    """A normal channel received in this loop: its mailbox and its (intermittent) reader."""

    __slots__ = ("channel", "mailbox", "task")

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.mailbox = Mailbox()
        self.task: asyncio.Task[None] | None = None


class Settle:
    """What a receiving process owes Redis for one inbox: pending-count decrements of taken
    direct sends, and statistics of group copies it accepted or refused (mailbox full)."""

    __slots__ = ("accepted", "refused", "taken")

    def __init__(self) -> None:
        self.taken: list[str] = []
        self.accepted: list[str] = []
        self.refused: list[str] = []
