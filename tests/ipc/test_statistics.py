"""Layer statistics seen from other processes: the Prometheus app served by a real headrace
server and scraped over HTTP, and ``manage.py layerstats``, both over one IPC hub that this
test process's layer hosts and sends through."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from headrace.exceptions import ChannelFull
from headrace.layers.ipc import IPCChannelLayer
from tests.conftest import free_port
from tests.ipc.support import WAIT

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def layer(hub_path: str) -> AsyncIterator[IPCChannelLayer]:
    """The sending side (it hosts the hub), with three messages sent and one refused."""
    sender = IPCChannelLayer(path=hub_path, capacity=2)
    await sender.send("stats.fixed", {"type": "m", "n": 1})
    await sender.send("stats.fixed", {"type": "m", "n": 2})
    with pytest.raises(ChannelFull):
        await sender.send("stats.fixed", {"type": "m", "n": 3})
    await sender.send("stats.extra", {"type": "m", "n": 4})
    yield sender
    await sender.close()


def environment(hub_path: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "HR_STATS_IPC": hub_path}


@pytest.fixture
def metrics_server(hub_path: str) -> Iterator[str]:
    """``headrace tests.ipc.metrics_target:app`` on a free port; yields its base URL."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "headrace", "-p", str(port), "tests.ipc.metrics_target:app"],
        cwd=ROOT,
        env=environment(hub_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if server.poll() is not None:
            raise AssertionError(f"the server exited: {server.stderr.read()!r}")  # type: ignore[union-attr]
        try:
            httpx.head(url, timeout=1)
        except httpx.TransportError:
            return False
        return True

    try:
        deadline = time.monotonic() + WAIT
        while not answers():
            assert time.monotonic() < deadline, "the metrics server did not answer"
            time.sleep(0.05)
        yield url
    finally:
        server.terminate()
        server.wait(WAIT)


def samples(text: str) -> dict[str, float]:
    """``{'name{labels}': value}`` of every sample line of a Prometheus text page."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            found[series] = float(value)
    return found


async def test_prometheus_endpoint_scraped_over_http(
    layer: IPCChannelLayer, metrics_server: str
) -> None:
    async with httpx.AsyncClient(base_url=metrics_server, timeout=WAIT) as client:
        response = await client.get("/metrics", params={"channel": "stats.extra"})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert "# TYPE headrace_layer_messages_total counter" in response.text
        found = samples(response.text)
        assert found['headrace_layer_messages_total{layer="default"}'] == 3
        assert found['headrace_layer_channel_full_total{layer="default"}'] == 1
        assert found['headrace_layer_messages_pending{layer="default"}'] == 3
        fixed = 'layer="default",channel="stats.fixed"'
        assert found[f"headrace_layer_messages_total{{{fixed}}}"] == 2
        assert found[f"headrace_layer_channel_full_total{{{fixed}}}"] == 1
        assert found[f"headrace_layer_messages_pending{{{fixed}}}"] == 2
        assert 0 <= found[f"headrace_layer_messages_max_age_seconds{{{fixed}}}"] < layer.expiry
        extra = 'layer="default",channel="stats.extra"'
        assert found[f"headrace_layer_messages_pending{{{extra}}}"] == 1

        await layer.receive("stats.fixed")
        again = samples((await client.get("/metrics")).text)
        assert again[f"headrace_layer_messages_pending{{{fixed}}}"] == 1
        assert f"headrace_layer_messages_pending{{{extra}}}" not in again

        refused = await client.post("/metrics")
        assert refused.status_code == 405
        assert refused.headers["allow"] == "GET, HEAD"
        bad = await client.get("/metrics", params={"channel": "not a name"})
        assert bad.status_code == 400
        assert "invalid" in bad.text


def layerstats(hub_path: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "django", "layerstats", *arguments],
        cwd=ROOT,
        env={**environment(hub_path), "DJANGO_SETTINGS_MODULE": "tests.ipc.stats_settings"},
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )


async def test_layerstats_command(layer: IPCChannelLayer, hub_path: str) -> None:
    done = layerstats(hub_path, "--json", "--channel", "stats.fixed")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["layer"] == "default"
    assert document["global"]["messages_count"] == 3
    assert document["global"]["channel_full_count"] == 1
    fixed = document["channels"]["stats.fixed"]
    assert (fixed["messages_count"], fixed["messages_pending"]) == (2, 2)
    assert fixed["channel_full_count"] == 1

    table = layerstats(hub_path, "--channel", "stats.extra")
    assert table.returncode == 0, table.stderr
    lines = [line.split() for line in table.stdout.splitlines()]
    assert ["layer", "default"] in lines
    assert ["channel", "stats.extra"] in lines
    assert ["messages_count", "3"] in lines
    assert ["messages_pending", "1"] in lines

    prometheus = layerstats(hub_path, "--prometheus")
    assert samples(prometheus.stdout)['headrace_layer_messages_total{layer="default"}'] == 3


async def test_layerstats_bad_input(layer: IPCChannelLayer, hub_path: str) -> None:
    unknown = layerstats(hub_path, "--layer", "nope")
    assert unknown.returncode == 1
    assert "--layer 'nope'" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    plain = layerstats(hub_path, "--layer", "plain")
    assert plain.returncode == 1
    assert "does not provide statistics" in plain.stderr
    bad = layerstats(hub_path, "--channel", "not a name")
    assert bad.returncode == 1
    assert "--channel" in bad.stderr
    assert "Traceback" not in bad.stderr
