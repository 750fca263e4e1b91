"""The background workers' dispatch loop, and the modern worker that feeds an ASGI application.

Theory of operation
-------------------
:class:`ChannelWorker` is the loop both worker generations share: one listener task per
channel takes messages from the layer and hands each to :meth:`ChannelWorker.dispatch`; a
listener waits in :meth:`ChannelWorker.next_message` until the worker has room, so messages
the worker cannot start yet stay in the layer. SIGINT/SIGTERM (under :meth:`ChannelWorker.run`)
cancel the listeners — a cancelled ``receive`` never loses a message in any backend — and then
:meth:`ChannelWorker.shutdown` decides what happens to work in flight. A listener that fails
(an error of the layer itself) ends the worker. The Channels-1 worker
(:mod:`headrace.routing_worker`) is a subclass that runs 1.x consumers in threads.

A :class:`Worker` listens on each configured channel of a channel layer with its own task. For
every message it finds (or starts) one long-lived application instance per channel, called with
the scope ``{"type": "channel", "channel": <name>}`` — typically a ``ChannelNameRouter`` whose
consumers dispatch the messages by type — and puts the message on that instance's queue.

Back-pressure: an instance's queue holds at most ``queue_size`` messages. When the instance is
slower than its channel, the listener waits for room instead of draining the layer into
memory, so messages stay in the layer (where ``capacity`` and ``expiry`` apply and another
worker process may take them) rather than piling up unbounded in this process.

A message without a ``type`` is logged and skipped (Channels 4.3 stops the worker). An instance
that ends, by ``StopConsumer`` or by crashing, is replaced: its exception is logged, messages
already queued for it go to a fresh instance (unless it crashed before reading any, which would
loop), and later messages start one as needed; the worker keeps running. Errors of the layer
itself end the worker: they are not something a retry loop should hide.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import functools
import logging
import signal
from collections.abc import Iterable

from headrace._types import ASGIApp, Message, Scope, Send
from headrace.layers.base import BaseChannelLayer

__all__ = ["ChannelWorker", "Worker"]

logger = logging.getLogger("headrace.worker")


class ChannelWorker(abc.ABC):
    """Listens on ``channels`` of ``channel_layer`` and dispatches every message received.

    Subclasses implement :meth:`dispatch` (awaiting it is the back-pressure: the listener
    receives its next message only after it returns) and may override :meth:`next_message`
    and :meth:`shutdown`."""

    def __init__(self, channels: Iterable[str], channel_layer: BaseChannelLayer | None) -> None:
        if channel_layer is None:
            raise ValueError("Channel layer is not valid")
        self.channels = list(channels)
        if not self.channels:
            raise ValueError("Worker needs at least one channel name to listen on")
        for channel in self.channels:
            channel_layer.require_valid_channel_name(channel)
        self.channel_layer = channel_layer

    def run(self) -> None:
        """Run until SIGINT or SIGTERM (blocking); both stop the worker cleanly. The loop is
        uvloop when it is installed, as the server's is (a worker's cost is mostly loop turns)."""
        from headrace.server.server import loop_factory  # the server's choice, not a copy

        with (
            contextlib.suppress(KeyboardInterrupt),
            asyncio.Runner(loop_factory=loop_factory("auto")) as runner,
        ):
            runner.run(self._handle_until_signalled())

    async def _handle_until_signalled(self) -> None:
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()
        assert main is not None
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, main.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await self.handle()
        logger.info("Worker stopped")

    async def handle(self) -> None:
        """Listen on every channel until one listener fails; then :meth:`shutdown`."""
        listeners = [asyncio.ensure_future(self.listener(channel)) for channel in self.channels]
        try:
            done, _ = await asyncio.wait(listeners, return_when=asyncio.FIRST_EXCEPTION)
            for listener in done:
                listener.result()
        finally:
            for listener in listeners:
                listener.cancel()
            await asyncio.gather(*listeners, return_exceptions=True)
            await self.shutdown()

    async def listener(self, channel: str) -> None:
        """Receive from ``channel`` forever, dispatching each message."""
        while True:
            message = await self.next_message(channel)
            if message is not None:
                await self.dispatch(channel, message)

    async def next_message(self, channel: str) -> Message | None:
        """The next message on ``channel`` (``None``: nothing taken, ask again)."""
        return await self.channel_layer.receive(channel)

    @abc.abstractmethod
    async def dispatch(self, channel: str, message: Message) -> None:
        """Start the work for one message."""

    async def shutdown(self) -> None:  # noqa: B027  # optional hook: nothing to do by default
        """Deal with work in flight once the listeners have stopped (subclasses)."""


class _Instance:
    """One application instance: its input queue, its task and how many messages it read."""

    __slots__ = ("consumed", "queue", "task")

    def __init__(self, queue: asyncio.Queue[Message]) -> None:
        self.queue = queue
        self.consumed = 0
        self.task: asyncio.Task[None] | None = None

    async def receive(self) -> Message:
        message = await self.queue.get()
        self.consumed += 1
        return message


class Worker(ChannelWorker):
    """Runs ``application`` for messages arriving on ``channels`` of ``channel_layer``.

    ``max_applications`` is accepted for Channels compatibility; with one instance per channel
    the number of instances is bounded by the number of channels anyway. ``queue_size`` bounds
    the messages taken from the layer but not yet read by an instance, per channel."""

    queue_size: int = 16

    def __init__(
        self,
        application: ASGIApp,
        channels: Iterable[str],
        channel_layer: BaseChannelLayer | None,
        max_applications: int = 1000,
    ) -> None:
        super().__init__(channels, channel_layer)
        self.application = application
        self.max_applications = max_applications
        self.application_instances: dict[str, _Instance] = {}

    async def dispatch(self, channel: str, message: Message) -> None:
        """Queue ``message`` for the channel's instance (waiting while its queue is full)."""
        if not message.get("type"):
            logger.warning("Worker skipped a message without 'type' on %r: %r", channel, message)
            return
        queue = self.get_or_create_application_instance(
            channel, {"type": "channel", "channel": channel}
        )
        await queue.put(message)

    async def shutdown(self) -> None:
        await self.stop_instances()

    def get_or_create_application_instance(
        self, channel: str, scope: Scope
    ) -> asyncio.Queue[Message]:
        """The input queue of the live instance for ``channel``, starting one if needed."""
        instance = self.application_instances.get(channel)
        if instance is None:
            instance = self._start_instance(channel, scope, asyncio.Queue(self.queue_size))
        return instance.queue

    def _start_instance(
        self, channel: str, scope: Scope, queue: asyncio.Queue[Message]
    ) -> _Instance:
        instance = _Instance(queue)
        instance.task = asyncio.ensure_future(
            self.application(scope, instance.receive, self._no_send(channel))
        )
        instance.task.add_done_callback(
            functools.partial(self._instance_finished, channel, scope, instance)
        )
        self.application_instances[channel] = instance
        return instance

    def _instance_finished(
        self, channel: str, scope: Scope, instance: _Instance, task: asyncio.Task[None]
    ) -> None:
        """Log how the instance ended; hand messages it left unread to a fresh instance."""
        if self.application_instances.get(channel) is instance:
            del self.application_instances[channel]
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            logger.error("Application instance for channel %r failed", channel, exc_info=error)
        if instance.queue.empty():
            return
        if error is not None and instance.consumed == 0:
            dropped = _drain(instance.queue)  # also frees a listener waiting for room
            logger.error(
                "Dropping %d message(s) on %r: the application failed before reading any",
                dropped,
                channel,
            )
            return
        self._start_instance(channel, scope, instance.queue)

    @staticmethod
    def _no_send(channel: str) -> Send:
        async def send(message: Message) -> None:
            raise RuntimeError(
                f"A worker application (channel {channel!r}) has no client to send "
                f"{message.get('type')!r} to; send through the channel layer instead"
            )

        return send

    async def stop_instances(self) -> None:
        """Cancel every application instance and wait for them."""
        tasks = [
            instance.task
            for instance in self.application_instances.values()
            if instance.task is not None
        ]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.application_instances.clear()


def _drain(queue: asyncio.Queue[Message]) -> int:
    """Empty ``queue`` without waiting; return how many messages it held."""
    count = 0
    while not queue.empty():
        queue.get_nowait()
        count += 1
    return count
