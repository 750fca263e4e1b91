"""Server options apply to the bridge unchanged: ``--workers`` (several server processes on one
layer) and ``--root-path``; plus back-pressure on a request body channel."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import httpx

from headrace.layers.base import BaseChannelLayer
from tests.interface.support import WAIT, Site, next_message, open_websocket
from tests.interface.test_http import backend_body_channel, unique_path


async def _answer_requests(layer: BaseChannelLayer, path: str, count: int) -> None:
    """Answer ``count`` requests for ``path`` (whichever server process sent them)."""
    for _ in range(count):
        message = await next_message(layer, "http.request", path)
        assert (message["path"], message["root_path"]) == (path, "/forum")
        await layer.send(message["reply_channel"], {"status": 200, "content": b"ok"})


async def test_workers_and_root_path(make_site: Callable[..., Site]) -> None:
    site = make_site()
    server = site.server("--workers", "2", "--root-path", "/forum")
    layer = site.layer()
    try:
        path = "/forum" + unique_path("multi")
        count = 20
        answering = asyncio.create_task(_answer_requests(layer, path, count))
        # new connections each time, so both server processes get some
        for _ in range(count):
            async with httpx.AsyncClient(timeout=WAIT) as client:
                response = await client.get(server.url + path)
                assert (response.status_code, response.content) == (200, b"ok")
        await answering

        ws_path = "/forum" + unique_path("ws")
        opening = asyncio.create_task(open_websocket(server.ws_url + ws_path))
        connect = await next_message(layer, "websocket.connect", ws_path)
        assert (connect["path"], connect["root_path"]) == (ws_path, "/forum")
        await layer.send(connect["reply_channel"], {"accept": True, "text": "hi"})
        connection = await opening
        assert await asyncio.wait_for(connection.recv(), WAIT) == "hi"
        await connection.close()
    finally:
        await layer.close()


async def test_a_full_body_channel_waits_for_the_worker(make_site: Callable[..., Site]) -> None:
    site = make_site(channel_capacity={"http.request.body*": 1})
    server = site.server()
    layer = site.layer()
    try:
        path = unique_path("slow-reader")
        body = os.urandom(3 * 1024 * 1024)
        async with httpx.AsyncClient(timeout=WAIT) as client:
            posting = asyncio.create_task(client.post(server.url + path, content=body))
            message = await next_message(layer, "http.request", path)
            received = message["body"]
            while True:
                await asyncio.sleep(0.1)  # a slow worker: the bridge finds the channel full
                chunk = await next_message(layer, backend_body_channel(message["body_channel"]))
                received += chunk["content"]
                if not chunk["more_content"]:
                    break
            assert received == body
            await layer.send(message["reply_channel"], {"status": 204})
            assert (await posting).status_code == 204
    finally:
        await layer.close()
