"""The Channels-1 worker: 1.x consumers, one call per message, in a pool of threads.

Theory of operation
-------------------
:class:`RoutingWorker` is the shared dispatch loop of :class:`headrace.worker.ChannelWorker`
(one listener task per channel, receiving from the **async** backend under the layer's
Channels-1 view, so normal channels such as ``websocket.receive`` are shared fairly by every
worker process) with 1.x dispatch: each message becomes a :class:`~headrace.message.Message`,
the layer's :class:`~headrace.routing.Router` picks ``(consumer, kwargs)``, and
``consumer(message, **kwargs)`` runs in one of ``threads`` consumer threads inside
:func:`~headrace.channel.recorded_sends`: its sends (unless ``immediately=True``) are
recorded, and once it returns (or raises, as in 1.x) the worker's loop performs them in order,
awaiting the async backend directly. So a message costs two thread hand-offs (to the consumer
thread and back), not four (sending from the consumer thread would go through the Channels-1
view's own loop and back). An ``http.request`` that no route claims goes to the Django view
consumer (:class:`headrace.handler.ViewConsumer`), and ``http.request`` is always listened on,
as Channels 1.x added its default route; likewise a ``websocket.connect`` that no route claims
is accepted, and listened on whenever the routing names a WebSocket channel.

*At most one message per thread leaves the layer.* A listener receives only while a consumer
thread is free; once every thread has been busy for :data:`WITHDRAW_AFTER` (2 ms), the
receives still waiting are cancelled (no backend loses a message to a cancelled receive) and
re-armed when a thread frees up. So the messages this process holds are the ones being
consumed — a worker killed mid-message loses that message only, the rest stay queued for the
next worker. (A message handed to a listener in those 2 ms, or in the same instant as
another, waits for a thread in this process.) The grace exists because most consumers take
less: cancelling and re-arming every listener for each message cost more CPU than the
message itself.

*Around each consumer*, as Django does around a request: ``close_old_connections()`` before
and after, so a worker thread never reuses a broken or expired database connection. A
consumer that raises is logged with its traceback and the worker goes on; ``DenyConnection``
from a ``websocket.connect`` consumer closes the handshake (403), as in 1.x. Async consumers
(coroutine functions) are run to completion in the consumer thread. A consumer that raises
``ConsumeLater`` has its held sends discarded and its message sent back to the end of its
channel with ``__retries__`` counted up; past :attr:`RoutingWorker.max_retries` it is dropped
with a warning, so a message that can never run cannot spin forever.

*Stopping.* SIGTERM/SIGINT cancel the listeners, then :meth:`RoutingWorker.shutdown` waits for
the consumers in flight (and any message taken in the cancelling instant) to finish; the
process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import inspect
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from headrace._types import Message as ASGIMessage
from headrace.asgi import backend_name
from headrace.channel import HeldSends, raise_first_failed_send, recorded_sends
from headrace.exceptions import ConsumeLater, DenyConnection
from headrace.message import Message
from headrace.utils import name_that_thing
from headrace.worker import ChannelWorker

if TYPE_CHECKING:
    from headrace.asgi import AsgiChannelLayer
    from headrace.routing import Router

__all__ = [
    "MAX_RETRIES",
    "ConsumerThreads",
    "RoutingWorker",
    "WorkerThread",
    "requeue",
    "select_channels",
]

logger = logging.getLogger("headrace.worker")

T = TypeVar("T")
LayerMessage = dict[str, Any]
Consumer = Callable[..., Any]

HTTP_REQUEST = "http.request"
WEBSOCKET_CONNECT = "websocket.connect"


def default_channels(routed: Iterable[str]) -> set[str]:
    """What a worker listens on: the routed channels, ``http.request`` (the Django views) and,
    when any WebSocket channel is routed, ``websocket.connect`` (accepted when unrouted)."""
    names = set(routed) | {HTTP_REQUEST}
    if any(name.startswith("websocket.") for name in names):
        names.add(WEBSOCKET_CONNECT)
    return names


def accept_connection(message: Message) -> None:
    """The consumer of a ``websocket.connect`` no route claims: accept, as Channels 1.x did."""
    if message.reply_channel is not None:
        message.reply_channel.send({"accept": True})


WITHDRAW_AFTER = 0.002
"""Seconds every consumer thread may be busy before the waiting receives are given up: most
consumers finish sooner, and re-arming every listener per message would cost more than the
message (see the module docs)."""


def select_channels(
    channels: Iterable[str],
    only_channels: Sequence[str] = (),
    exclude_channels: Sequence[str] = (),
) -> list[str]:
    """``channels`` kept by the ``--only-channels`` globs (any; all when none are given) and
    not matched by an ``--exclude-channels`` glob, sorted."""
    selected = []
    for channel in sorted(set(channels)):
        if only_channels and not any(fnmatch.fnmatchcase(channel, p) for p in only_channels):
            continue
        if any(fnmatch.fnmatchcase(channel, pattern) for pattern in exclude_channels):
            continue
        selected.append(channel)
    return selected


MAX_RETRIES = 10


def requeue(
    layer: AsgiChannelLayer, channel: str, content: LayerMessage, max_retries: int = MAX_RETRIES
) -> bool:
    """Send a message back to the end of ``channel`` after ``ConsumeLater``, counting
    ``__retries__``; past ``max_retries`` it is dropped with a warning (returns False)."""
    retries = int(content.get("__retries__", 0)) + 1
    if retries > max_retries:
        logger.warning(
            "Dropped a message on %r: its consumer asked to consume it later %d times",
            channel,
            max_retries,
        )
        return False
    layer.send(channel, {**content, "__retries__": retries})
    return True


def consumer_name(consumer: Any) -> str:
    """A readable dotted name for a consumer in log lines."""
    return name_that_thing(consumer)


def close_old_connections() -> None:
    """Django's per-request database clean-up, when Django is configured."""
    try:
        from django.conf import settings

        if not settings.configured:
            return
        from django.db import close_old_connections as close
    except ImportError:
        return
    close()


