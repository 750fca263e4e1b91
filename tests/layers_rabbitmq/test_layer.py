"""The RabbitMQ layer beyond the conformance suites: other processes, worker channels with
several readers, settings of the peers, statistics, the 1.x view from settings, failover."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from headrace import asgi
from headrace.exceptions import ChannelFull, InvalidChannelLayerError
from headrace.layers import channel_layers
from headrace.layers.rabbitmq import RabbitMQChannelLayer, RabbitMQUnavailable
from tests.conftest import free_port
from tests.layers_rabbitmq.conftest import eventually, unique_prefix

ROOT = Path(__file__).resolve().parents[2]
WAIT = 20.0


@contextlib.asynccontextmanager
async def layer_for(url: str, prefix: str, **config: Any) -> AsyncIterator[RabbitMQChannelLayer]:
    layer = RabbitMQChannelLayer(url=url, prefix=prefix, **config)
    try:
        yield layer
    finally:
        with contextlib.suppress(RabbitMQUnavailable):
            await layer.flush()
        await layer.close()


@contextlib.asynccontextmanager
async def member(url: str, prefix: str, *arguments: str) -> AsyncIterator[Any]:
    """Start ``tests.layers_rabbitmq.member`` and wait until it is ready."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.layers_rabbitmq.member",
        url,
        prefix,
        *arguments,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert (await read_line(process)).startswith("ready ")
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await asyncio.wait_for(process.wait(), WAIT)


async def read_line(process: Any) -> str:
    line = await asyncio.wait_for(process.stdout.readline(), WAIT)
    return str(line.decode().strip())


# ---------------------------------------------------------------------- other processes


async def test_group_send_reaches_other_processes(rabbitmq_url: str, rabbitmq_prefix: str) -> None:
    prefix = rabbitmq_prefix
    async with (
        layer_for(rabbitmq_url, prefix) as layer,
        member(rabbitmq_url, prefix, "group", "room") as first,
        member(rabbitmq_url, prefix, "group", "room") as second,
    ):
        for number in range(3):
            await layer.group_send("room", {"type": "news", "text": f"news-{number}"})
        for process in (first, second):
            assert [await read_line(process) for _ in range(3)] == ["news-0", "news-1", "news-2"]


async def test_send_from_another_process_to_a_local_channel(
    rabbitmq_url: str, rabbitmq_prefix: str
) -> None:
    prefix = rabbitmq_prefix
    async with layer_for(rabbitmq_url, prefix) as layer:
        channel = await layer.new_channel()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.layers_rabbitmq.member",
            rabbitmq_url,
            prefix,
            "send",
            channel,
            "20",
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        assert await read_line(process) == "sent"
        assert await asyncio.wait_for(process.wait(), WAIT) == 0
        received = [
            (await asyncio.wait_for(layer.receive(channel), WAIT))["text"] for _ in range(20)
        ]
        assert received == [str(number) for number in range(20)]


async def test_group_add_of_another_instances_local_channel(
    rabbitmq_url: str, rabbitmq_prefix: str
) -> None:
    """Instance two adds instance one's process-local channel to a group and sends to it:
    the membership reaches instance one before the message does."""
    prefix = rabbitmq_prefix
    async with layer_for(rabbitmq_url, prefix) as one, layer_for(rabbitmq_url, prefix) as two:
        channel = await one.new_channel()
        await two.group_add("adopted", channel)
        await two.group_send("adopted", {"type": "hello"})
        assert await asyncio.wait_for(one.receive(channel), WAIT) == {"type": "hello"}
        await two.group_discard("adopted", channel)
        await two.group_send("adopted", {"type": "after.discard"})
        await two.send(channel, {"type": "marker"})
        assert await asyncio.wait_for(one.receive(channel), WAIT) == {"type": "marker"}


# ---------------------------------------------------------------------- worker channels


