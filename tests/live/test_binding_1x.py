"""The 1.x WebsocketBinding through the 1.x routing worker (``manage.py runworker``) on Redis:
inbound ``websocket.receive`` messages as the 1.x demultiplexer sends them, outbound frames on
the 1.x group, no acknowledgement."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from headrace.asgi import AsgiChannelLayer
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
