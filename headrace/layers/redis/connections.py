"""Connections per event loop, reconnect backoff, script calls and the sync bridge.

redis-py's asyncio connections belong to the loop that opened them, so a layer keeps one
:class:`LoopResources` per running loop, created on first use in that loop. It is closed by
``layer.close()`` or, when the loop ends first (``asyncio.run``, pytest-asyncio), by an async
generator parked on the loop: ``shutdown_asyncgens()`` runs before the loop closes and finalises
it, closing every socket while the loop can still do it — no "Event loop is closed" noise.

Synchronous callers (Celery tasks, management commands) use ``async_to_sync(layer.send)``; asgiref
then runs each call in a brand-new loop, which would mean a new connection per call. The
:class:`SyncBridge` spots those throwaway loops and runs the operation on one private loop in a
daemon thread instead, so its connections are reused across calls.

Every operation retries connection failures with :class:`Backoff` (exponential, full jitter)
until ``reconnect_timeout``; sends carry an id whose marker key makes a retried send a no-op if
the first attempt did land, so a retry never duplicates a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from asgiref.sync import AsyncToSync
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from headrace.layers.redis.hosts import AnyRedis, HostSpec
from headrace.layers.redis.wire import RespConnection

__all__ = [
    "RETRYABLE",
    "Backoff",
    "LeanConnection",
    "LoopResources",
    "Script",
    "SyncBridge",
    "raise_if_cancelling",
    "retrying",
]

T = TypeVar("T")

RETRYABLE: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    OSError,
)


STOP_TIMEOUT = 5.0
PLAIN_KINDS = frozenset({"url", "params"})


class Backoff:
    """Exponential backoff with full jitter: sleeps in ``[0, min(cap, base * 2**n)]``."""

    def __init__(self, base: float = 0.05, cap: float = 2.0) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0

    def reset(self) -> None:
        self.attempt = 0

    async def wait(self) -> None:
        ceiling = min(self.cap, self.base * (2**self.attempt))
        self.attempt += 1
        await asyncio.sleep(random.uniform(ceiling / 2, ceiling))


async def retrying(operation: Callable[[], Awaitable[T]], give_up_after: float) -> T:
    """Run ``operation`` until it succeeds, retrying connection errors for ``give_up_after`` s."""
    try:
        return await operation()  # the common case: no clock, no backoff object
    except RETRYABLE:
        pass
    loop = asyncio.get_running_loop()
    deadline = loop.time() + give_up_after
    backoff = Backoff()
    while True:
        await backoff.wait()
        try:
            return await operation()
        except RETRYABLE:
            if loop.time() >= deadline:
                raise


def raise_if_cancelling() -> None:
    """Re-raise a cancellation that a library swallowed.

    Cancelling a task blocked in redis-py can land inside its read-timeout handling and come
    back as a plain timeout (``None``); a reader loop that carried on would make
    ``asyncio.run()`` wait for it forever. ``Task.cancelling()`` still remembers the request."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class Script:
    """A Lua script called by SHA1, loaded on the server the first time it is missing."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(
        self, client: AnyRedis, keys: Sequence[str], args: Sequence[str | bytes | int]
    ) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(self.source, len(keys), *keys, *args)

    async def run_lean(
        self, lean: LeanConnection, keys: Sequence[str], args: Sequence[str | bytes | int]
    ) -> Any:
        """The same call on a :class:`LeanConnection` (the hot send path)."""
        arguments = [str(len(keys)), *keys, *(_argument(arg) for arg in args)]
        try:
            return await lean.call("EVALSHA", self.sha, *arguments)
        except ResponseError as error:
            if not str(error).startswith("NOSCRIPT"):
                raise
            return await lean.call("EVAL", self.source, *arguments)


def _argument(value: str | bytes | int) -> str | bytes:
    return str(value) if isinstance(value, int) else value


class LeanConnection:
    """One :class:`~.wire.RespConnection` of a loop to a plain Redis server, opened on first
    use and again after it broke, with coalesced writes: the commands every sender of the loop
    issues in one turn reach Redis in one syscall, and a reply costs no redis-py layers (pool
    checkout, command packing, per-line reads). Errors are redis-py's (``ConnectionError`` when
    the connection is lost, ``ResponseError`` for a refusal), so callers retry as before.

    A :class:`~.blocking.BlockingPopper` may share the connection (:attr:`blocked` counts its
    pops in flight); meanwhile commands go to a spare connection rather than queue behind."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self.blocked = 0
        self._spare: LeanConnection | None = None
        self._connection: RespConnection | None = None
        self._lock = asyncio.Lock()
        self._timeout: float | None = client.connection_pool.connection_kwargs.get("socket_timeout")

    async def call(self, *command: str | bytes) -> Any:
        if self.blocked:
            if self._spare is None:
                self._spare = LeanConnection(self.client)
            return await self._spare.call(*command)
        connection = self._connection
        if connection is None or not connection.is_open:
            connection = await self.connection()
        reply = connection.call(*command)
        if self._timeout is None:
            return await reply
        try:
            async with asyncio.timeout(self._timeout):
                return await reply
        except TimeoutError:
            connection.abort()  # no answer in time: this connection cannot be trusted
            raise RedisTimeoutError("Redis did not answer in time") from None

    async def connection(self) -> RespConnection:
        """The open connection (opened now if there is none or it broke)."""
        connection = self._connection
        if connection is not None and connection.is_open:
            return connection
        async with self._lock:
            connection = self._connection
            if connection is None or not connection.is_open:
                connection = await RespConnection.open(self.client)
                connection.coalesce = True
                self._connection = connection
            return connection

    async def aclose(self) -> None:
        spare, self._spare = self._spare, None
        if spare is not None:
            await spare.aclose()
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(*RETRYABLE):
                await connection.close()


