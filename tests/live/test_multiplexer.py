"""AsyncJsonWebsocketDemultiplexer through the real headrace server, with the websockets client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.django.processes import ServerProcess
from tests.live._server import serve_app, wait_for_log


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    process = serve_app("tests.live.mux_app:application")
    yield process
    process.stop()


def url(server: ServerProcess, path: str = "/mux/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


async def frames_until(socket: Any, count: int) -> list[dict[str, Any]]:
    return [json.loads(await socket.recv()) for _ in range(count)]


async def next_on(socket: Any, stream: str) -> dict[str, Any]:
    """The next payload on ``stream`` (frames of other streams are skipped)."""
    while True:
        frame = json.loads(await socket.recv())
        if frame["stream"] == stream:
            payload: dict[str, Any] = frame["payload"]
            return payload


async def test_each_stream_is_its_own_instance(server: ServerProcess) -> None:
    async with asyncio.timeout(10), websockets.connect(url(server)) as socket:
        greetings = await frames_until(socket, 2)
        assert {"stream": "echo", "payload": {"hello": "echo"}} in greetings
        assert {"stream": "other", "payload": {"hello": "other"}} in greetings
        await socket.send(json.dumps({"stream": "echo", "payload": {"n": 1}}))
        assert await next_on(socket, "echo") == {"echo": {"n": 1}, "count": 1}
        await socket.send(json.dumps({"stream": "echo", "payload": {"n": 2}}))
        assert await next_on(socket, "echo") == {"echo": {"n": 2}, "count": 2}
        await socket.send(json.dumps({"stream": "other", "payload": {"n": 3}}))
        assert await next_on(socket, "other") == {"echo": {"n": 3}, "count": 1}


async def test_a_denied_stream_is_closed_and_reported(server: ServerProcess) -> None:
    async with asyncio.timeout(10), websockets.connect(url(server)) as socket:
        assert await next_on(socket, "denier") == {"type": "stream.closed", "code": 4403}
        await socket.send(json.dumps({"stream": "echo", "payload": {"still": "open"}}))
        assert await next_on(socket, "echo") == {"echo": {"still": "open"}, "count": 1}


async def test_closing_one_stream_leaves_the_others_open(server: ServerProcess) -> None:
    async with asyncio.timeout(10), websockets.connect(url(server)) as socket:
        await socket.send(json.dumps({"stream": "closer", "payload": {"close": 4321}}))
        assert await next_on(socket, "closer") == {"type": "stream.closed", "code": 4321}
        await socket.send(json.dumps({"stream": "closer", "payload": {"close": 4000}}))
        await socket.send(json.dumps({"stream": "echo", "payload": {"after": True}}))
        assert await next_on(socket, "echo") == {"echo": {"after": True}, "count": 1}
    wait_for_log(server, "frame for closed stream 'closer' dropped")


async def test_a_crashing_stream_gets_1011_and_no_traceback(server: ServerProcess) -> None:
    async with asyncio.timeout(10), websockets.connect(url(server)) as socket:
        await socket.send(json.dumps({"stream": "crasher", "payload": {}}))
        closed = await next_on(socket, "crasher")
        assert closed == {"type": "stream.closed", "code": 1011}
        await socket.send(json.dumps({"stream": "other", "payload": {"ok": 1}}))
        assert await next_on(socket, "other") == {"echo": {"ok": 1}, "count": 1}
    log = wait_for_log(server, "secret internal detail")
    assert "stream 'crasher' crashed" in log


async def test_the_last_stream_closing_closes_the_socket(server: ServerProcess) -> None:
    async with asyncio.timeout(10), websockets.connect(url(server, "/only-closer/")) as socket:
        await socket.send(json.dumps({"stream": "closer", "payload": {"close": 4100}}))
        assert await next_on(socket, "closer") == {"type": "stream.closed", "code": 4100}
        with pytest.raises(ConnectionClosed):
            await socket.recv()
        assert socket.close_code == 1000


@pytest.mark.parametrize(
    ("frame", "code", "reason"),
    [
        (b"\x00\x01", 1003, "binary frames cannot be demultiplexed"),
        ("{not json", 1007, "frame is not valid JSON"),
        ('{"stream": "echo"}', 4000, "invalid multiplexed frame (no stream/payload key)"),
        ("[1, 2]", 4000, "invalid multiplexed frame (no stream/payload key)"),
        ('{"stream": "echo", "payload": [1]}', 4001, "multiplexed payload is not a dict"),
        (
            '{"stream": "nope", "payload": {}}',
            4002,
            "invalid multiplexed frame (stream not mapped)",
        ),
    ],
)
async def test_bad_frames_close_with_a_code_and_a_reason(
    server: ServerProcess, frame: str | bytes, code: int, reason: str
) -> None:
    async with asyncio.timeout(10), websockets.connect(url(server)) as socket:
        await socket.send(frame)
        with pytest.raises(ConnectionClosed):
            while True:
                await socket.recv()
        assert socket.close_code == code
        assert socket.close_reason == reason
    wait_for_log(server, f"with {code}: {reason}")


async def next_presence(socket: Any) -> dict[str, Any]:
    """The next presence payload, skipping sockets of earlier tests still leaving (as "?")."""
    while True:
        payload = await next_on(socket, "presence")
        if payload.get("left") != "?":
            return payload


async def test_disconnect_reaches_every_stream(server: ServerProcess) -> None:
    async with asyncio.timeout(15), websockets.connect(url(server)) as watcher:
        await watcher.send(json.dumps({"stream": "presence", "payload": {"name": "watcher"}}))
        assert await next_presence(watcher) == {"joined": "watcher"}
        async with websockets.connect(url(server)) as leaver:
            await leaver.send(json.dumps({"stream": "presence", "payload": {"name": "ada"}}))
            assert await next_presence(leaver) == {"joined": "ada"}
            await leaver.close(code=4999)
        assert await next_presence(watcher) == {"left": "ada", "code": 4999}
