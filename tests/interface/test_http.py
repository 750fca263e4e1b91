"""HTTP through the bridge: a real ``headrace`` process serving the bridge, the test as the
worker on the same layer (IPC and Redis), real clients (httpx, raw sockets)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from typing import Any

import httpx
import pytest

from headrace.asgi import backend_name
from headrace.interface import DEFAULT_BODY_CHUNK_SIZE
from headrace.layers.base import BaseChannelLayer
from tests.interface.support import WAIT, InterfaceServer, next_message

REQUEST_KEYS = {
    "reply_channel",
    "http_version",
    "method",
    "scheme",
    "path",
    "query_string",
    "root_path",
    "headers",
    "body",
    "client",
    "server",
}


def unique_path(name: str) -> str:
    return f"/{name}/{uuid.uuid4().hex[:8]}"


def backend_body_channel(name: str) -> str:
    assert name.startswith("http.request.body?")
    return backend_name(name)


async def raw_request(server: InterfaceServer, request: bytes) -> asyncio.StreamWriter:
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(request)
    await writer.drain()
    return writer


def assert_no_traceback(server: InterfaceServer) -> None:
    assert "Traceback" not in server.output, server.output


async def test_request_keys_and_a_streamed_response(
    server: InterfaceServer, layer: BaseChannelLayer
) -> None:
    path = unique_path("héllo wörld")
    quoted = path.replace("é", "%C3%A9").replace("ö", "%C3%B6").replace(" ", "%20")
    headers = {"X-Custom": "v", "X_Smuggled": "no"}
    async with httpx.AsyncClient(timeout=WAIT) as client:
        request = client.build_request("GET", server.url + quoted + "?q=1&x=%20", headers=headers)
        sending = asyncio.create_task(client.send(request, stream=True))
        message = await next_message(layer, "http.request", path)
        assert set(message) == REQUEST_KEYS
        assert message["http_version"] == "1.1"
        assert message["method"] == "GET"
        assert message["scheme"] == "http"
        assert message["path"] == path
        assert message["query_string"] == b"q=1&x=%20"
        assert message["root_path"] == ""
        assert message["body"] == b""
        assert [b"x-custom", b"v"] in message["headers"]
        assert all(name != b"x_smuggled" for name, _ in message["headers"])
        assert all(isinstance(pair, list) and len(pair) == 2 for pair in message["headers"])
        assert message["client"][0] == "127.0.0.1" and isinstance(message["client"][1], int)
        assert message["server"] == ["127.0.0.1", server.port]
        reply = message["reply_channel"]
        assert reply.startswith("http.response.") and "!" in reply
        start = {
            "status": 201,
            "headers": [[b"X-Reply", b"yes"], (b"content-type", b"text/plain")],
            "content": b"first,",
            "more_content": True,
        }
        await layer.send(reply, start)
        response = await sending
        assert response.status_code == 201
        assert response.headers["x-reply"] == "yes"
        chunks = response.aiter_raw()
        received = await anext(chunks)
        assert received == b"first,"  # on the wire before the worker sent the rest
        await layer.send(reply, {"content": b"second,", "more_content": True})
        await layer.send(reply, {"content": b"last"})
        async for chunk in chunks:
            received += chunk
        assert received == b"first,second,last"
        await response.aclose()
    assert_no_traceback(server)


async def test_big_body_streams_through_a_body_channel(
    server: InterfaceServer, layer: BaseChannelLayer
) -> None:
    path = unique_path("upload")
    body = os.urandom(2 * 1024 * 1024 + 12345)
    async with httpx.AsyncClient(timeout=WAIT) as client:
        posting = asyncio.create_task(client.post(server.url + path, content=body))
        message = await next_message(layer, "http.request", path)
        assert set(message) == REQUEST_KEYS | {"body_channel"}
        assert message["method"] == "POST"
        assert message["body"] == body[:DEFAULT_BODY_CHUNK_SIZE]
        received = message["body"]
        chunks = 0
        while True:
            chunk = await next_message(layer, backend_body_channel(message["body_channel"]))
            assert set(chunk) == {"content", "closed", "more_content"}
            assert chunk["closed"] is False
            assert len(chunk["content"]) <= DEFAULT_BODY_CHUNK_SIZE
            received += chunk["content"]
            chunks += 1
            if not chunk["more_content"]:
                break
        assert received == body
        assert chunks == 4
        digest = hashlib.sha256(received).hexdigest().encode()
        await layer.send(message["reply_channel"], {"status": 200, "content": digest})
        response = await posting
        assert response.status_code == 200
        assert response.content == hashlib.sha256(body).hexdigest().encode()


async def test_a_client_leaving_mid_body_closes_the_body_channel(
    server: InterfaceServer, layer: BaseChannelLayer
) -> None:
    path = unique_path("abandoned")
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 3000000\r\n\r\n".encode()
    writer = await raw_request(server, head + b"y" * 1_000_000)
    message = await next_message(layer, "http.request", path)
    assert "body_channel" in message
    writer.close()
    channel = backend_body_channel(message["body_channel"])
    while True:
        chunk = await next_message(layer, channel)
        if chunk["closed"]:
            assert chunk == {"content": b"", "closed": True, "more_content": False}
            break
        assert chunk["more_content"] is True
    gone = await next_message(layer, "http.disconnect", path)
    assert gone == {"reply_channel": message["reply_channel"], "path": path}


async def test_long_poll_answered_later_through_a_group(
    server: InterfaceServer, layer: BaseChannelLayer
) -> None:
    path = unique_path("poll")
    group = f"news-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(timeout=WAIT) as client:
        polls = [asyncio.create_task(client.get(server.url + path)) for _ in range(3)]
        for _ in polls:
            message = await next_message(layer, "http.request", path)
            await layer.group_add(group, message["reply_channel"])
        await asyncio.sleep(1.5)  # the requests stay open while nothing happens
        assert not any(poll.done() for poll in polls)
        await layer.group_send(group, {"status": 200, "content": b"news!"})
        responses = await asyncio.gather(*polls)
    assert [(r.status_code, r.content) for r in responses] == [(200, b"news!")] * 3


async def test_client_abort_sends_http_disconnect_and_a_late_reply_is_dropped(
    server: InterfaceServer, layer: BaseChannelLayer
) -> None:
    path = unique_path("abort")
    writer = await raw_request(server, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    message = await next_message(layer, "http.request", path)
    writer.close()
    gone = await next_message(layer, "http.disconnect", path)
    assert gone == {"reply_channel": message["reply_channel"], "path": path}
    # the worker answers anyway: dropped, and the server goes on serving
    await layer.send(message["reply_channel"], {"status": 200, "content": b"too late"})
    await layer.send(message["reply_channel"], {"content": b"again"})
    await answered(server, layer, unique_path("after-abort"))
    assert_no_traceback(server)


async def answered(server: InterfaceServer, layer: BaseChannelLayer, path: str) -> None:
    """One request answered 200 by the test-side worker (the server still serves)."""
    async with httpx.AsyncClient(timeout=WAIT) as client:
        getting = asyncio.create_task(client.get(server.url + path))
        message = await next_message(layer, "http.request", path)
        await layer.send(message["reply_channel"], {"status": 200, "content": b"ok"})
        response = await getting
    assert (response.status_code, response.content) == (200, b"ok")


BAD_REPLIES: list[Any] = [
    {"status": 200, "bogus": True},
    {"status": "200"},
    {"status": 200, "headers": [[b"x-a"]]},
    {"status": 200, "headers": "x-a: 1"},
    {"status": 200, "content": 12},
    {"status": 99},
    {"content": b"no status"},
]


@pytest.mark.parametrize("reply", BAD_REPLIES, ids=[str(i) for i in range(len(BAD_REPLIES))])
async def test_a_bad_first_reply_is_a_500(
    server: InterfaceServer, layer: BaseChannelLayer, reply: Any
) -> None:
    path = unique_path("bad")
    async with httpx.AsyncClient(timeout=WAIT) as client:
        getting = asyncio.create_task(client.get(server.url + path))
        message = await next_message(layer, "http.request", path)
        await layer.send(message["reply_channel"], reply)
        response = await getting
    assert response.status_code == 500
    assert await next_message(layer, "http.disconnect", path)
    await answered(server, layer, unique_path("after-bad"))
    assert_no_traceback(server)


async def test_a_bad_chunk_cuts_the_response_off(
    server: InterfaceServer, layer: BaseChannelLayer
) -> None:
    path = unique_path("bad-chunk")
    async with httpx.AsyncClient(timeout=WAIT) as client:
        getting = asyncio.create_task(client.get(server.url + path))
        message = await next_message(layer, "http.request", path)
        reply = message["reply_channel"]
        await layer.send(reply, {"status": 200, "content": b"a", "more_content": True})
        await layer.send(reply, {"status": 200, "content": b"twice"})
        with pytest.raises(httpx.RemoteProtocolError):
            await getting
    assert await next_message(layer, "http.disconnect", path)
    await answered(server, layer, unique_path("after-bad-chunk"))


async def test_http2_requests_travel_the_same_way(
    server: InterfaceServer, layer: BaseChannelLayer
) -> None:
    path = unique_path("h2")
    async with httpx.AsyncClient(http1=False, http2=True, timeout=WAIT) as client:
        getting = asyncio.create_task(client.get(server.url + path))
        message = await next_message(layer, "http.request", path)
        assert set(message) == REQUEST_KEYS
        assert message["http_version"] == "2"
        await layer.send(message["reply_channel"], {"status": 200, "content": b"over h2"})
        response = await getting
    assert (response.http_version, response.content) == ("HTTP/2", b"over h2")
