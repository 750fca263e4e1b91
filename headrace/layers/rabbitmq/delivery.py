"""In-process delivery state of the RabbitMQ layer: its mailboxes and their items.

A :class:`Mailbox` holds the messages that reached this process for one channel and the
``receive()`` calls waiting for them. Consumers (the process queue's, and one per received
worker channel) fill mailboxes; receivers take from them. A receiver only ever waits on a
mailbox, so cancelling ``receive()`` cannot lose a message: one handed to a receiver that has
just gone goes back to the front of the mailbox for the next ``receive()``.
"""

from __future__ import annotations

import time
from typing import NamedTuple

from headrace.layers.mailbox import Mailbox as SharedMailbox

__all__ = ["Item", "Mailbox", "now_ms"]


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