async def _close_when_loop_ends(resources: LoopResources) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await resources.aclose()


class LoopResources:
    """The clients (one per host) and background tasks of one layer in one event loop."""

    def __init__(self, hosts: Sequence[HostSpec], loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._hosts = hosts
        self._clients: dict[int, AnyRedis] = {}
        self._lean: dict[int, LeanConnection | None] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.closed = False
        self._guard: AsyncGenerator[None, None] | None = None

    async def start(self) -> None:
        """Park the guard generator so the loop's shutdown closes these resources."""
        self._guard = _close_when_loop_ends(self)
        await self._guard.__anext__()

    def client(self, index: int, spec: HostSpec | None = None) -> AnyRedis:
        """The client of host ``index`` (or of ``spec``, cached under ``index``)."""
        client = self._clients.get(index)
        if client is None:
            client = self._clients[index] = (spec or self._hosts[index]).make_client()
        return client

    def lean(self, index: int) -> LeanConnection | None:
        """The lean connection of host ``index`` when it is a plain server (``None`` for a
        Sentinel-managed master or a cluster: their clients handle failover and redirects)."""
        lean = self._lean.get(index)
        if lean is None and index not in self._lean:
            spec = self._hosts[index]
            client = self.client(index)
            if spec.kind in PLAIN_KINDS and isinstance(client, aioredis.Redis):
                lean = LeanConnection(client)
            self._lean[index] = lean
        return lean

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = self.loop.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def before_close(self) -> None:
        """Hook: runs after the background tasks stopped, before the clients close."""

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        current = asyncio.current_task()
        tasks = [task for task in self.tasks if task is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            # redis-py may swallow a cancellation that lands while it connects; the readers
            # then notice ``closed`` when their blocking call returns (bounded by its timeout).
            await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
        try:
            await self.before_close()
        finally:
            leans, self._lean = [lean for lean in self._lean.values() if lean], {}
            for lean in leans:
                await lean.aclose()
            clients, self._clients = list(self._clients.values()), {}
            for client in clients:
                await client.aclose()


class SyncBridge:
    """One private event loop in a daemon thread, for calls made from asgiref's throwaway loops."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @staticmethod
    def should_offload() -> bool:
        """True inside a loop that ``async_to_sync`` created for this one call."""
        return asyncio.get_running_loop() in AsyncToSync.loop_thread_executors

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="headrace-redis-sync", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    async def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._ensure_loop())
        return await asyncio.wrap_future(future)

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coroutine`` on the bridge loop from plain synchronous code."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self._ensure_loop())
        return future.result(timeout)

    def stop(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()
