"""The chat example under ``python manage.py runserver``: pages, static JS, login, socket."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.django.chat_site import PASSWORD, create_users, start_chat_server
from tests.django.processes import ServerProcess


@pytest.fixture(scope="module")
def runserver_chat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db_path = tmp_path_factory.mktemp("chat") / "chat.sqlite3"
    argv = ["manage.py", "runserver", "127.0.0.1:{port}", "--noreload"]
    server = start_chat_server(db_path, argv)
    try:
        create_users(db_path)
        yield server
    finally:
        server.stop()


def log_in(base: str, username: str) -> str:
    """Log in through /accounts/login/ like a browser (CSRF included); return the session id."""
    with httpx.Client(base_url=base, timeout=10) as client:
        form = client.get("/accounts/login/?next=/chat/lobby/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
        assert token is not None
        response = client.post(
            "/accounts/login/",
            data={
                "username": username,
                "password": PASSWORD,
                "csrfmiddlewaretoken": token.group(1),
                "next": "/chat/lobby/",
            },
        )
        assert response.status_code == 302
        assert response.headers["location"] == "/chat/lobby/"
        return str(client.cookies["sessionid"])


async def next_json(socket: websockets.ClientConnection, positioned: bool = True) -> dict[str, Any]:
    """The next application frame: the join's presence and recovery frames are skipped, the
    message id and (when ``positioned``: the layer keeps history) its position, both checked
    to be there, are left out."""
    while True:
        payload: dict[str, Any] = json.loads(await asyncio.wait_for(socket.recv(), 10))
        if "__presence__" not in payload and "__recovery__" not in payload:
            break
    if "message" in payload:
        assert isinstance(payload.pop("id"), int), payload
        if positioned:
            epoch, offset = payload.pop("__position__")
            assert isinstance(epoch, str) and offset >= 1, payload
    return payload


async def test_pages_and_static_client(runserver_chat: ServerProcess) -> None:
    base = f"http://127.0.0.1:{runserver_chat.port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        room = await client.get("/chat/lobby/")
        script = await client.get("/static/chat/room.js")
        bad_room = await client.get("/chat/no%20spaces/")
        index = await client.get("/chat/")
        signup = await client.get("/accounts/signup/")
    assert room.status_code == 200
    assert 'id="login-required"' in room.text
    assert script.status_code == 200
    assert "new window.channels.WebSocketBridge" in script.text
    assert "/static/headrace/js/websocketbridge.js" in room.text
    assert bad_room.status_code == 404
    assert 'id="room-name-input"' in index.text
    assert 'name="password1"' in signup.text
    assert "Starting ASGI/headrace" in runserver_chat.log()


async def test_post_broadcast_persist(runserver_chat: ServerProcess) -> None:
    port = runserver_chat.port
    base = f"http://127.0.0.1:{port}"
    session = await asyncio.to_thread(log_in, base, "alice")
    url = f"ws://127.0.0.1:{port}/ws/chat/lobby/"
    logged_in = {"Cookie": f"sessionid={session}"}
    async with (
        websockets.connect(url, origin=base, additional_headers=logged_in) as alice,  # type: ignore[arg-type]
        websockets.connect(url, origin=base) as anonymous,  # type: ignore[arg-type]
    ):
        await anonymous.send(json.dumps({"message": "spam"}))
        assert await next_json(anonymous) == {"error": "Log in to post messages."}
        await alice.send(json.dumps({"message": "  hello runserver  "}))
        expected = {"message": "hello runserver", "user": "alice"}
        assert await next_json(alice) == expected
        assert await next_json(anonymous) == expected
        await alice.send("not json")
        assert "error" in await next_json(alice)
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        history = (await client.get("/chat/lobby/")).text
    assert "hello runserver" in history
    assert "spam" not in history


async def test_foreign_origin_and_unknown_path_are_refused(runserver_chat: ServerProcess) -> None:
    port = runserver_chat.port
    with pytest.raises(websockets.InvalidStatus) as foreign:
        async with websockets.connect(
            f"ws://127.0.0.1:{port}/ws/chat/lobby/",
            origin="http://evil.test",  # type: ignore[arg-type]
        ):
            pass
    assert foreign.value.response.status_code == 403


def test_fresh_checkout_layout() -> None:
    chat = Path(__file__).resolve().parents[2] / "examples" / "chat"
    for relative in (
        "manage.py",
        "chatsite/settings.py",
        "chatsite/asgi.py",
        "chat/migrations/0001_initial.py",
        "chat/static/chat/room.js",
        "chat/templates/chat/room.html",
        "chat/templates/registration/login.html",
    ):
        assert (chat / relative).is_file(), relative


async def test_room_page_shows_the_last_50_messages(runserver_chat: ServerProcess) -> None:
    port = runserver_chat.port
    base = f"http://127.0.0.1:{port}"
    session = await asyncio.to_thread(log_in, base, "bob")
    async with websockets.connect(
        f"ws://127.0.0.1:{port}/ws/chat/busy/",
        origin=base,  # type: ignore[arg-type]
        additional_headers={"Cookie": f"sessionid={session}"},
    ) as socket:
        for number in range(1, 56):
            await socket.send(json.dumps({"message": f"line {number}"}))
            assert (await next_json(socket))["message"] == f"line {number}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        page = (await client.get("/chat/busy/")).text
    shown = re.findall(r"<span>(line \d+)</span>", page)
    assert shown == [f"line {number}" for number in range(6, 56)]
