"""Section 4: bad input and app errors never hang a connection or leak a traceback."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import httpx
import pytest

from headrace._types import Receive, Scope, Send
from headrace.server.server import WIRES
from tests.server.helpers import (
    WAIT,
    echo_app,
    open_raw,
    raw_exchange,
    read_response,
    read_until_closed,
    scope_app,
    serve,
    text_app,
    url,
)

BAD_REQUESTS = {
    "malformed request line": b"GET\r\n\r\n",
    "garbage request line": b"\x16\x03\x01 hello\r\n\r\n",
    "invalid header name": b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n",
    "header without colon": b"GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n",
    "control byte in value": b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n",
    "NUL in value": b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n",
    "content-length with transfer-encoding": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    ),
    "differing content-lengths": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"
    ),
    "bad chunk size": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
    ),
    "missing host": b"GET / HTTP/1.1\r\n\r\n",
    "two host headers": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "two host headers, same value": b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
    "two host headers, HTTP/1.0": b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
    "non-ascii path": b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n",
    "negative content-length": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
}


@pytest.mark.parametrize("request_bytes", BAD_REQUESTS.values(), ids=list(BAD_REQUESTS))
async def test_bad_input_is_answered_400_and_closed(request_bytes: bytes) -> None:
    async with serve(echo_app) as server:
        reader, writer = await open_raw(server)
        writer.write(request_bytes)
        raw = await read_until_closed(reader)
        writer.close()
    assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Traceback" not in raw
    assert b"connection: close" in raw


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"HEAD / HTTP/1.1\r\n\r\n",  # no Host: rejected before the app sees it
        b"HEAD / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\x05\n",
    ],
    ids=["before the app", "bad chunk while the app reads"],
)
async def test_rejected_head_request_gets_no_body(request_bytes: bytes) -> None:
    async with serve(scope_app) as server:
        reader, writer = await open_raw(server)
        writer.write(request_bytes)
        raw = await read_until_closed(reader)
        writer.close()
    assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert raw.endswith(b"\r\n\r\n")  # content-length announced, body omitted
    assert b"content-length: " in raw


async def test_headers_too_large_431() -> None:
    async with serve(text_app, max_request_header_size=1024) as server:
        request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n"
        status, _, _ = await raw_exchange(server, request)
    assert status == 431


async def test_body_too_large_by_content_length_413() -> None:
    async with serve(echo_app, max_request_body_size=10) as server:
        status, _, _ = await raw_exchange(
            server, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n" + b"a" * 11
        )
    assert status == 413


async def test_body_too_large_chunked_413() -> None:
    async def reads_late(scope: Scope, receive: Receive, send: Send) -> None:
        await asyncio.Event().wait()

    async with serve(reads_late, max_request_body_size=10, application_close_timeout=0) as server:
        status, _, _ = await raw_exchange(
            server,
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"8\r\naaaaaaaa\r\n8\r\naaaaaaaa\r\n0\r\n\r\n",
        )
    assert status == 413


UPLOAD = b"x" * 4_000_000  # far more than the socket buffers hold


async def test_413_reaches_a_client_that_is_still_uploading() -> None:
    # The server rejects early and closes; the client is still sending. Without lingering, the
    # unread upload makes the server's kernel send RST and the client never sees the 413.
    async with (
        serve(echo_app, max_request_body_size=1000) as server,
        httpx.AsyncClient() as client,
    ):
        response = await client.post(url(server), content=UPLOAD)
    assert response.status_code == 413


async def test_response_reaches_a_client_whose_body_the_app_ignored() -> None:
    async with serve(text_app) as server, httpx.AsyncClient() as client:
        response = await client.post(url(server), content=UPLOAD)
        again = await client.get(url(server))  # the client opens a new connection
    assert (response.status_code, response.text) == (200, "hello")
    assert response.headers["connection"] == "close"
    assert again.status_code == 200


async def test_slow_headers_close_the_connection() -> None:
    async with serve(text_app, timeout_request_headers=0.2) as server:
        reader, writer = await open_raw(server)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finishes the head
        assert await read_until_closed(reader) == b""
        writer.close()


async def test_exception_before_response_is_500(caplog: pytest.LogCaptureFixture) -> None:
    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise ValueError("boom")

    with caplog.at_level(logging.ERROR, "headrace.server.http"):
        async with serve(broken) as server:
            status, headers, body = await raw_exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 500
    assert headers[b"content-type"].startswith(b"text/plain")
    assert b"boom" not in body and b"Traceback" not in body
    assert any(record.exc_info for record in caplog.records)


async def test_exception_after_response_started_closes() -> None:
    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise ValueError("boom")

    async with serve(broken) as server:
        reader, writer = await open_raw(server)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        raw = await read_until_closed(reader)
        writer.close()
    assert raw.startswith(b"HTTP/1.1 200 OK")
    assert b"0\r\n\r\n" not in raw  # the chunked body was never terminated


async def test_app_returning_without_response_is_500() -> None:
    async def silent(scope: Scope, receive: Receive, send: Send) -> None:
        return

    async with serve(silent) as server:
        status, _, _ = await raw_exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 500


INVALID_SEQUENCES = {
    "wrong type": [{"type": "http.response.nonsense"}],
    "body before start": [{"type": "http.response.body", "body": b"x"}],
    "start twice": [
        {"type": "http.response.start", "status": 200, "headers": []},
        {"type": "http.response.start", "status": 200, "headers": []},
    ],
    "bad status": [{"type": "http.response.start", "status": "200", "headers": []}],
    "informational status as the response": [
        {"type": "http.response.start", "status": 103, "headers": []},
        {"type": "http.response.body", "body": b""},
    ],
    "str body": [
        {"type": "http.response.start", "status": 200, "headers": []},
        {"type": "http.response.body", "body": "text"},
    ],
    "control byte in header value": [
        {"type": "http.response.start", "status": 200, "headers": [(b"x", b"a\x01b")]},
        {"type": "http.response.body", "body": b""},
    ],
    "DEL in header value": [
        {"type": "http.response.start", "status": 200, "headers": [(b"x", b"a\x7fb")]},
        {"type": "http.response.body", "body": b""},
    ],
    "header name not a token": [
        {"type": "http.response.start", "status": 200, "headers": [(b"x y", b"v")]},
        {"type": "http.response.body", "body": b""},
    ],
    "header injection": [
        {"type": "http.response.start", "status": 200, "headers": [(b"x", b"a\r\nb: c")]},
        {"type": "http.response.body", "body": b""},
    ],
}


@pytest.mark.parametrize("messages", INVALID_SEQUENCES.values(), ids=list(INVALID_SEQUENCES))
async def test_invalid_app_messages_give_500(messages: list[dict[str, object]]) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        for message in messages:
            await send(message)

    async with serve(app) as server:
        status, _, body = await raw_exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 500
    assert body == b"Internal Server Error\n"


async def test_limit_concurrency_503() -> None:
    entered = asyncio.Event()
    release = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        entered.set()
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async with serve(app, limit_concurrency=1) as server:
        first_reader, first_writer = await open_raw(server)
        first_writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(entered.wait(), WAIT)
        status, _, _ = await raw_exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        release.set()
        first = await read_response(first_reader)
        first_writer.close()
    assert status == 503
    assert first[0] == 200


async def test_http_timeout_503_before_start() -> None:
    async def hangs(scope: Scope, receive: Receive, send: Send) -> None:
        await asyncio.Event().wait()

    async with serve(hangs, http_timeout=0.2) as server:
        status, _, _ = await raw_exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 503


async def test_http_timeout_cuts_off_started_response() -> None:
    async def stalls(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x", "more_body": True})
        await asyncio.Event().wait()

    async with serve(stalls, http_timeout=0.2) as server:
        reader, writer = await open_raw(server)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        raw = await read_until_closed(reader)
        writer.close()
    assert raw.startswith(b"HTTP/1.1 200 OK")
    assert not raw.endswith(b"0\r\n\r\n")


async def test_content_length_overrun_by_app_aborts() -> None:
    async def liar(scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
        )
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"bcd"})

    async with serve(liar) as server:
        reader, writer = await open_raw(server)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        raw = await read_until_closed(reader)
        writer.close()
    assert raw.endswith(b"\r\n\r\na")


async def test_websocket_upgrade_without_websocket_support_is_501() -> None:
    # A server given no WebSocket wire.
    async with serve(text_app, wires=replace(WIRES, websocket=None)) as server:
        status, _, body = await raw_exchange(
            server,
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
    assert status == 501
    assert body.startswith(b"Not Implemented")


async def test_http2_preface_without_http2_support_is_505() -> None:
    # A server given no HTTP/2 wire.
    async with serve(text_app, wires=replace(WIRES, http2=None)) as server:
        reader, writer = await open_raw(server)
        writer.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        raw = await read_until_closed(reader)
        writer.close()
    assert raw.startswith(b"HTTP/1.1 505 HTTP Version Not Supported")


async def test_unknown_upgrade_is_served_as_plain_http() -> None:
    async with serve(text_app) as server:
        reader, writer = await open_raw(server)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: foo/1\r\nConnection: Upgrade\r\n\r\n")
        status, headers, body = await read_response(reader)
        writer.close()
    assert (status, body) == (200, b"hello")
    assert headers[b"connection"] == b"close"