def _has_result(future: asyncio.Future[Any]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


def _stopping() -> bool:
    """Whether the current task is being cancelled (the worker is stopping)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class RoutingWorker(ChannelWorker):
    """Runs the Channels-1 consumers of ``router`` for the messages of ``channel_layer`` (the
    Channels-1 view). ``channels`` defaults to every channel the router names plus
    ``http.request``, filtered by ``only_channels`` / ``exclude_channels`` globs."""

    max_retries = MAX_RETRIES
    """How often one message may be put back by ``ConsumeLater`` before it is dropped."""

    def __init__(
        self,
        channel_layer: AsgiChannelLayer,
        router: Router,
        *,
        channels: Iterable[str] | None = None,
        only_channels: Sequence[str] = (),
        exclude_channels: Sequence[str] = (),
        threads: int = 1,
        view_consumer: Consumer | None = None,
    ) -> None:
        if threads < 1:
            raise ValueError(f"A worker needs at least one consumer thread, not {threads}")
        names = default_channels(router.channels) if channels is None else set(channels)
        self.asgi_names = select_channels(names, only_channels, exclude_channels)
        if not self.asgi_names:
            raise ValueError(
                f"No channels left to listen on: the routing names {sorted(names)}, "
                f"--only-channels {list(only_channels)}, --exclude-channels "
                f"{list(exclude_channels)}"
            )
        self._asgi_name_of = {backend_name(name): name for name in self.asgi_names}
        super().__init__(self._asgi_name_of, channel_layer.backend)
        self.asgi_layer = channel_layer
        self.router = router
        self.threads = threads
        self._view_consumer = view_consumer
        self._pool: ConsumerThreads | None = None
        self._free = threads
        self._room: asyncio.Event | None = None
        self._receiving: set[asyncio.Future[Any]] = set()
        self._withdrawal: asyncio.TimerHandle | None = None
        self.in_flight: set[asyncio.Future[None]] = set()

    # ------------------------------------------------------------------ the loop's hooks

    async def handle(self) -> None:
        self._room = asyncio.Event()
        self._room.set()
        self._pool = ConsumerThreads(self.threads, asyncio.get_running_loop())
        logger.info(
            "Listening on %s with %d consumer thread(s)", ", ".join(self.asgi_names), self.threads
        )
        try:
            await super().handle()
        finally:
            self._pool.join()  # nothing is in flight any more: shutdown() waited for it

    async def next_message(self, channel: str) -> ASGIMessage | None:
        """Receive while a consumer thread is free; give the receive up when none is (the
        thread that took the last free one cancels the receives still waiting)."""
        assert self._room is not None
        await self._room.wait()
        receive = asyncio.ensure_future(self.channel_layer.receive(channel))
        self._receiving.add(receive)
        try:
            message = await receive
        except asyncio.CancelledError:
            if not _stopping():
                return None  # no thread is free: receive again once one is
            if _has_result(receive):
                self._start(channel, receive.result())  # stopping: finish it, never drop it
            raise
        finally:
            self._receiving.discard(receive)
        if _stopping():  # told to stop as the receive handed over a message: finish it
            self._start(channel, message)
            raise asyncio.CancelledError
        return message

    async def dispatch(self, channel: str, message: ASGIMessage) -> None:
        self._start(channel, dict(message))

    async def shutdown(self) -> None:
        """Let every consumer in flight finish."""
        if self.in_flight:
            logger.info("Waiting for %d consumer(s) in flight", len(self.in_flight))
            await asyncio.gather(*self.in_flight, return_exceptions=True)

    # ------------------------------------------------------------------ thread slots

    def _start(self, channel: str, content: LayerMessage) -> None:
        self._take_thread()
        future = asyncio.ensure_future(self._run(self._asgi_name_of.get(channel, channel), content))
        self.in_flight.add(future)
        future.add_done_callback(self._consumer_done)

    async def _run(self, channel: str, content: LayerMessage) -> None:
        """Consume in a consumer thread, then perform its held sends from this loop."""
        assert self._pool is not None
        held = await self._pool.run(self.consume, channel, content)
        if held:
            await self._send_held(channel, held)

    @staticmethod
    async def _send_held(channel: str, held: HeldSends) -> None:
        try:
            raise_first_failed_send(await held.send_all_async())
        except Exception:
            logger.exception("Error sending what the consumer of a message on %r sent", channel)

    def _take_thread(self) -> None:
        assert self._room is not None
        self._free -= 1
        if self._free <= 0:
            self._room.clear()
            if self._withdrawal is None:
                loop = asyncio.get_running_loop()
                self._withdrawal = loop.call_later(WITHDRAW_AFTER, self._withdraw_receives)

    def _withdraw_receives(self) -> None:
        """Every thread has been busy for WITHDRAW_AFTER: give the waiting receives up."""
        self._withdrawal = None
        for receive in self._receiving:
            receive.cancel()

    def _consumer_done(self, future: asyncio.Future[None]) -> None:
        assert self._room is not None
        self.in_flight.discard(future)
        if not future.cancelled() and future.exception() is not None:
            logger.error("Consumer thread failed", exc_info=future.exception())
        self._free += 1
        if self._free > 0:
            if self._withdrawal is not None:
                self._withdrawal.cancel()
                self._withdrawal = None
            self._room.set()

    # ------------------------------------------------------------------ in a consumer thread

    def consume(self, channel: str, content: LayerMessage) -> HeldSends | None:
        """Route one message and run its consumer (called in a consumer thread); returns the
        sends it made, for the loop to perform (they go out also when it raised, as in 1.x)."""
        close_old_connections()
        try:
            return self._consume(channel, content)
        finally:
            close_old_connections()

    def _consume(self, channel: str, content: LayerMessage) -> HeldSends | None:
        try:
            message = Message(content, channel, self.asgi_layer)
        except TypeError as exc:
            logger.error("Dropped a bad message on %r: %s", channel, exc)
            return None
        match = self.route(message)
        if match is None:
            logger.warning("No route for a message on %r (path %r)", channel, content.get("path"))
            return None
        consumer, kwargs = match
        logger.debug("Dispatching a message on %r to %s", channel, consumer_name(consumer))
        with recorded_sends() as held:
            try:
                self.call_consumer(consumer, message, kwargs)
            except ConsumeLater:
                held.discard()
                self.consume_later(channel, content)
            except DenyConnection:
                self._deny(message)
            except Exception:
                logger.exception(
                    "Error processing a message on %r with consumer %s",
                    channel,
                    consumer_name(consumer),
                )
        return held

    def consume_later(self, channel: str, content: LayerMessage) -> None:
        """Put a message whose consumer raised ``ConsumeLater`` back on its channel."""
        requeue(self.asgi_layer, channel, content, self.max_retries)

    def route(self, message: Message) -> tuple[Consumer, dict[str, Any]] | None:
        """The router's match; an unrouted ``http.request`` goes to the view consumer, an
        unrouted ``websocket.connect`` is accepted (Channels 1.x did both)."""
        try:
            match = self.router.match(message)
        except Exception:
            logger.exception("Routing failed for a message on %r", message.channel.name)
            return None
        if match is None and message.channel.name == HTTP_REQUEST:
            return self.view_consumer, {}
        if match is None and message.channel.name == WEBSOCKET_CONNECT:
            return accept_connection, {}
        return match

    @property
    def view_consumer(self) -> Consumer:
        """The Django view consumer, built on first use (it loads the project's middleware)."""
        if self._view_consumer is None:
            from headrace.handler import ViewConsumer

            self._view_consumer = ViewConsumer()
        return self._view_consumer

    @staticmethod
    def call_consumer(consumer: Consumer, message: Message, kwargs: dict[str, Any]) -> None:
        result = consumer(message, **kwargs)
        if inspect.isawaitable(result):
            from asgiref.sync import async_to_sync

            async def wait() -> None:
                await result

            async_to_sync(wait)()

    @staticmethod
    def _deny(message: Message) -> None:
        if message.reply_channel is None or message.channel.name != "websocket.connect":
            logger.warning("DenyConnection outside a websocket.connect consumer: ignored")
            return
        message.reply_channel.send({"close": True})  # after what it sent before, as in 1.x


class ConsumerThreads:
    """``count`` consumer threads serving one event loop. A call goes to the first idle
    thread through a ``queue.SimpleQueue`` (C) and its outcome comes back with one
    ``call_soon_threadsafe``: the least a hand-off to a thread and back can cost (an executor
    adds two locks, a semaphore and a chained concurrent future per call)."""

    def __init__(self, count: int, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._serve, name=f"headrace-consumer-{n}", daemon=True)
            for n in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def run(self, function: Callable[..., T], *arguments: Any) -> asyncio.Future[T]:
        """Call ``function(*arguments)`` in a consumer thread; the future gets its outcome."""
        future: asyncio.Future[T] = self._loop.create_future()
        self._jobs.put((future, function, arguments))
        return future

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, function, arguments = job
            error: BaseException | None = None
            result: Any = None
            try:
                result = function(*arguments)
            except BaseException as exc:  # handed to the loop, which decides
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop closed under a daemon thread
                self._loop.call_soon_threadsafe(_settle, future, result, error)

    def join(self) -> None:
        """Stop every thread once the calls already queued are done, and wait for them."""
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()


_Job = tuple["asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class WorkerThread(threading.Thread):
    """A :class:`RoutingWorker` on its own event loop in a daemon thread (``runserver``'s
    in-process workers). :meth:`stop` ends it as SIGTERM would: consumers in flight finish."""

    def __init__(self, worker: RoutingWorker) -> None:
        super().__init__(name="headrace-routing-worker", daemon=True)
        self.worker = worker
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = threading.Event()

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.ensure_future(self.worker.handle())
        self._started.set()
        try:
            await self._task
        except asyncio.CancelledError:
            logger.info("Worker thread stopped")
        except Exception:
            logger.exception("The worker thread failed")

    def stop(self, timeout: float = 30.0) -> None:
        """Cancel the listeners, let the consumers in flight finish, wait for the thread."""
        if not self.is_alive():
            return
        self._started.wait(timeout)
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(task.cancel)
        self.join(timeout)
