"""Consumers and routers served by the real headrace server (a child process), spoken to with
httpx and the ``websockets`` client."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.typing import Subprotocol

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


class ServedApp:
    """``python -m headrace tests.framework.served_app:application`` on a free port; stderr is
    drained by a thread that signals when the server reports it is listening."""

    def __init__(self) -> None:
        self.port = free_port()
        self.lines: list[str] = []
        self.new_line = threading.Condition()
        self.listening = threading.Event()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "headrace",
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                "tests.framework.served_app:application",
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self.new_line:
                self.lines.append(line)
                self.new_line.notify_all()
            if "Listening on" in line:
                self.listening.set()
        self.listening.set()

    def wait_for_line(self, needle: str, timeout: float = 10) -> bool:
        """True once the server has logged a line containing ``needle`` (False on timeout)."""
        with self.new_line:
            return self.new_line.wait_for(
                lambda: any(needle in line for line in self.lines), timeout
            )

    def wait_until_listening(self) -> None:
        if not self.listening.wait(15) or self.process.poll() is not None:
            self.stop()
            raise RuntimeError("server did not start:\n" + "".join(self.lines))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._drain.join(5)
        if self.process.stderr is not None:
            self.process.stderr.close()

    def http(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def ws(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"


@pytest.fixture(scope="module")
def served() -> Iterator[ServedApp]:
    app = ServedApp()
    app.wait_until_listening()
    yield app
    app.stop()


async def test_http_consumer_with_url_kwargs(served: ServedApp) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.post(served.http("/hello/ada/"), content=b"12345")
    assert response.status_code == 200
    assert response.text == "hello ada, you sent 5 bytes"
    assert response.headers["content-type"] == "text/plain"


async def test_streamed_http_response(served: ServedApp) -> None:
    async with (
        httpx.AsyncClient(timeout=5) as client,
        client.stream("GET", served.http("/countdown/")) as response,
    ):
        chunks = [chunk async for chunk in response.aiter_text()]
    assert "".join(chunks) == "3\n2\n1\nliftoff\n"


async def test_unrouted_path_is_a_server_error_naming_the_path(served: ServedApp) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(served.http("/no/such/place/"))
    assert response.status_code == 500
    needle = "No route found for path '/no/such/place/'"
    assert await asyncio.to_thread(served.wait_for_line, needle)


async def test_websocket_echo_with_subprotocol(served: ServedApp) -> None:
    async with asyncio.timeout(10):
        async with websockets.connect(
            served.ws("/ws/echo/"), subprotocols=[Subprotocol("chat")]
        ) as socket:
            assert socket.subprotocol == "chat"
            await socket.send("stressed")
            assert await socket.recv() == "desserts"
            await socket.send(b"\x00\xff")
            assert await socket.recv() == b"\x00\xff"


async def test_websocket_group_broadcast(served: ServedApp) -> None:
    async with asyncio.timeout(10):
        async with (
            websockets.connect(served.ws("/ws/room/lobby/")) as alice,
            websockets.connect(served.ws("/ws/room/lobby/")) as bob,
            websockets.connect(served.ws("/ws/room/elsewhere/")) as carol,
        ):
            await alice.send(json.dumps({"from": "alice"}))
            assert json.loads(await alice.recv()) == {"from": "alice"}
            assert json.loads(await bob.recv()) == {"from": "alice"}
            await carol.send(json.dumps({"from": "carol"}))
            assert json.loads(await carol.recv()) == {"from": "carol"}
            await bob.send(json.dumps({"from": "bob"}))
            assert json.loads(await alice.recv()) == {"from": "bob"}


async def test_sync_json_consumer(served: ServedApp) -> None:
    async with asyncio.timeout(10), websockets.connect(served.ws("/ws/count/")) as socket:
        for add, total in ((2, 2), (5, 7), (-1, 6)):
            await socket.send(json.dumps({"add": add}))
            assert json.loads(await socket.recv()) == {"count": total}
