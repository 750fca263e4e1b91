"""The Channels-1 worker: 1.x consumers, one call per message, threads that own their loops.

Theory of operation
-------------------
:class:`RoutingWorker` runs ``threads`` :class:`ConsumerLoop` threads. Each one owns an event
loop (uvloop when installed) that it drives itself, one step at a time::

    receive one message   loop.run_until_complete(receive_first(...))
    consume it            consumer(message, **kwargs), with NO loop running in this thread
    send what it sent     loop.run_until_complete(held sends)

So a message costs no thread hand-off at all, and the consumer runs where synchronous code is
welcome (Django's ORM refuses to run inside a running loop). ``receive_first``
(:mod:`headrace.asgi`) takes one message from any of the worker's channels of the **async**
backend under the layer's Channels-1 view; the Redis layer does it with ONE blocking pop over
every channel's list and the IPC layer with ONE request parked at its hub (``receive_any``),
other backends race one receive per channel and keep a straggler's message in the thread's
stash. Normal channels such as ``websocket.receive`` are shared fairly by every worker process.
Each message becomes a :class:`~headrace.message.Message`, the layer's
:class:`~headrace.routing.Router` picks ``(consumer, kwargs)``, and
``consumer(message, **kwargs)`` runs inside
:func:`~headrace.channel.recorded_sends`: its sends (unless ``immediately=True``) are recorded,
and once it returns (or raises, as in 1.x) the thread's loop performs them in order, awaiting
the async backend directly. An ``http.request`` that no route claims goes to the Django view
consumer (:class:`headrace.handler.ViewConsumer`), and ``http.request`` is always listened on,
as Channels 1.x added its default route; likewise a ``websocket.connect`` that no route claims
is accepted, and listened on whenever the routing names a WebSocket channel.

*At most one message per thread leaves the layer.* A thread receives only when it is free, and
a receive takes one message, so the messages this process holds are the ones being consumed (and,
on a backend without ``receive_any``, one a racing receive took in the same instant, which the
thread consumes next) — a worker killed mid-message loses that message only; the rest stay
queued for the next worker.

*Around each consumer*, as Django does around a request: ``close_old_connections()`` before
and after, so a worker thread never reuses a broken or expired database connection. A
consumer that raises is logged with its traceback and the worker goes on; ``DenyConnection``
from a ``websocket.connect`` consumer closes the handshake (403), as in 1.x. Async consumers
(coroutine functions) are run to completion in the consumer thread. A consumer that raises
``ConsumeLater`` has its held sends discarded and its message sent back to the end of its
channel with ``__retries__`` counted up; past :attr:`RoutingWorker.max_retries` it is dropped
with a warning, so a message that can never run cannot spin forever.

*Stopping.* SIGTERM/SIGINT (or :meth:`WorkerThread.stop`) cancel the main task; it tells every
consumer thread to stop: a thread waiting for a message has its receive cancelled (no backend
loses a message to a cancelled receive; one that arrived in that instant is consumed first), a
busy one finishes its consumer and its sends. Each thread then gives its stash back and closes
its loop (the backends release that loop's connections), and the process exits 0. A receive
that fails with an error of the layer itself ends the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import inspect
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from headrace._types import Message as ASGIMessage
from headrace.asgi import Stash, backend_name, finish_loop, receive_first
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
    "ConsumerLoop",
    "RoutingWorker",
    "WorkerThread",
    "requeue",
    "select_channels",
]

logger = logging.getLogger("headrace.worker")

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
        self._names = {name: backend_name(name) for name in self.asgi_names}
        self.consumer_loops: list[ConsumerLoop] = []

    # ------------------------------------------------------------------ the main task

    async def handle(self) -> None:
        """Run the consumer threads until cancelled (SIGTERM) or until a receive fails;
        then stop them, letting consumers in flight finish."""
        loop = asyncio.get_running_loop()
        failed: asyncio.Future[None] = loop.create_future()

        def fail(error: BaseException) -> None:
            if not failed.done():
                failed.set_exception(error)

        def on_failure(error: BaseException) -> None:
            with contextlib.suppress(RuntimeError):  # the main loop is gone already
                loop.call_soon_threadsafe(fail, error)

        self.consumer_loops = [ConsumerLoop(self, n, on_failure) for n in range(self.threads)]
        for consumer_loop in self.consumer_loops:
            consumer_loop.start()
        logger.info(
            "Listening on %s with %d consumer thread(s)", ", ".join(self.asgi_names), self.threads
        )
        try:
            await failed
        finally:
            await self.shutdown()

    async def dispatch(self, channel: str, message: ASGIMessage) -> None:
        """Consume one message in a thread of its own and perform what it sent (for callers
        of the shared worker API; the consumer threads call :meth:`consume` themselves)."""
        name = self._asgi_name_of.get(channel, channel)
        held = await asyncio.to_thread(self.consume, name, dict(message))
        if held:
            await self.send_held(name, held)

    async def shutdown(self) -> None:
        """Stop every consumer thread; consumers in flight finish first."""
        busy = sum(1 for consumer_loop in self.consumer_loops if consumer_loop.busy)
        if busy:
            logger.info("Waiting for %d consumer(s) in flight", busy)
        for consumer_loop in self.consumer_loops:
            consumer_loop.stop()
        for consumer_loop in self.consumer_loops:
            await asyncio.to_thread(consumer_loop.join)

    async def receive(self, stash: Stash) -> tuple[str, LayerMessage] | tuple[None, None]:
        """The next message on any of the worker's channels (on the caller's loop)."""
        return await receive_first(self.channel_layer, self._names, None, stash)

    @staticmethod
    async def send_held(channel: str, held: HeldSends) -> None:
        try:
            raise_first_failed_send(await held.send_all_async())
        except Exception:
            logger.exception("Error sending what the consumer of a message on %r sent", channel)

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
        if logger.isEnabledFor(logging.DEBUG):
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


class ConsumerLoop(threading.Thread):
    """One consumer thread of ``worker`` driving its own event loop (see the module docs);
    ``on_failure`` is called (in this thread) with an error that ends it.

    A consumer's sends start as a task when it returns, and the thread goes on to its next
    receive in the same loop turn: over Redis the replies and the next ``BLPOP`` leave in one
    write on one connection (Redis runs them in that order). The next consumer's sends wait for
    the previous ones, and stopping waits for them too, so nothing is lost or reordered."""

    def __init__(
        self, worker: RoutingWorker, number: int, on_failure: Callable[[BaseException], None]
    ) -> None:
        super().__init__(name=f"headrace-consumer-{number}", daemon=True)
        self.worker = worker
        self.busy = False
        self._on_failure = on_failure
        self._stash = Stash()
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._receiving: asyncio.Task[Any] | None = None
        self._sending: asyncio.Task[None] | None = None

    def run(self) -> None:
        from headrace.server.server import loop_factory  # the server's loop choice

        loop = self._loop = loop_factory("auto")()
        try:
            while not self._stopping:
                channel, content = self._next_message(loop)
                if channel is None or content is None:
                    continue
                self.busy = True
                try:
                    self._consume(loop, channel, content)
                finally:
                    self.busy = False
        except BaseException as exc:
            logger.error("A consumer thread's receive failed", exc_info=exc)
            self._on_failure(exc)
        finally:
            with contextlib.suppress(Exception):
                self._finish_sending(loop)
                loop.run_until_complete(self._stash.give_back(self.worker.channel_layer))
            finish_loop(loop)

    def _next_message(
        self, loop: asyncio.AbstractEventLoop
    ) -> tuple[str, LayerMessage] | tuple[None, None]:
        task = self._receiving = loop.create_task(self.worker.receive(self._stash))
        try:
            received: tuple[str, LayerMessage] | tuple[None, None] = loop.run_until_complete(task)
            return received
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            return None, None
        finally:
            self._receiving = None

    def _consume(
        self, loop: asyncio.AbstractEventLoop, channel: str, content: LayerMessage
    ) -> None:
        """Run the consumer; start its sends, which go out with the next receive (see the
        class docs), after the previous message's sends are done (order across messages)."""
        held = self.worker.consume(channel, content)
        self._finish_sending(loop)
        if held:
            self._sending = loop.create_task(self.worker.send_held(channel, held))

    def _finish_sending(self, loop: asyncio.AbstractEventLoop) -> None:
        sending, self._sending = self._sending, None
        if sending is not None and not sending.done():
            loop.run_until_complete(sending)

    def stop(self) -> None:
        """Finish the message in hand, then end (a waiting receive is cancelled)."""
        self._stopping = True
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed already
                loop.call_soon_threadsafe(self._cancel_receive)

    def _cancel_receive(self) -> None:
        if self._receiving is not None:
            self._receiving.cancel()


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
