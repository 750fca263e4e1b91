"""One broker connection that keeps itself up: failover over the URLs, capped backoff.

:class:`Link` owns an ``aiormq`` connection and three AMQP channels on it: ``publisher``
(publisher confirms on: capacity refusals come back as ``basic.nack``), ``control``
(declarations and bindings; a channel error there, such as binding a queue that is gone, only
reopens that channel) and ``consumer`` (the process queue's consumer and the worker-channel
consumers, with ``basic.qos(prefetch)``). A background task connects to the first URL that
answers, in list order, runs the owner's ``on_connected`` (which declares the layer's queues,
exchanges and bindings again), then waits for the connection to close. When it closes (broker
restart, network loss, a channel error on the publisher or consumer channel) the link bumps
its ``generation`` (delivery tags of the old connection are void), tells the owner, and
reconnects with exponential backoff and jitter, capped at :data:`BACKOFF_CAP` seconds, for as
long as the layer lives. Callers wait for :meth:`Link.ready` for ``connect_timeout`` seconds
and then get :class:`RabbitMQUnavailable`, a ``ConnectionError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import aiormq
import aiormq.abc

from headrace.exceptions import ChannelLayerError

__all__ = [
    "BACKOFF_CAP",
    "CHANNEL_ERRORS",
    "CONNECT_ERRORS",
    "RETRYABLE",
    "Link",
    "RabbitMQUnavailable",
]

logger = logging.getLogger("headrace.layers.rabbitmq")

BACKOFF_BASE = 0.1
BACKOFF_CAP = 5.0
CONNECT_ATTEMPT_TIMEOUT = 5.0
SETUP_TIMEOUT = 20.0
"""A connect plus re-declaration that takes longer is abandoned and tried again (a broker
still recovering its queues after a crash can leave a declaration unanswered)."""

RETRYABLE: tuple[type[BaseException], ...] = (
    aiormq.AMQPConnectionError,
    aiormq.ChannelInvalidStateError,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
)
"""Errors that mean "the connection is (being) lost", never "the request was wrong"."""

CONNECT_ERRORS: tuple[type[BaseException], ...] = (*RETRYABLE, aiormq.AMQPError)
CHANNEL_ERRORS: tuple[type[BaseException], ...] = (*RETRYABLE, aiormq.ChannelClosed)


class RabbitMQUnavailable(ChannelLayerError, ConnectionError):
    """No broker connection: the layer is reconnecting (the call was not carried out, or, for
    a send whose confirmation was lost with the connection, maybe carried out once)."""


Channel = aiormq.abc.AbstractChannel


class Link:
    """A self-healing connection to the first reachable broker of ``urls``."""

    def __init__(
        self,
        urls: tuple[str, ...],
        ssl_context: ssl.SSLContext | None,
        prefetch: int,
        on_connected: Callable[[Link], Awaitable[None]],
        on_lost: Callable[[], None],
        on_ready: Callable[[], None],
    ) -> None:
        self.urls = urls
        self.ssl_context = ssl_context
        self.prefetch = prefetch
        self.on_connected = on_connected
        self.on_lost = on_lost
        self.on_ready = on_ready
        self.generation = 0
        self.connection: aiormq.abc.AbstractConnection | None = None
        self._publisher: Channel | None = None
        self._control: Channel | None = None
        self._consumer: Channel | None = None
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.closed = False
        self.last_error: BaseException | None = None
        self.connected_url: str | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def ready(self, patience: float) -> None:
        """Wait until connected; raise :class:`RabbitMQUnavailable` after ``patience`` s."""
        if self._ready.is_set():
            return
        if self.closed:
            raise RabbitMQUnavailable("the RabbitMQ layer is closed")
        try:
            await asyncio.wait_for(self._ready.wait(), patience)
        except TimeoutError:
            raise RabbitMQUnavailable(
                f"no RabbitMQ broker reachable at {', '.join(_safe(url) for url in self.urls)} "
                f"within {patience:g} s (last error: {self.last_error!r}); still retrying"
            ) from None

    @property
    def is_ready(self) -> bool:
        return self._ready.is_set()

    async def _run(self) -> None:
        attempt = 0
        while not self.closed:
            try:
                await asyncio.wait_for(self._connect_and_declare(), SETUP_TIMEOUT)
            except Exception as exc:  # a broker error, or any failure: never stop healing
                self.last_error = exc
                if not isinstance(exc, CONNECT_ERRORS):
                    logger.exception("setting up the RabbitMQ connection failed")
                await self._drop_connection()
                ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)
                attempt += 1
                logger.warning("RabbitMQ connection failed (%r); retrying", exc)
                await asyncio.sleep(random.uniform(ceiling / 2, ceiling))
                continue
            attempt = 0
            self._ready.set()
            self.on_ready()  # at once: nothing can slip between "ready" and this
            connection = self.connection
            assert connection is not None
            with contextlib.suppress(Exception):
                await connection.closing
            if self.closed:
                return
            self._lost(connection)

    def _lost(self, connection: aiormq.abc.AbstractConnection) -> None:
        self._ready.clear()
        self.generation += 1
        self.last_error = _close_reason(connection)
        logger.warning("RabbitMQ connection lost (%r); reconnecting", self.last_error)
        self._publisher = self._control = self._consumer = None
        self.connection = None
        self.on_lost()

    async def _connect_and_declare(self) -> None:
        await self._connect_any()
        await self.on_connected(self)

    async def _connect_any(self) -> None:
        """Connect to the first URL that answers, in order (cluster failover)."""
        errors: list[str] = []
        for url in self.urls:
            try:
                connection = await asyncio.wait_for(
                    aiormq.connect(url, context=self.ssl_context), CONNECT_ATTEMPT_TIMEOUT
                )
            except CONNECT_ERRORS as exc:
                errors.append(f"{_safe(url)}: {exc!r}")
                continue
            self.connection = connection
            self.connected_url = url
            self._publisher = await connection.channel(publisher_confirms=True)
            self._control = await connection.channel(publisher_confirms=False)
            consumer = await connection.channel(publisher_confirms=False)
            await consumer.basic_qos(prefetch_count=self.prefetch)
            self._consumer = consumer
            return
        raise ConnectionError("; ".join(errors))

    async def _drop_connection(self) -> None:
        connection, self.connection = self.connection, None
        self._publisher = self._control = self._consumer = None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    async def close(self) -> None:
        """Stop reconnecting and close the connection (the broker requeues unacked messages)."""
        self.closed = True
        self._ready.clear()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        await self._drop_connection()

    # ------------------------------------------------------------------ channels

    @property
    def publisher(self) -> Channel:
        channel = self._publisher
        if channel is None or channel.is_closed:
            self._fail_connection()
            raise RabbitMQUnavailable("the RabbitMQ connection is being re-established")
        return channel

    @property
    def consumer(self) -> Channel:
        channel = self._consumer
        if channel is None or channel.is_closed:
            self._fail_connection()
            raise RabbitMQUnavailable("the RabbitMQ connection is being re-established")
        return channel

    async def control(self) -> Channel:
        """The declaration channel, reopened if a channel error closed it."""
        channel = self._control
        if channel is not None and not channel.is_closed:
            return channel
        connection = self.connection
        if connection is None or connection.is_closed:
            raise RabbitMQUnavailable("the RabbitMQ connection is being re-established")
        self._control = channel = await connection.channel(publisher_confirms=False)
        return channel

    def _fail_connection(self) -> None:
        """A publisher or consumer channel died under a live connection: start over (the
        reconnect re-declares everything), so no consumer is silently left dead."""
        connection = self.connection
        if connection is not None and not connection.is_closed:
            asyncio.get_running_loop().create_task(connection.close())

    async def call(self, operation: Callable[[Channel], Awaitable[Any]]) -> Any:
        """Run ``operation`` (an idempotent declaration) on the control channel.

        A channel error (the broker closes the channel) is raised after the channel is
        reopened for the next call. aiormq also closes a channel when one of its calls is
        cancelled (a caller that gave up); a call that finds the channel closed that way,
        with the connection alive, runs again once on a fresh channel."""
        channel = await self.control()
        try:
            return await operation(channel)
        except aiormq.ChannelClosed:
            with contextlib.suppress(Exception):
                await self.control()
            raise
        except aiormq.ChannelInvalidStateError:
            connection = self.connection
            if connection is None or connection.is_closed:
                raise
            if self._control is channel:
                self._control = None
        return await operation(await self.control())


def _close_reason(connection: aiormq.abc.AbstractConnection) -> BaseException | None:
    closing = connection.closing
    if closing.done() and not closing.cancelled():
        return closing.exception()
    return None


def _safe(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    scheme, _, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return url
    user = credentials.partition(":")[0]
    return f"{scheme}://{user}:***@{host}"
