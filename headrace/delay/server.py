"""The delay server loop: receive on ``asgi.delay``, store, send when due.

Theory of operation
-------------------
:class:`DelayServer` runs one async loop. It waits for a message on ``asgi.delay`` for at
most the time until the next stored message is due (never longer than ``sleep`` seconds, so
rows written by another process are seen too). A received message must be a dict with
``channel`` (a valid channel name), ``content`` (a dict) and ``delay`` (a non-negative int of
milliseconds); it is stored as a :class:`~headrace.delay.models.DelayedMessage` due at
now + delay. A malformed message is logged with the reason and skipped; the loop goes on
(Channels 1.x broke out of its loop, stopping the delay server).

Then every due row (oldest first, in batches of ``batch_size``) is sent with the layer's
``send`` and deleted. A destination that raises ``ChannelFull`` keeps its row, due again
``retry_ms`` (1 000) ms later. Rows are in the database, so messages survive a restart of
the delay process; what a restart can cost: a message received but not yet stored (one at
most), or a message sent but not yet deleted (sent again after the restart). Run one delay
server per database: two would both send the rows that fall due.

Database calls run in a thread (``database_sync_to_async``); SIGINT/SIGTERM stop the loop
between steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import signal
from typing import Any

from django.utils import timezone

from headrace.db import database_sync_to_async
from headrace.delay import DELAY_CHANNEL
from headrace.exceptions import ChannelFull
from headrace.layers import BaseChannelLayer

__all__ = ["DelayServer", "MalformedDelayMessage"]

logger = logging.getLogger("headrace.delay")


class MalformedDelayMessage(ValueError):
    """A message on ``asgi.delay`` that is not ``{"channel", "content", "delay"}``."""


class DelayServer:
    """``DelayServer(layer, sleep=1.0).run()`` serves ``asgi.delay`` until stopped."""

    batch_size = 100
    retry_ms = 1000

    def __init__(self, channel_layer: BaseChannelLayer, sleep: float = 1.0) -> None:
        if sleep <= 0:
            raise ValueError(f"sleep must be a positive number of seconds, not {sleep!r}")
        self.channel_layer = channel_layer
        self.sleep = sleep
        self.stopping = asyncio.Event()

    def run(self) -> None:
        """Serve until SIGINT/SIGTERM (blocking)."""
        asyncio.run(self.serve())

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, self.stopping.set)
        logger.info("Delay server listening on %s", DELAY_CHANNEL)
        while not self.stopping.is_set():
            await self.step()
        logger.info("Delay server stopped")

    async def step(self) -> None:
        """Wait for one message (bounded), store it, then send what is due."""
        message = await self._receive(await self._wait_seconds())
        if message is not None:
            await self.store(message)
        await self.send_due()

    async def _wait_seconds(self) -> float:
        next_due = await database_sync_to_async(_next_due)()
        if next_due is None:
            return self.sleep
        seconds: float = (next_due - timezone.now()).total_seconds()
        return max(0.0, min(self.sleep, seconds))

    async def _receive(self, within: float) -> dict[str, Any] | None:
        receive = asyncio.ensure_future(self.channel_layer.receive(DELAY_CHANNEL))
        stop = asyncio.ensure_future(self.stopping.wait())
        done, _ = await asyncio.wait(
            [receive, stop], timeout=within or 0.001, return_when=asyncio.FIRST_COMPLETED
        )
        stop.cancel()
        if receive in done:
            return receive.result()
        receive.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receive
        return None

    async def store(self, message: Any) -> None:
        """Store one ``asgi.delay`` message; log and skip it when malformed."""
        try:
            channel, content, delay = self.validate(message)
        except MalformedDelayMessage as error:
            logger.error("skipping malformed %s message: %s", DELAY_CHANNEL, error)
            return
        due = timezone.now() + datetime.timedelta(milliseconds=delay)
        try:
            await database_sync_to_async(_create)(channel, content, due)
        except TypeError as error:
            logger.error("skipping %s message for %r: %s", DELAY_CHANNEL, channel, error)

    def validate(self, message: Any) -> tuple[str, dict[str, Any], int]:
        if not isinstance(message, dict):
            raise MalformedDelayMessage(f"not a dict: {type(message).__name__}")
        missing = [key for key in ("channel", "content", "delay") if key not in message]
        if missing:
            raise MalformedDelayMessage(f"missing {', '.join(missing)}")
        channel, content, delay = message["channel"], message["content"], message["delay"]
        try:
            self.channel_layer.require_valid_channel_name(channel)
        except TypeError as error:
            raise MalformedDelayMessage(f"bad channel: {error}") from None
        if not isinstance(content, dict):
            raise MalformedDelayMessage(f"content is not a dict: {type(content).__name__}")
        if isinstance(delay, bool) or not isinstance(delay, int) or delay < 0:
            raise MalformedDelayMessage(f"delay is not a non-negative int of ms: {delay!r}")
        return channel, content, delay

    async def send_due(self) -> None:
        """Send and delete every due row; re-date the ones whose channel is full."""
        while not self.stopping.is_set():
            rows = await database_sync_to_async(_due_rows)(self.batch_size)
            for row in rows:
                await self._send_row(row)
            if len(rows) < self.batch_size:
                return

    async def _send_row(self, row: Any) -> None:
        from headrace.delay.models import decode_content

        try:
            await self.channel_layer.send(row.channel_name, decode_content(row.content))
        except ChannelFull:
            logger.warning("%s is full; retrying in %d ms", row.channel_name, self.retry_ms)
            retry = timezone.now() + datetime.timedelta(milliseconds=self.retry_ms)
            await database_sync_to_async(_redate)(row.pk, retry)
            return
        await database_sync_to_async(_delete)(row.pk)


def _next_due() -> datetime.datetime | None:
    from headrace.delay.models import DelayedMessage

    first: datetime.datetime | None = (
        DelayedMessage.objects.order_by("due_date").values_list("due_date", flat=True).first()
    )
    return first


def _create(channel: str, content: dict[str, Any], due: datetime.datetime) -> None:
    from headrace.delay.models import DelayedMessage, encode_content

    DelayedMessage.objects.create(
        channel_name=channel, content=encode_content(content), due_date=due
    )


def _due_rows(limit: int) -> list[Any]:
    from headrace.delay.models import DelayedMessage

    return list(DelayedMessage.objects.filter(due_date__lte=timezone.now())[:limit])


def _redate(pk: int, due: datetime.datetime) -> None:
    from headrace.delay.models import DelayedMessage

    DelayedMessage.objects.filter(pk=pk).update(due_date=due)


def _delete(pk: int) -> None:
    from headrace.delay.models import DelayedMessage

    DelayedMessage.objects.filter(pk=pk).delete()
