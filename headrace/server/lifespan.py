"""The ASGI lifespan protocol: startup before serving, shutdown after the last request.

Theory of operation
-------------------
The app is called once with a ``lifespan`` scope in its own task. ``startup()`` puts
``lifespan.startup`` in the receive queue and waits for ``.complete`` / ``.failed``;
``shutdown()`` does the same with ``lifespan.shutdown``. The scope's ``state`` dict is the
server's lifespan state; the server shallow-copies it into every request scope.

Modes (``--lifespan``): ``off`` never calls the app; ``on`` treats an app that raises before
answering as a failed startup; ``auto`` treats that as "lifespan not supported" and carries on
(logged at debug level). ``lifespan.startup.failed`` always fails the start.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from headrace._types import ASGIApp, Message

logger = logging.getLogger("headrace.server.lifespan")


class LifespanFailure(Exception):
    """Startup or shutdown reported failure (or the app crashed with ``--lifespan on``)."""


class Lifespan:
    """Drives one app through lifespan startup and shutdown."""

    def __init__(self, app: ASGIApp, mode: str, state: dict[str, Any]) -> None:
        self.app = app
        self.mode = mode
        self.state = state
        self.supported = mode != "off"
        self._queue: asyncio.Queue[Message] = asyncio.Queue()
        self._answer: asyncio.Future[Message] | None = None
        self._task: asyncio.Task[None] | None = None
        self._crashed: BaseException | None = None

    async def startup(self) -> None:
        if not self.supported:
            return
        self._task = asyncio.get_running_loop().create_task(self._run())
        answer = await self._exchange("lifespan.startup")
        if answer is None:
            return
        if answer["type"] == "lifespan.startup.failed":
            raise LifespanFailure(f"lifespan startup failed: {answer.get('message', '')}")
        if answer["type"] != "lifespan.startup.complete":
            raise LifespanFailure(f"unexpected lifespan message {answer['type']!r}")

    async def shutdown(self) -> None:
        if not self.supported or self._task is None:
            return
        answer = await self._exchange("lifespan.shutdown")
        if answer is not None and answer["type"] == "lifespan.shutdown.failed":
            logger.error("lifespan shutdown failed: %s", answer.get("message", ""))
        if not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _exchange(self, event: str) -> Message | None:
        loop = asyncio.get_running_loop()
        self._answer = loop.create_future()
        await self._queue.put({"type": event})
        assert self._task is not None
        waiters: set[asyncio.Future[Any]] = {self._answer, self._task}
        done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if self._answer in done:
            return self._answer.result()
        self._app_ended(event)
        return None

    def _app_ended(self, event: str) -> None:
        crashed = self._crashed
        self.supported = False
        if crashed is not None and (self.mode == "on" or event == "lifespan.shutdown"):
            raise LifespanFailure(f"lifespan {event} crashed: {crashed!r}") from crashed
        if self.mode == "on" and event == "lifespan.startup":
            raise LifespanFailure("the application returned during lifespan startup")
        logger.debug("ASGI lifespan not supported by the application (%r)", crashed)

    async def _run(self) -> None:
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        try:
            await self.app(scope, self._receive, self._send)
        except Exception as exc:
            self._crashed = exc
            if self.mode == "on":
                logger.exception("exception in ASGI lifespan")

    async def _receive(self) -> Message:
        return await self._queue.get()

    async def _send(self, message: Message) -> None:
        answer = self._answer
        if answer is None or answer.done():
            raise RuntimeError(f"unexpected lifespan message {message.get('type')!r}")
        answer.set_result(message)
