"""The 1.x WebsocketBinding through the 1.x routing worker (``manage.py runworker``) on Redis:
inbound ``websocket.receive`` messages as the 1.x demultiplexer sends them, outbound frames on
the 1.x group, no acknowledgement; and the same binding behind the real 1.x
``WebsocketDemultiplexer``: ``websockets`` clients on the real interface server (IPC and Redis)
in front of runworker."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from headrace.asgi import AsgiChannelLayer
from tests.conftest import free_port
from tests.django.processes import ServerProcess
from tests.live._server import run_manage, wait_for_log
from tests.live._site import Site


@pytest.fixture
def site(tmp_path: Path) -> Site:
    site = Site(tmp_path)
    site.migrate()
    return site


@pytest.fixture
def view(site: Site) -> Iterator[AsgiChannelLayer]:
    from headrace.layers.redis import RedisChannelLayer

    layer = AsgiChannelLayer(RedisChannelLayer(hosts=[("127.0.0.1", 6379)], prefix=site.prefix))
    yield layer
    layer.close()


def receive(view: AsgiChannelLayer, channel: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        name, message = view.receive([channel], block=True)
        if name is not None:
            assert message is not None
            return message
    raise AssertionError(f"nothing arrived on {channel}")


def stored_cards(site: Site) -> list[tuple[Any, ...]]:
    with sqlite3.connect(site.db) as db:
        return db.execute("SELECT id, board, title, secret FROM cards_card ORDER BY id").fetchall()


def inbound(view: AsgiChannelLayer, reply: str, payload: dict[str, Any]) -> None:
    """What the 1.x demultiplexer hands the binding: the payload's JSON as ``text``."""
    message = {"reply_channel": reply, "path": "/binding/", "text": json.dumps(payload), "order": 1}
    view.send("websocket.receive", message)


def test_inbound_create_update_and_refused_delete(site: Site, view: AsgiChannelLayer) -> None:
    worker = run_manage(["-m", "django", "runworker"], env={**site.env, "LIVE_ROUTING": "1"})
    try:
        wait_for_log(worker, "websocket.receive with")  # "Listening on <channels> with N thread(s)"
        reply = view.new_channel("websocket.send!")
        view.group_add("board1-one", reply)

        inbound(view, reply, {"action": "create", "data": {"board": "one", "title": "keep it"}})
        created = json.loads(receive(view, reply)["text"])
        assert created["stream"] == "cards1"
        payload = created["payload"]
        assert payload["action"] == "create"
        assert payload["model"] == "cards.card"
        assert payload["data"] == {
            "board": "one",
            "title": "keep it",
            "done": False,
            "title_upper": "KEEP IT",
        }
        pk = payload["pk"]

        inbound(view, reply, {"action": "update", "pk": pk, "data": {"secret": "leak"}})
        inbound(view, reply, {"action": "delete", "pk": pk})
        inbound(view, reply, {"action": "update", "pk": pk, "data": {"done": True}})
        updated = json.loads(receive(view, reply)["text"])["payload"]
        assert updated["action"] == "update" and updated["data"]["done"] is True
        log = wait_for_log(worker, "permission denied")
        assert "field 'secret' is not writable" in log
        assert stored_cards(site) == [(pk, "one", "keep it", "hidden")]
    finally:
        worker.stop()


def start_interface_server(env: dict[str, str]) -> ServerProcess:
    """``python -m headrace tests.live.site.asgi1:channel_layer`` once it accepts connections."""
    port = free_port()
    argv = [
        "-m",
        "headrace",
        "-b",
        "127.0.0.1",
        "-p",
        str(port),
        "tests.live.site.asgi1:channel_layer",
    ]
    server = ServerProcess(argv, port, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert server.process.poll() is None, server.log()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise AssertionError(f"the interface server never listened:\n{server.log()}")


@pytest.fixture(params=["ipc", "redis"])
def demux_site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Site, int]]:
    """runworker with the 1.x demultiplexer routing, and the interface server in front of it."""
    site = Site(tmp_path, layer=request.param)
    site.migrate()
    env = {**site.env, "LIVE_ROUTING": "demux"}
    worker = run_manage(["-m", "django", "runworker"], env=env)
    try:
        wait_for_log(worker, "Listening on")
        server = start_interface_server(env)
        try:
            yield site, server.port
        finally:
            server.stop()
    finally:
        worker.stop()


async def change(socket: Any) -> dict[str, Any]:
    """The next frame: a 1.x change frame of the card stream (never an acknowledgement)."""
    frame: dict[str, Any] = json.loads(await socket.recv())
    assert frame["stream"] == "cards1" and set(frame["payload"]) == {
        "action",
        "pk",
        "data",
        "model",
    }, frame
    return frame["payload"]


async def test_the_1x_demultiplexer_carries_the_binding_both_ways(
    demux_site: tuple[Site, int],
) -> None:
    site, port = demux_site
    url = f"ws://127.0.0.1:{port}/demux/one/"
    async with (
        asyncio.timeout(30),
        websockets.connect(url) as writer,
        websockets.connect(url) as watcher,
        websockets.connect(f"ws://127.0.0.1:{port}/demux/two/") as elsewhere,
    ):
        # A save in another process reaches the board's sockets as the 1.x frame.
        code = (
            "from tests.live.cards.models import Card; Card.objects.create(board='one', title='sh')"
        )
        await asyncio.to_thread(site.manage, "shell", "-c", code)
        for client in (writer, watcher):
            made = await change(client)
            assert made["action"] == "create" and made["model"] == "cards.card"
            assert made["data"] == {
                "board": "one",
                "title": "sh",
                "done": False,
                "title_upper": "SH",
            }

        # Inbound frames through the demultiplexer: create, update, delete; no acknowledgement.
        create = {"action": "create", "data": {"board": "one", "title": "socket"}}
        await writer.send(json.dumps({"stream": "cards1", "payload": create}))
        created = await change(watcher)
        assert created["action"] == "create" and created["data"]["title"] == "socket"
        assert await change(writer) == created
        pk = created["pk"]
        update = {"action": "update", "pk": pk, "data": {"done": True}}
        await writer.send(json.dumps({"stream": "cards1", "payload": update}))
        updated = await change(watcher)
        assert updated["action"] == "update" and updated["data"]["done"] is True
        assert (await change(writer))["action"] == "update"
        move = {"action": "update", "pk": pk, "data": {"board": "two"}}
        await writer.send(json.dumps({"stream": "cards1", "payload": move}))
        assert (await change(watcher))["action"] == "delete"
        assert (await change(elsewhere))["action"] == "create"
        await writer.send(
            json.dumps({"stream": "cards1", "payload": {"action": "delete", "pk": pk}})
        )
        gone = await change(elsewhere)
        assert gone["action"] == "delete" and gone["pk"] == pk
    assert [row[2] for row in stored_cards(site)] == ["sh"]