async def test_worker_channel_with_several_reader_processes(
    rabbitmq_url: str, rabbitmq_prefix: str
) -> None:
    """Three processes read one worker channel: every message reaches exactly one of them."""
    prefix = rabbitmq_prefix
    count = 300
    async with (
        layer_for(rabbitmq_url, prefix, capacity=count) as layer,
        member(rabbitmq_url, prefix, "worker", "jobs") as first,
        member(rabbitmq_url, prefix, "worker", "jobs") as second,
        member(rabbitmq_url, prefix, "worker", "jobs") as third,
    ):
        for number in range(count):
            await layer.send("jobs", {"type": "job", "text": str(number)})
        readers = (first, second, third)
        seen: list[list[str]] = [[] for _ in readers]

        async def collect(index: int) -> None:
            while True:
                seen[index].append(await read_line(readers[index]))

        tasks = [asyncio.ensure_future(collect(index)) for index in range(3)]
        await eventually(lambda: sum(map(len, seen)) >= count, WAIT)
        await asyncio.sleep(0.5)  # a duplicate would arrive now
        for task in tasks:
            task.cancel()
        every = sorted(int(text) for part in seen for text in part)
        assert every == list(range(count))
        assert sum(1 for part in seen if part) >= 2  # the work was shared


async def test_worker_channel_readers_in_one_process(
    rabbitmq_url: str, rabbitmq_prefix: str
) -> None:
    prefix = rabbitmq_prefix
    async with (
        layer_for(rabbitmq_url, prefix, capacity=500) as sender,
        layer_for(rabbitmq_url, prefix) as one,
        layer_for(rabbitmq_url, prefix) as two,
    ):
        got: dict[str, list[int]] = {"one": [], "two": []}

        async def read(name: str, layer: RabbitMQChannelLayer) -> None:
            while True:
                got[name].append((await layer.receive("tasks"))["n"])

        readers = [asyncio.ensure_future(read("one", one)), asyncio.ensure_future(read("two", two))]
        await asyncio.sleep(0.2)
        for number in range(200):
            await sender.send("tasks", {"type": "task", "n": number})
        await eventually(lambda: len(got["one"]) + len(got["two"]) >= 200, WAIT)
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        assert sorted(got["one"] + got["two"]) == list(range(200))
        assert got["one"] == sorted(got["one"]) and got["two"] == sorted(got["two"])


# ---------------------------------------------------------------------- settings


def test_peer_settings_are_mapped_or_refused() -> None:
    layer = RabbitMQChannelLayer(
        host="amqp://guest:guest@127.0.0.1:5672/",
        prefetch_count=3,
        expiry=5,
        group_expiry=50,
        groups_exchange="my-groups",
    )
    assert layer.options.urls == ("amqp://guest:guest@127.0.0.1:5672/",)
    assert layer.options.prefetch == 3
    assert layer.options.groups_exchange == "my-groups"
    assert (layer.expiry, layer.group_expiry) == (5, 50)
    for key, hint in [
        ("local_capacity", "capacity"),
        ("remote_capacity", "capacity"),
        ("symmetric_encryption_keys", "amqps://"),
        ("hosts", "url"),
    ]:
        with pytest.raises(InvalidChannelLayerError, match=key) as caught:
            RabbitMQChannelLayer(**{key: 1})
        assert hint in str(caught.value)
    with pytest.raises(ValueError, match="prefetch"):
        RabbitMQChannelLayer(prefetch=0)
    with pytest.raises(ValueError, match="not an AMQP URL"):
        RabbitMQChannelLayer(url="redis://127.0.0.1")
    with pytest.raises(ValueError, match="both 'url' and 'host'"):
        RabbitMQChannelLayer(url="amqp://a/", host="amqp://b/")
    with pytest.raises(TypeError, match="unknown options: colour"):
        RabbitMQChannelLayer(colour="blue")


# ---------------------------------------------------------------------- statistics


