"""End to end as a 1.x site runs it: ``headrace tests.interface.project_asgi:channel_layer``
(the target is the ASGI-1 layer, not an application) and a worker on the synchronous ASGI-1
view (``receive(channels, block=True)`` / ``send``), over IPC and Redis."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from headrace.asgi import AsgiChannelLayer
from tests.interface.support import WAIT, InterfaceServer, Site, open_websocket
from tests.interface.test_http import assert_no_traceback, unique_path


@pytest.fixture(scope="module")
def project_server(site: Site) -> InterfaceServer:
    return site.server(target="tests.interface.project_asgi:channel_layer")


@pytest.fixture
def view(site: Site) -> Iterator[AsgiChannelLayer]:
    view = AsgiChannelLayer(site.layer())
    try:
        yield view
    finally:
        view.close()


def sync_receive(view: AsgiChannelLayer, channel: str, path: str | None = None) -> dict[str, Any]:
    """What a 1.x worker does: blocking receives until a message (for ``path``) arrives."""
    for _ in range(int(WAIT / 5) + 2):
        name, message = view.receive([channel], block=True)
        if name is not None and (path is None or message.get("path") == path):
            assert name == channel
            return dict(message)
    raise TimeoutError(f"nothing on {channel}")


def serve_one_upload(view: AsgiChannelLayer, path: str) -> int:
    """A 1.x worker reading a body through its body channel, then answering."""
    message = sync_receive(view, "http.request", path)
    body = message["body"]
    assert message["body_channel"].startswith("http.request.body?")
    while True:
        chunk = sync_receive(view, message["body_channel"])
        body += chunk["content"]
        if not chunk["more_content"]:
            break
    reply = {
        "status": 200,
        "headers": [(b"Content-Type", b"text/plain")],
        "content": b"%d" % len(body),
    }
    view.send(message["reply_channel"], reply)
    return len(body)


def echo_one_socket(view: AsgiChannelLayer, path: str) -> None:
    connect = sync_receive(view, "websocket.connect", path)
    assert connect["order"] == 0
    view.send(connect["reply_channel"], {"accept": True})
    frame = sync_receive(view, "websocket.receive", path)
    view.send(frame["reply_channel"], {"text": frame["text"].upper(), "close": True})
    gone = sync_receive(view, "websocket.disconnect", path)
    assert (gone["order"], gone["code"]) == (2, 1000)


async def test_a_layer_target_is_served_through_the_bridge(
    project_server: InterfaceServer, view: AsgiChannelLayer
) -> None:
    path = unique_path("upload")
    body = os.urandom(1_500_000)
    async with httpx.AsyncClient(timeout=WAIT) as client:
        worker = asyncio.create_task(asyncio.to_thread(serve_one_upload, view, path))
        response = await client.post(project_server.url + path, content=body)
        assert await worker == len(body)
    assert (response.status_code, response.text) == (200, str(len(body)))

    path = unique_path("socket")
    worker = asyncio.create_task(asyncio.to_thread(echo_one_socket, view, path))
    connection = await open_websocket(project_server.ws_url + path)
    await connection.send("shout")
    assert await asyncio.wait_for(connection.recv(), WAIT) == "SHOUT"
    await asyncio.wait_for(connection.wait_closed(), WAIT)
    await worker
    assert_no_traceback(project_server)
