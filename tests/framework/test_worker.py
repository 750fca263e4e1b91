"""Worker and runworker: background channels routed by ChannelNameRouter."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from headrace.consumer import AsyncConsumer, SyncConsumer
from headrace.exceptions import StopConsumer
from headrace.layers import InMemoryChannelLayer
from headrace.routing import ChannelNameRouter
from headrace.worker import Worker

ROOT = Path(__file__).resolve().parents[2]


class Thumbnailer(AsyncConsumer):
    async def thumbnail_make(self, message: dict[str, Any]) -> None:
        assert self.channel_layer is not None
        await self.channel_layer.send(message["reply_to"], {"type": "done", "id": message["id"]})

    async def thumbnail_crash(self, message: dict[str, Any]) -> None:
        raise RuntimeError("thumbnailer broke")

    async def thumbnail_stop(self, message: dict[str, Any]) -> None:
        raise StopConsumer()


class Mailer(SyncConsumer):
    def mail_send(self, message: dict[str, Any]) -> None:
        from asgiref.sync import async_to_sync

        assert self.channel_layer is not None
        async_to_sync(self.channel_layer.send)(message["reply_to"], {"type": "mailed"})


def make_worker(layer: InMemoryChannelLayer) -> Worker:
    from headrace.layers import channel_layers

    channel_layers.configure({})
    channel_layers.set("default", layer)
    router = ChannelNameRouter({"thumbnails": Thumbnailer.as_asgi(), "mail": Mailer.as_asgi()})
    return Worker(router, ["thumbnails", "mail"], layer)


async def test_worker_routes_by_channel_and_survives_bad_messages(
    caplog: pytest.LogCaptureFixture,
) -> None:
    layer = InMemoryChannelLayer()
    worker = make_worker(layer)
    running = asyncio.ensure_future(worker.handle())
    try:
        async with asyncio.timeout(5):
            await layer.send("thumbnails", {"type": "thumbnail.make", "id": 1, "reply_to": "r"})
            assert await layer.receive("r") == {"type": "done", "id": 1}
            await layer.send("mail", {"type": "mail.send", "reply_to": "r"})
            assert await layer.receive("r") == {"type": "mailed"}
            with caplog.at_level(logging.WARNING, logger="headrace.worker"):
                await layer.send("thumbnails", {"no": "type"})
                await layer.send("thumbnails", {"type": "thumbnail.crash"})
                await layer.send("thumbnails", {"type": "thumbnail.make", "id": 2, "reply_to": "r"})
                assert await layer.receive("r") == {"type": "done", "id": 2}
            assert "without 'type'" in caplog.text
            await layer.send("thumbnails", {"type": "thumbnail.stop"})
            await layer.send("thumbnails", {"type": "thumbnail.make", "id": 3, "reply_to": "r"})
            assert await layer.receive("r") == {"type": "done", "id": 3}
        assert not running.done()
    finally:
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        from headrace.layers import channel_layers

        channel_layers.configure(None)
    assert worker.application_instances == {}


class Stuck(AsyncConsumer):
    """Takes one message and then blocks until the test releases it."""

    started: asyncio.Event
    release: asyncio.Event

    async def job_run(self, message: dict[str, Any]) -> None:
        self.started.set()
        await self.release.wait()


class BrokenAtStart(AsyncConsumer):
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("cannot start")


async def wait_until(condition: Any) -> None:
    """Poll a state nothing signals (bounded: the worker exposes no event for it)."""
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_a_slow_instance_leaves_messages_in_the_layer() -> None:
    layer = InMemoryChannelLayer()
    Stuck.started, Stuck.release = asyncio.Event(), asyncio.Event()
    worker = Worker(ChannelNameRouter({"jobs": Stuck.as_asgi()}), ["jobs"], layer)
    worker.queue_size = 4
    running = asyncio.ensure_future(worker.handle())
    try:
        async with asyncio.timeout(5):
            await layer.send("jobs", {"type": "job.run", "n": 0})
            await Stuck.started.wait()
            for n in range(1, 20):
                await layer.send("jobs", {"type": "job.run", "n": n})
        await wait_until(lambda: worker.application_instances["jobs"].queue.full())
        # The listener waits for room: the rest is still in the layer, in order.
        leftover = await asyncio.wait_for(layer.receive("jobs"), timeout=5)
        assert 5 <= leftover["n"] <= 6
    finally:
        Stuck.release.set()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_an_instance_failing_at_start_does_not_block_its_listener(
    caplog: pytest.LogCaptureFixture,
) -> None:
    layer = InMemoryChannelLayer()
    worker = Worker(ChannelNameRouter({"jobs": BrokenAtStart.as_asgi()}), ["jobs"], layer)
    worker.queue_size = 1
    running = asyncio.ensure_future(worker.handle())
    try:
        with caplog.at_level(logging.ERROR, logger="headrace.worker"):
            async with asyncio.timeout(5):
                for n in range(10):
                    await layer.send("jobs", {"type": "job.run", "n": n})
            await wait_until(
                lambda: "jobs" not in layer.channels or not layer.channels["jobs"].entries
            )
        assert "cannot start" in caplog.text
        assert not running.done()
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


def test_worker_argument_checks() -> None:
    layer = InMemoryChannelLayer()
    with pytest.raises(ValueError, match="Channel layer is not valid"):
        Worker(ChannelNameRouter({}), ["a"], None)
    with pytest.raises(ValueError, match="at least one channel"):
        Worker(ChannelNameRouter({}), [], layer)
    with pytest.raises(TypeError):
        Worker(ChannelNameRouter({}), ["bad name"], layer)


def run_manage(*args: str, settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "django", "runworker", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": settings},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_runworker_requires_a_layer() -> None:
    result = run_manage("jobs", settings="tests.framework.worker_settings_nolayer")
    assert result.returncode != 0
    assert "You do not have any CHANNEL_LAYERS configured" in result.stderr


def test_runworker_serves_the_default_application() -> None:
    result = run_manage("--layer", "default", "jobs", settings="tests.framework.worker_settings")
    assert result.returncode == 0, result.stderr
    assert "Running worker for channels jobs" in result.stdout
    assert "job handled: 42" in result.stdout
