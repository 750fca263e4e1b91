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
import hashlib
import random
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

from asgiref.sync import AsyncToSync
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from headrace.layers.redis.hosts import AnyRedis, HostSpec

__all__ = [
    "RETRYABLE",
    "Backoff",
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
