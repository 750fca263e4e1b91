"""ModelBinding + BindingConsumer end to end: Django views write through the ORM in the real
server, the Redis layer carries the changes, ``websockets`` clients watch and write. Each test
runs on SQLite and on the local PostgreSQL (a database created for the module, dropped after)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.live._site import Site, served_site


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("binding")
    with served_site(tmp, database=request.param) as running:
        yield running


async def frame(socket: Any) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(await socket.recv())
    return result


async def test_create_update_delete_reach_the_watchers_of_the_group(site: Site) -> None:
    async with (
        asyncio.timeout(20),
        websockets.connect(site.ws("/cards/red/")) as red,
        websockets.connect(site.ws("/cards/red/")) as red_too,
        websockets.connect(site.ws("/cards/blue/")) as blue,
    ):
        pk = (await site.post("/cards/new/", {"board": "red", "title": "one"})).json()["pk"]
        created = {
            "stream": "cards",
            "payload": {
                "action": "create",
                "pk": pk,
                "data": {"board": "red", "title": "one", "done": False},
                "model": "cards.card",
            },
        }
        assert await frame(red) == created
        assert await frame(red_too) == created
        await site.post(f"/cards/{pk}/", {"done": True})
        updated = await frame(red)
        assert updated["payload"]["action"] == "update"
        assert updated["payload"]["data"]["done"] is True
        assert "secret" not in updated["payload"]["data"]
        # Moving the card: red hears delete, blue hears create (old groups come from the row).
        await site.post(f"/cards/{pk}/", {"board": "blue"})
        assert (await frame(red))["payload"]["action"] == "delete"
        moved = await frame(blue)
        assert moved["payload"]["action"] == "create"
        assert moved["payload"]["data"]["board"] == "blue"
        await site.post(f"/cards/{pk}/delete/", {})
        deleted = await frame(blue)
        assert deleted["payload"]["action"] == "delete"
        assert deleted["payload"]["pk"] == pk
        assert (await frame(red_too))["payload"]["action"] == "update"
        assert (await frame(red_too))["payload"]["action"] == "delete"


async def test_a_rolled_back_change_is_never_sent(site: Site) -> None:
    async with asyncio.timeout(20), websockets.connect(site.ws("/cards/green/")) as green:
        response = await site.post("/cards/rollback/", {"board": "green", "title": "ghost"})
        assert response.status_code == 409
        await site.post("/cards/new/", {"board": "green", "title": "real"})
        first = await frame(green)
        assert first["payload"]["data"]["title"] == "real"
    assert all(card["title"] != "ghost" for card in await site.cards())


async def test_inbound_actions_with_acknowledgements(site: Site) -> None:
    async with (
        asyncio.timeout(20),
        websockets.connect(site.ws("/cards/ink/")) as writer,
        websockets.connect(site.ws("/cards/ink/")) as watcher,
    ):
        create = {"action": "create", "data": {"board": "ink", "title": "from client"}}
        await writer.send(json.dumps({"stream": "cards", "payload": {**create, "request_id": 1}}))
        replies = [await frame(writer), await frame(writer)]
        ack = next(r["payload"] for r in replies if "request_id" in r["payload"])
        assert ack["errors"] == [] and ack["action"] == "create"
        pk = ack["pk"]
        assert (await frame(watcher))["payload"]["pk"] == pk
        stored = [c for c in await site.cards() if c["pk"] == pk]
        assert stored == [
            {"pk": pk, "board": "ink", "title": "from client", "done": False, "secret": "hidden"}
        ]

        update = {"action": "update", "pk": pk, "data": {"title": "edited"}, "request_id": "u"}
        await writer.send(json.dumps({"stream": "cards", "payload": update}))
        assert (await frame(watcher))["payload"]["data"]["title"] == "edited"


async def test_inbound_refusals_are_acknowledged_with_errors(site: Site) -> None:
    pk = (await site.post("/cards/new/", {"board": "vault", "title": "keep me"})).json()["pk"]
    refusals = [
        ({"action": "delete", "pk": pk}, ["permission denied"]),
        (
            {"action": "update", "pk": pk, "data": {"secret": "x"}},
            ["field 'secret' is not writable"],
        ),
        (
            {"action": "update", "pk": pk, "data": {"title": ""}},
            ["title: This field cannot be blank."],
        ),
        (
            {"action": "update", "pk": 999999, "data": {"title": "t"}},
            ["no cards.card with pk 999999"],
        ),
        ({"action": "explode"}, ["unknown action 'explode': use create, update or delete"]),
        ({"action": "update", "data": {"title": "t"}}, ["update needs a pk"]),
    ]
    async with asyncio.timeout(20), websockets.connect(site.ws("/cards/vault/")) as socket:
        for number, (payload, errors) in enumerate(refusals):
            await socket.send(
                json.dumps({"stream": "cards", "payload": {**payload, "request_id": number}})
            )
            ack = (await frame(socket))["payload"]
            assert ack["request_id"] == number
            assert ack["errors"] == errors
    stored = [c for c in await site.cards() if c["pk"] == pk]
    assert stored[0]["title"] == "keep me" and stored[0]["secret"] == "hidden"


async def test_a_frame_for_another_stream_closes_with_4002(site: Site) -> None:
    async with asyncio.timeout(20), websockets.connect(site.ws("/cards/x/")) as socket:
        await socket.send(json.dumps({"stream": "elsewhere", "payload": {}}))
        with pytest.raises(ConnectionClosed):
            await socket.recv()
        assert socket.close_code == 4002


async def test_binding_consumer_behind_the_demultiplexer(site: Site) -> None:
    async with (
        asyncio.timeout(20),
        websockets.connect(site.ws("/mux/plum/")) as mux,
        websockets.connect(site.ws("/cards/plum/")) as direct,
    ):
        await mux.send(json.dumps({"stream": "echo", "payload": {"ping": 1}}))
        assert await frame(mux) == {"stream": "echo", "payload": {"ping": 1}}
        payload = {"action": "create", "data": {"board": "plum", "title": "muxed"}, "request_id": 7}
        await mux.send(json.dumps({"stream": "cards", "payload": payload}))
        got = [await frame(mux), await frame(mux)]
        assert all(f["stream"] == "cards" for f in got)
        ack = next(f["payload"] for f in got if "request_id" in f["payload"])
        change = next(f["payload"] for f in got if "request_id" not in f["payload"])
        assert ack["errors"] == [] and change["pk"] == ack["pk"]
        assert change["data"]["title"] == "muxed"
        assert (await frame(direct))["payload"]["pk"] == ack["pk"]


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"stream": "s"}, "must set fields (a whitelist, or ['__all__']) or exclude"),
        ({"stream": "s", "fields": ["a"], "exclude": ["b"]}, "sets both fields and exclude"),
        ({"fields": ["a"]}, "stream must be a non-empty string"),
    ],
)
def test_a_binding_declaration_missing_a_part_is_refused(
    attrs: dict[str, Any], message: str
) -> None:
    from headrace.binding import ModelBinding

    with pytest.raises(ValueError, match=re.escape(message)):
        type("Broken", (ModelBinding,), {"model": "cards.Card", **attrs})
