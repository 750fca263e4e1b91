"""Blocking pops that a cancellation cannot cut in half.

Theory of operation
-------------------
A blocking pop (``BLPOP``, ``BLMPOP``) removes its elements on the server the moment they
arrive; the reply is then on its way to us. redis-py answers a cancellation that lands while it
waits for that reply by dropping the connection, and the elements with it. Readers are cancelled
whenever a layer closes and whenever an event loop ends (``asyncio.run`` cancels every task
first) — a worker stopping under traffic lost the message its reader was fetching.

So a reader pops through a :class:`BlockingPopper`: its own :class:`~.wire.RespConnection`, on
which the pop's reply is a plain future resolved from ``data_received``, not a coroutine a
cancellation can interrupt. When the reader is cancelled with a pop outstanding, the popper
does not abandon it: it asks the server to end the wait (``CLIENT UNBLOCK`` from the layer's
ordinary client: the pop then returns what it had taken, or nothing), waits for the reply, and
pushes whatever came back to the head of its list (on the same connection) before it lets the
cancellation go on. A reader that gives a popped element back because its receiver left
(:meth:`BlockingPopper.push_back`) is covered the same way: a cancellation waits for the
``LPUSH`` answer instead of leaving the element in doubt. The connection stays open and is
reused by the next reader of the loop (:class:`PopperPool`).

What can still be lost: a reply in flight when the connection itself breaks (Redis or the network
goes away) — the server had removed the elements and nobody receives them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from headrace.layers.redis.connections import RETRYABLE, LeanConnection
from headrace.layers.redis.wire import RespConnection

__all__ = ["BlockingPopper", "PopperPool", "Taken"]

UNBLOCK_TIMEOUT = 2.0

Taken = Callable[[Any], tuple[str, list[bytes]]]
"""The key and the elements in the reply of a blocking pop."""


class BlockingPopper:
    """One connection for blocking pops; ``admin`` is a client of the same server.

    With ``shared``, the pops run on that :class:`~.connections.LeanConnection` (the loop's
    coalesced command connection) instead of one of their own: commands written in the same
    loop turn just before a pop (a worker's replies before its next receive) then reach Redis
    in the same write. While a pop is out, the shared connection sends other commands on its
    spare. Only one pop at a time may use a shared popper (:attr:`in_use`)."""

    def __init__(self, admin: aioredis.Redis, shared: LeanConnection | None = None) -> None:
        self.admin = admin
        self.shared = shared
        self.in_use = False
        self.connection: RespConnection | None = None
        self.client_id = 0

    async def _connected(self) -> RespConnection:
        connection = self.connection
        if connection is None or not connection.is_open:
            if self.shared is not None:
                connection = await self.shared.connection()
            else:
                connection = await RespConnection.open(self.admin)
            try:
                self.client_id = int(await connection.call("CLIENT", "ID"))
            except BaseException:
                await connection.close()
                raise
            self.connection = connection
        return connection

    async def pop(self, taken: Taken, *command: bytes | str) -> Any:
        """Run the blocking ``command`` (which pops from ``command``'s key ``taken`` names)
        and return its reply; if the caller is cancelled meanwhile, end the wait, push what
        it popped back to the head of its list, then re-raise."""
        connection = await self._connected()
        reply = connection.call(*command)
        shared = self.shared
        if shared is not None:
            shared.blocked += 1
            reply.add_done_callback(lambda _: _unblocked(shared))
        try:
            await asyncio.wait([reply])
        except asyncio.CancelledError:
            if not reply.done():
                with contextlib.suppress(*RETRYABLE, TimeoutError):
                    async with asyncio.timeout(UNBLOCK_TIMEOUT):
                        await self.admin.client_unblock(self.client_id)
            late = await self._settle(reply)
            if late:
                key, elements = taken(late)
                await self._settle(self._push_back(key, elements))
            raise
        return reply.result()

    async def push_back(self, key: str, elements: list[bytes]) -> None:
        """LPUSH ``elements`` back to the head of ``key`` in their order; a cancellation
        that lands meanwhile waits for the answer (so the elements are not left in doubt)."""
        if not elements:
            return
        await self._connected()
        reply = self._push_back(key, elements)
        try:
            await asyncio.wait([reply])
        except asyncio.CancelledError:
            await self._settle(reply)
            raise
        reply.result()

    def _push_back(self, key: str, elements: list[bytes]) -> asyncio.Future[Any]:
        assert self.connection is not None
        return self.connection.call("LPUSH", key, *reversed(elements))

    async def _settle(self, reply: asyncio.Future[Any]) -> Any:
        """The reply of a call whose caller left, once it arrives (None if it fails)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(UNBLOCK_TIMEOUT):
                await asyncio.wait([reply])
        if not reply.done():
            self._drop()  # no answer: this connection cannot be trusted any more
            return None
        if reply.exception() is not None:
            return None
        return reply.result()

    def _drop(self) -> None:
        self.abort()

    def abort(self) -> None:
        """Drop the connection now (a failed or unanswered one); the next pop reconnects."""
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.abort()

    async def aclose(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None and self.shared is None:  # its owner closes a shared one
            with contextlib.suppress(*RETRYABLE):
                await connection.close()


def _unblocked(shared: LeanConnection) -> None:
    shared.blocked -= 1


class PopperPool:
    """Idle poppers of one event loop, by server (queue readers come and go)."""

    def __init__(self) -> None:
        self._idle: dict[int, list[BlockingPopper]] = {}

    def acquire(self, admin: aioredis.Redis) -> BlockingPopper:
        idle = self._idle.get(id(admin))
        return idle.pop() if idle else BlockingPopper(admin)

    def release(self, popper: BlockingPopper) -> None:
        """Keep ``popper`` for the next reader (readers release theirs when they stop, also
        when cancelled, so :meth:`aclose` after the readers have stopped closes them all)."""
        self._idle.setdefault(id(popper.admin), []).append(popper)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        for poppers in idle.values():
            for popper in poppers:
                await popper.aclose()
