"""``manage.py runserver`` in a ROUTING project over the in-memory layer: the interface bridge
and the worker threads in one process, driven by real HTTP and WebSocket clients."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from tests.django.processes import REPO, ServerProcess, start_server
from tests.django.test_runserver_reload import BANNER, touch_until_reloaded, wait_for

SETTINGS = "tests.worker1.site.settings"


def runserver(*extra: str) -> ServerProcess:
    def argv(port: int) -> list[str]:
        return ["-m", "django", "runserver", f"127.0.0.1:{port}", f"--settings={SETTINGS}", *extra]

    return start_server(argv, env={"WORKER1_BACKEND": "inmemory"})


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    process = runserver()  # with the autoreloader, as a developer runs it
    yield process
    process.stop()


async def test_views_through_the_bridge_and_the_worker_threads(server: ServerProcess) -> None:
    body = bytes(range(256)) * 8192  # 2 MiB: more than one message, so body chunks
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as client:
        hello = await client.get("/hello/?name=runserver", headers={"Cookie": "flavour=mint"})
        upload = await client.post(
            "/upload/", content=body, headers={"Content-Type": "application/octet-stream"}
        )
        stream = await client.get("/stream/")
        missing = await client.get("/nowhere/")
        broken = await client.get("/broken/")
    assert hello.status_code == 200
    assert hello.headers["x-stamped"] == "yes"
    assert hello.json()["name"] == "runserver"
    assert hello.json()["cookie"] == "mint"
    assert upload.status_code == 200
    assert upload.json() == {
        "length": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "field": None,
    }
    assert stream.text == "part 0;part 1;part 2;"
    assert missing.status_code == 404
    assert broken.status_code == 500
    log = server.log()
    assert "Worker thread running (4 consumer threads)" in log


async def test_websocket_echo_consumer(server: ServerProcess) -> None:
    async with websockets.connect(f"ws://127.0.0.1:{server.port}/ws/", open_timeout=30) as ws:
        await ws.send("hello")
        assert await ws.recv() == "echo: hello"
        await ws.send(b"\x00\x01")
        assert await ws.recv() == b"\x00\x01"
        await ws.send(json.dumps({"n": 1}))
        assert await ws.recv() == 'echo: {"n": 1}'


async def test_noworker_serves_nothing_until_a_worker_runs() -> None:
    process = runserver("--noreload", "--noworker", "--http_timeout=2")
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.get(f"http://127.0.0.1:{process.port}/hello/")
        assert response.status_code == 503  # no worker answered within --http_timeout
        assert "Worker thread running" not in process.log()
    finally:
        process.stop()


async def test_autoreload_restarts_the_bridge_and_the_worker(tmp_path: Path) -> None:
    settings_file = tmp_path / "worker1_reload_settings.py"
    settings_file.write_text("from tests.worker1.site.settings import *  # noqa: F403\n")
    server = start_server(
        lambda port: [
            "-m",
            "django",
            "runserver",
            f"127.0.0.1:{port}",
            "--settings=worker1_reload_settings",
        ],
        env={
            "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)]),
            "WORKER1_BACKEND": "inmemory",
        },
    )
    try:
        touch_until_reloaded(server, settings_file)
        wait_for(server, "Worker thread running", 2)
        server.wait_listening()
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.get(f"http://127.0.0.1:{server.port}/hello/")
        assert response.status_code == 200
        async with websockets.connect(f"ws://127.0.0.1:{server.port}/ws/", open_timeout=30) as ws:
            await ws.send("after reload")
            assert await ws.recv() == "echo: after reload"
        assert server.log().count(BANNER) >= 2
    finally:
        server.stop()
