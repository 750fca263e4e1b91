"""The in-process mailbox the broker-backed layers (Redis, RabbitMQ) deliver through.

A :class:`Mailbox` holds the messages that reached this process for one channel and the
``receive()`` calls waiting for them. The layer's reader fills it; receivers take from it. Because
a receiver only ever waits on a mailbox, cancelling ``receive()`` cannot lose a message: one that
arrives for a receiver that has just gone stays in the mailbox, first in line, for the next one.
Items are tuples whose first element is the message's expiry time in ms (each layer has its own
item shape after that).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["Mailbox"]

ItemT = TypeVar("ItemT", bound=tuple[Any, ...])


class Mailbox(Generic[ItemT]):
    """Messages for one channel waiting in this process, and the receivers waiting for them."""

    __slots__ = ("items", "waiters")

    def __init__(self) -> None:
        self.items: deque[ItemT] = deque()
        self.waiters: deque[asyncio.Future[ItemT]] = deque()

    def deliver(self, item: ItemT) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(item)
                return
        self.items.append(item)

    def has_waiters(self) -> bool:
        while self.waiters and self.waiters[0].done():
            self.waiters.popleft()
        return bool(self.waiters)

    def idle(self) -> bool:
        return not self.items and not self.has_waiters()

    async def get(self, on_wait: Callable[[], None] | None = None) -> ItemT:
        if self.items:
            return self.items.popleft()
        waiter: asyncio.Future[ItemT] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        if on_wait is not None:
            on_wait()
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.items.appendleft(waiter.result())
            else:
                waiter.cancel()
            raise

    def take_all(self) -> list[ItemT]:
        """Remove and return every waiting item."""
        items = list(self.items)
        self.items.clear()
        return items

    def drop_expired(self, now: int) -> list[ItemT]:
        """Remove and return the items expired at ``now`` (ms; they may need settling)."""
        expired = [item for item in self.items if item[0] <= now]
        if expired:
            self.items = deque(item for item in self.items if item[0] > now)
        return expired
