"""HTTP/1.1 behaviour with real clients: scope, bodies, keep-alive, pipelining, 100-continue."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from headrace._types import Receive, Scope, Send
from headrace.server.wires import http11
from tests.server.helpers import (
    WAIT,
    echo_app,
    open_raw,
    read_response,
    read_until_closed,
    scope_app,
    serve,
    text_app,
    url,
)


async def test_scope_is_complete() -> None:
    async with serve(scope_app) as server, httpx.AsyncClient() as client:
        response = await client.get(
            url(server, "/caf%C3%A9/x%2Fy?a=1&b=%20"),
            headers=[("X-Dup", "one"), ("x-dup", "two"), ("X-Other", "v")],
        )
    assert response.status_code == 200
    scope = response.json()
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/café/x/y"
    assert scope["raw_path"] == "/caf%C3%A9/x%2Fy"
    assert scope["query_string"] == "a=1&b=%20"
    assert scope["root_path"] == ""
    names = [name for name, _ in scope["headers"]]
    assert all(name == name.lower() for name in names)
    dups = [value for name, value in scope["headers"] if name == "x-dup"]
    assert dups == ["one", "two"]
    assert names.index("x-dup") < names.index("x-other")
    assert scope["client"][0] == "127.0.0.1"
    assert scope["server"] == ["127.0.0.1", server.addresses[0][1]]
    assert scope["state"] == {}
    assert scope["extensions"] == {"http.response.early_hint": {}}


async def test_date_server_and_reason_phrase() -> None:
    async with serve(text_app) as server:
        reader, writer = await open_raw(server)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        status_line = await asyncio.wait_for(reader.readline(), WAIT)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        writer.close()
    assert status_line == b"HTTP/1.1 200 OK\r\n"
    assert b"\r\ndate: " in b"\r\n" + head
    assert b"server: headrace\r\n" in head


async def test_post_chunked_request_and_chunked_response() -> None:
    async def body() -> AsyncIterator[bytes]:
        for index in range(5):
            yield b"part%d;" % index

    async with serve(echo_app) as server, httpx.AsyncClient() as client:
        response = await client.post(url(server), content=body())
    assert response.status_code == 200
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.content == b"part0;part1;part2;part3;part4;"


async def test_large_body_streams_through() -> None:
    payload = bytes(range(256)) * 8192  # 2 MiB
    async with serve(echo_app) as server, httpx.AsyncClient() as client:
        response = await client.post(url(server), content=payload)
    assert response.content == payload


async def test_head_has_no_body() -> None:
    async with serve(text_app) as server:
        reader, writer = await open_raw(server)
        writer.write(b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = await read_until_closed(reader)
        writer.close()
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"content-length: 5\r\n" in raw
    assert raw.endswith(b"\r\n\r\n")


async def test_head_of_a_streamed_response_writes_no_chunks() -> None:
    # The HEAD answer says "chunked" like the GET would, but no chunk (not even the last one)
    # may follow: the next response on the connection must start right after the head.
    async def streaming(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async with serve(streaming) as server:
        reader, writer = await open_raw(server)
        writer.write(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        rest = await read_until_closed(reader)
        writer.close()
    assert b"transfer-encoding: chunked\r\n" in head
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n")
    assert rest.endswith(b"\r\n\r\n4\r\npart\r\n0\r\n\r\n")


async def test_http10_streamed_response_is_close_delimited() -> None:
    async def streaming(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b"})

    async with serve(streaming) as server:
        reader, writer = await open_raw(server)
        writer.write(b"GET / HTTP/1.0\r\n\r\n")
        raw = await read_until_closed(reader)
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 OK")
    assert b"transfer-encoding" not in head and b"content-length" not in head
    assert body == b"ab"


async def test_pipelined_requests_answered_in_order() -> None:
    async def slow_first(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/1":
            for _ in range(10):
                await asyncio.sleep(0)  # yield: later requests are parsed meanwhile
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    async with serve(slow_first) as server:
        reader, writer = await open_raw(server)
        writer.write(b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in (1, 2, 3)))
        bodies = [(await read_response(reader))[2] for _ in range(3)]
        writer.close()
    assert bodies == [b"/1", b"/2", b"/3"]


async def test_pipelined_queue_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    # One read can carry far more pipelined requests than reading-pauses-at; the queue stops
    # at MAX_QUEUED: those are answered (the last with Connection: close), later ones ignored.
    monkeypatch.setattr(http11, "MAX_QUEUED", 4)
    release = asyncio.Event()

    async def held_first(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/0":
            await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    async with serve(held_first) as server:
        reader, writer = await open_raw(server)
        writer.write(b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(10)))

        async def queue_full() -> None:
            # The server offers no event for "these requests were parsed": poll, bounded.
            connections = server.state.connections
            while not any(getattr(c.handler, "_refusing", False) for c in connections):  # noqa: ASYNC110
                await asyncio.sleep(0.005)

        await asyncio.wait_for(queue_full(), WAIT)
        release.set()
        responses = [await read_response(reader) for _ in range(5)]
        rest = await read_until_closed(reader)
        writer.close()
    assert [body for _, _, body in responses] == [b"/0", b"/1", b"/2", b"/3", b"/4"]
    assert responses[-1][1][b"connection"] == b"close"
    assert rest == b""


async def test_keep_alive_reuses_and_idle_timeout_closes() -> None:
    async with serve(text_app, timeout_keep_alive=0.2) as server:
        reader, writer = await open_raw(server)
        for _ in range(2):
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await read_response(reader))[2] == b"hello"
        assert await read_until_closed(reader) == b""
        writer.close()


async def test_expect_100_continue_sent_on_first_receive() -> None:
    gate = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await gate.wait()
        message = await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": message["body"]})

    async with serve(app) as server:
        reader, writer = await open_raw(server)
        writer.write(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        await writer.drain()
        early = asyncio.create_task(reader.readuntil(b"\r\n\r\n"))
        done, _ = await asyncio.wait({early}, timeout=0.1)
        assert not done  # nothing before the app asks for the body
        gate.set()
        assert await asyncio.wait_for(early, WAIT) == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"data")
        status, _, body = await read_response(reader)
        writer.close()
    assert (status, body) == (200, b"data")


async def test_no_100_continue_when_app_answers_without_reading() -> None:
    async with serve(text_app) as server:
        reader, writer = await open_raw(server)
        writer.write(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        status, _, body = await read_response(reader)
        writer.close()
    assert (status, body) == (200, b"hello")


async def test_disconnect_delivered_when_client_leaves() -> None:
    got: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        got.set_result(dict(await receive()))

    async with serve(app) as server:
        _reader, writer = await open_raw(server)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        writer.close()
        message = await asyncio.wait_for(got, WAIT)
    assert message == {"type": "http.disconnect"}


async def test_receive_after_response_is_disconnect() -> None:
    got: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        got.set_result(dict(await receive()))

    async with serve(app) as server, httpx.AsyncClient() as client:
        response = await client.get(url(server))
        message = await asyncio.wait_for(got, WAIT)
    assert response.status_code == 204
    assert message == {"type": "http.disconnect"}


async def test_back_pressure_pauses_reading_until_app_catches_up() -> None:
    release = asyncio.Event()
    total = 4 * 1024 * 1024

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await release.wait()
        size = 0
        while True:
            message = await receive()
            size += len(message["body"])
            if not message["more_body"]:
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(size).encode()})

    async with serve(app) as server:
        reader, writer = await open_raw(server)
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % total)
        writer.write(b"x" * total)
        paused = False
        for _ in range(500):  # bounded poll of server state, not a timing assertion
            connections = list(server.state.connections)
            if connections and connections[0].reading_paused:
                paused = True
                break
            await asyncio.sleep(0.01)
        assert paused
        release.set()
        await asyncio.wait_for(writer.drain(), WAIT)
        status, _, body = await read_response(reader)
        writer.close()
    assert (status, body) == (200, str(total).encode())


async def test_asgi2_app_is_accepted() -> None:
    class Asgi2:
        def __init__(self, scope: Scope) -> None:
            self.scope = scope

        async def __call__(self, receive: Receive, send: Send) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"two"})

    async with serve(Asgi2) as server, httpx.AsyncClient() as client:  # type: ignore[arg-type]
        response = await client.get(url(server))
    assert response.text == "two"


async def test_content_length_response_and_json_roundtrip() -> None:
    async with serve(scope_app) as server, httpx.AsyncClient() as client:
        response = await client.post(url(server, "/p"), content=b"abc")
    assert response.headers["content-length"] == str(len(response.content))
    assert json.loads(response.content)["body"] == "abc"


async def test_curl_chunked_upload_and_download(tmp_path: Path) -> None:
    payload = tmp_path / "upload.bin"
    payload.write_bytes(b"0123456789" * 10000)
    async with serve(echo_app) as server:
        process = await asyncio.create_subprocess_exec(
            "curl", "-s", "--http1.1", "-H", "Transfer-Encoding: chunked",
            "--data-binary", f"@{payload}", "-D", str(tmp_path / "headers"), url(server, "/up"),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, _ = await asyncio.wait_for(process.communicate(), WAIT)
    assert stdout == payload.read_bytes()
    assert "transfer-encoding: chunked" in (tmp_path / "headers").read_text().lower()
