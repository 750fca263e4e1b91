"""Timeouts and full channels: 503 after the http timeout (the bridge's and the server's),
503 on a full http.request / websocket.connect channel, close 1013 on a full websocket.receive
channel. Each test runs its own site, with its own options."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
import websockets

from tests.conftest import free_port
from tests.interface.support import WAIT, Site, next_message, nothing_on, open_websocket
from tests.interface.test_http import answered, assert_no_traceback, unique_path


async def _timed_out(site: Site, *options: str) -> None:
    server = site.server(*options)
    layer = site.layer()
    try:
        path = unique_path("slow")
        async with httpx.AsyncClient(timeout=WAIT) as client:
            getting = asyncio.create_task(client.get(server.url + path))
            message = await next_message(layer, "http.request", path)
            response = await getting
            assert response.status_code == 503
            gone = await next_message(layer, "http.disconnect", path)
            assert gone == {"reply_channel": message["reply_channel"], "path": path}
            await layer.send(message["reply_channel"], {"status": 200, "content": b"late"})
        await answered(server, layer, unique_path("after-timeout"))
        assert_no_traceback(server)
    finally:
        await layer.close()


async def test_the_bridge_timeout_answers_503(make_site: Callable[..., Site]) -> None:
    await _timed_out(make_site(http_timeout=1.0))


async def test_the_server_http_timeout_answers_503(make_site: Callable[..., Site]) -> None:
    await _timed_out(make_site(), "--http-timeout", "1")


async def test_a_full_request_channel_answers_503(make_site: Callable[..., Site]) -> None:
    site = make_site(channel_capacity={"http.request": 1})
    server = site.server()
    layer = site.layer()
    try:
        path = unique_path("full")
        async with httpx.AsyncClient(timeout=WAIT) as client:
            gets = [asyncio.create_task(client.get(server.url + path)) for _ in range(3)]
            done, pending = await asyncio.wait(gets, timeout=WAIT, return_when="FIRST_COMPLETED")
            while len(pending) > 1:
                more, pending = await asyncio.wait(
                    pending, timeout=WAIT, return_when="FIRST_COMPLETED"
                )
                done |= more
            assert [task.result().status_code for task in done] == [503, 503]
            message = await next_message(layer, "http.request", path)
            await layer.send(message["reply_channel"], {"status": 200, "content": b"queued"})
            (last,) = pending
            assert (await last).content == b"queued"
        assert_no_traceback(server)
    finally:
        await layer.close()


async def test_a_full_connect_channel_answers_503(make_site: Callable[..., Site]) -> None:
    site = make_site(channel_capacity={"websocket.connect": 1})
    server = site.server()
    layer = site.layer()
    try:
        path = unique_path("full-connect")

        attempts = [asyncio.create_task(open_websocket(server.ws_url + path)) for _ in range(2)]
        done, pending = await asyncio.wait(attempts, timeout=WAIT, return_when="FIRST_COMPLETED")
        (refused,) = done
        error = refused.exception()
        assert isinstance(error, websockets.InvalidStatus)
        assert error.response.status_code == 503
        message = await next_message(layer, "websocket.connect", path)
        await layer.send(message["reply_channel"], {"accept": True, "text": "in"})
        (waiting,) = pending
        connection = await waiting
        assert await asyncio.wait_for(connection.recv(), WAIT) == "in"
        await connection.close()
    finally:
        await layer.close()


async def test_a_full_receive_channel_closes_1013(make_site: Callable[..., Site]) -> None:
    site = make_site(channel_capacity={"websocket.receive": 1})
    server = site.server()
    layer = site.layer()
    try:
        path = unique_path("full-receive")
        opening = asyncio.create_task(open_websocket(server.ws_url + path))
        message = await next_message(layer, "websocket.connect", path)
        await layer.send(message["reply_channel"], {"accept": True})
        async with await opening as connection:
            for text in ("1", "2", "3"):
                await connection.send(text)
            await asyncio.wait_for(connection.wait_closed(), WAIT)
            assert connection.close_code == 1013
        first = await next_message(layer, "websocket.receive", path)
        assert (first["order"], first["text"]) == (1, "1")
        gone = await next_message(layer, "websocket.disconnect", path)
        assert gone["reply_channel"] == message["reply_channel"]
        assert await nothing_on(layer, "websocket.receive", path, within=0.5)
    finally:
        await layer.close()


async def test_an_unreachable_layer_answers_503() -> None:
    site = Site("redis", redis_port=free_port(), reconnect_timeout=0.5)
    try:
        server = site.server()
        async with httpx.AsyncClient(timeout=WAIT) as client:
            for _ in range(2):  # and the server goes on answering
                response = await client.get(server.url + unique_path("down"))
                assert response.status_code == 503
        with pytest.raises(websockets.InvalidStatus) as refused:
            await open_websocket(server.ws_url + unique_path("down"))
        assert refused.value.response.status_code == 503
        assert server.process.poll() is None
    finally:
        await asyncio.to_thread(site.close)


@pytest.mark.parametrize("server_timeout", [None, 0.5, 600.0])
def test_the_server_http_timeout_reaches_the_bridge(server_timeout: float | None) -> None:
    """``headrace project.asgi:channel_layer --http-timeout N`` gives the bridge N (shorter or
    longer than its 120 s default, Daphne 1.x's); without the option the default stays."""
    from headrace.asgi import AsgiChannelLayer
    from headrace.interface import DEFAULT_HTTP_TIMEOUT, InterfaceApplication
    from headrace.layers import InMemoryChannelLayer
    from headrace.server.server import serving_application

    layer = AsgiChannelLayer(InMemoryChannelLayer())
    try:
        bridge = serving_application(layer, server_timeout)
        assert isinstance(bridge, InterfaceApplication)
        expected = DEFAULT_HTTP_TIMEOUT if server_timeout is None else server_timeout
        assert bridge.http_timeout == expected
    finally:
        layer.close()
