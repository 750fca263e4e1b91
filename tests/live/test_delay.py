"""The delay server (``manage.py rundelay``) as a subprocess on the Redis and the IPC layer and
a SQLite database: malformed messages skipped, pending messages surviving a SIGKILL and a restart,
``ChannelFull`` retried."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from headrace.delay import DELAY_CHANNEL, send_later
from headrace.layers import BaseChannelLayer
from tests.django.processes import ServerProcess
from tests.live._server import run_manage, wait_for_log
from tests.live._site import Site


@pytest.fixture(params=["redis", "ipc"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Site:
    site = Site(tmp_path, layer=request.param)
    site.migrate()
    return site


@pytest.fixture
async def layer(site: Site) -> AsyncIterator[BaseChannelLayer]:
    """The test's own instance of the layer rundelay uses (same prefix, same capacities)."""
    capacity = {"delayed.full": 1}
    layer: BaseChannelLayer
    if site.layer == "ipc":
        from headrace.layers.ipc import IPCChannelLayer

        layer = IPCChannelLayer(prefix=site.prefix, channel_capacity=capacity)
    else:
        from headrace.layers.redis import RedisChannelLayer

        layer = RedisChannelLayer(
            hosts=[("127.0.0.1", 6379)], prefix=site.prefix, channel_capacity=capacity
        )
    yield layer
    await layer.close()


def rundelay(site: Site) -> ServerProcess:
    process = run_manage(["-m", "django", "rundelay", "--sleep", "0.2"], env=site.env)
    wait_for_log(process, "Delay server listening on asgi.delay")
    return process


def stored(site: Site) -> list[tuple[str, str]]:
    with sqlite3.connect(site.db) as db:
        rows = db.execute("SELECT channel_name, content FROM headrace_delay_delayedmessage")
        return rows.fetchall()


async def wait_for_rows(site: Site, count: int, within: float = 15) -> list[tuple[str, str]]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        rows = await asyncio.to_thread(stored, site)
        if len(rows) == count:
            return rows
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {count} stored rows, have {stored(site)}")


async def test_pending_messages_survive_a_killed_delay_server(
    site: Site, layer: BaseChannelLayer
) -> None:
    first = rundelay(site)
    try:
        malformed: list[dict[str, Any]] = [
            {"channel": "bad name!!", "content": {}, "delay": 1},
            {"content": {}},
            {"channel": "delayed.out", "content": [1], "delay": 1},
            {"channel": "delayed.out", "content": {}, "delay": "soon"},
        ]
        for message in malformed:
            await layer.send(DELAY_CHANNEL, message)
        message = {"type": "delayed.thing", "n": 1, "raw": b"\x00\xff"}
        await send_later("delayed.out", message, 3000, channel_layer=layer)
        rows = await wait_for_rows(site, 1)
        assert rows[0][0] == "delayed.out"
        log = first.log()
        for reason in ("bad channel", "missing channel, delay", "content is not a dict", "'soon'"):
            assert reason in log
        assert log.count("skipping malformed asgi.delay message") == 4
        os.killpg(first.process.pid, signal.SIGKILL)
        first.process.wait(10)
    finally:
        first.stop()
    assert len(await asyncio.to_thread(stored, site)) == 1

    second = rundelay(site)
    try:
        async with asyncio.timeout(20):
            assert await layer.receive("delayed.out") == message
        await wait_for_rows(site, 0)
    finally:
        second.stop()
    assert second.process.returncode == 0


async def test_a_full_destination_is_retried(site: Site, layer: BaseChannelLayer) -> None:
    process = rundelay(site)
    try:
        await layer.send("delayed.full", {"type": "filler"})
        await send_later("delayed.full", {"type": "late"}, 0, channel_layer=layer)
        await asyncio.to_thread(wait_for_log, process, "delayed.full is full; retrying in 1000 ms")
        async with asyncio.timeout(20):
            assert await layer.receive("delayed.full") == {"type": "filler"}
            assert await layer.receive("delayed.full") == {"type": "late"}
        await wait_for_rows(site, 0)
    finally:
        process.stop()


async def test_send_later_refuses_bad_arguments_at_once(layer: BaseChannelLayer) -> None:
    with pytest.raises(ValueError, match="delay_ms must be a non-negative int"):
        await send_later("x", {}, -1, channel_layer=layer)
    with pytest.raises(TypeError, match="message must be a dict"):
        await send_later("x", [], 1, channel_layer=layer)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Channel name"):
        await send_later("bad name", {}, 1, channel_layer=layer)


@pytest.mark.parametrize(
    ("option", "error"),
    [
        (["--layer", "nope"], "--layer 'nope': no such alias in CHANNEL_LAYERS"),
        (["--sleep", "0"], "--sleep must be a positive number of seconds"),
    ],
)
def test_rundelay_names_a_bad_option(site: Site, option: list[str], error: str) -> None:
    import subprocess
    import sys

    from tests.django.processes import REPO

    result = subprocess.run(
        [sys.executable, "-m", "django", "rundelay", *option],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **site.env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert error in result.stderr