async def test_statistics(rabbitmq_url: str, rabbitmq_prefix: str) -> None:
    prefix = rabbitmq_prefix
    async with layer_for(rabbitmq_url, prefix, capacity=2) as layer:
        assert "statistics" in layer.extensions
        await layer.send("counted", {"type": "m"})
        await layer.send("counted", {"type": "m"})
        with pytest.raises(ChannelFull):
            await layer.send("counted", {"type": "m"})
        local = await layer.new_channel()
        await layer.send(local, {"type": "m"})
        await asyncio.sleep(0.3)
        stats = await layer.channel_statistics("counted")
        assert stats["messages_count"] == 2
        assert stats["channel_full_count"] == 1
        assert stats["messages_pending"] == 2
        # the rates count the last whole second: within two seconds they show the sends
        # (messages, messages per second, full, full per second)
        counts = layer.statistics.channel_counts
        assert await eventually(lambda: counts("counted")[1] >= 1, 3)
        assert await eventually(lambda: counts("counted")[3] >= 1, 3)
        local_stats = await layer.channel_statistics(local)
        assert local_stats["messages_pending"] == 1
        assert local_stats["messages_max_age"] > 0
        overall = await layer.global_statistics()
        assert overall["messages_count"] == 3
        assert overall["channel_full_count"] == 1
        assert overall["messages_pending"] == 3
        expected = {
            "messages_count",
            "messages_count_per_second",
            "messages_pending",
            "messages_max_age",
            "channel_full_count",
            "channel_full_count_per_second",
        }
        assert set(overall) == expected and set(stats) == expected
        await layer.receive("counted")
        assert (await layer.channel_statistics("counted"))["messages_pending"] <= 1
        await layer.group_add("stats-room", local)
        await layer.group_send("stats-room", {"type": "fits"})
        await layer.group_send("stats-room", {"type": "over.capacity"})
        await eventually(lambda: bool(layer.statistics.channel_counts(local)[2]), WAIT)
        local_stats = await layer.channel_statistics(local)
        assert local_stats["channel_full_count"] == 1  # counted by the receiving process
        assert local_stats["messages_pending"] == 2


# ---------------------------------------------------------------------- the 1.x view, threads


def test_asgi_view_from_settings(rabbitmq_url: str, rabbitmq_prefix: str) -> None:
    prefix = rabbitmq_prefix
    channel_layers.configure(
        {
            "default": {
                "BACKEND": "headrace.layers.rabbitmq.RabbitMQChannelLayer",
                "CONFIG": {"url": rabbitmq_url, "prefix": prefix},
                "ROUTING": [],
            }
        }
    )
    try:
        view = asgi.get_channel_layer()
        assert "statistics" in view.extensions
        reply = view.new_channel("http.response!")
        view.send("http.request", {"reply_channel": reply, "path": "/"})
        channel, message = view.receive(["http.request"], block=True)
        assert channel == "http.request" and message["path"] == "/"
        view.send(reply, {"status": 200})
        assert view.receive([reply], block=True) == (reply, {"status": 200})
        view.group_add("listeners", reply)
        view.send_group("listeners", {"text": "hi"})
        assert view.receive([reply], block=True) == (reply, {"text": "hi"})
        assert isinstance(view.channel_statistics("http.request"), dict)
        view.flush()
    finally:
        asgi.channel_layers.reset()
        backend = channel_layers.backends.get("default")
        channel_layers.configure(None)
        if backend is not None:
            async_to_sync(backend.close)()


def test_async_to_sync_from_plain_threads(rabbitmq_url: str, rabbitmq_prefix: str) -> None:
    """Sync code (a Celery task, a management command) sends with async_to_sync: each call
    runs in a loop of its own, the layer keeps one connection on its private loop."""
    layer = RabbitMQChannelLayer(url=rabbitmq_url, prefix=rabbitmq_prefix)
    errors: list[BaseException] = []

    def sender(number: int) -> None:
        try:
            for index in range(10):
                async_to_sync(layer.send)("from-threads", {"type": "t", "n": number * 10 + index})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sender, args=(number,)) for number in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert errors == []
    got = sorted(async_to_sync(layer.receive)("from-threads")["n"] for _ in range(30))
    assert got == list(range(30))
    async_to_sync(layer.flush)()
    async_to_sync(layer.close)()


# ---------------------------------------------------------------------- cluster URLs


async def test_cluster_urls_fail_over_to_the_live_broker(
    rabbitmq_url: str, rabbitmq_prefix: str
) -> None:
    dead = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    prefix = rabbitmq_prefix
    async with layer_for([dead, rabbitmq_url], prefix) as layer:  # type: ignore[arg-type]
        await layer.send("failover", {"type": "m"})
        assert await asyncio.wait_for(layer.receive("failover"), WAIT) == {"type": "m"}


async def test_unreachable_broker_is_a_connection_error() -> None:
    dead = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    layer = RabbitMQChannelLayer(url=dead, prefix=unique_prefix(), connect_timeout=0.5)
    try:
        with pytest.raises(ConnectionError, match="no RabbitMQ broker reachable"):
            await layer.send("nowhere", {"type": "m"})
    finally:
        await layer.close()
