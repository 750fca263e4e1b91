"""The Channels-1 example project deployed for real: the interface server
(``headrace examples.channels1.project.asgi:channel_layer``) and two ``runworker``
processes over IPC and Redis, driven by real HTTP and WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.channels1.api.processes import REPO, SETTINGS, WAIT, ExampleSite
from tests.conftest import require_service


@pytest.fixture(scope="module", params=["ipc", "redis"])
def site(request: pytest.FixtureRequest) -> Iterator[ExampleSite]:
    if request.param == "redis":
        require_service("redis", "127.0.0.1", 6379)
    site = ExampleSite(request.param)
    try:
        site.create_user("alice", "wonder-land-1")
        site.start_server()
        site.start_worker("--threads", "2")
        site.start_worker("--threads", "2")
        yield site
    finally:
        site.close()


def connect(site: ExampleSite, path: str, **options: Any) -> Any:
    return websockets.connect(site.ws_url + path, open_timeout=WAIT, **options)


async def recv(socket: Any) -> Any:
    return await asyncio.wait_for(socket.recv(), WAIT)


async def login(site: ExampleSite, username: str, password: str) -> str:
    """Log in through the login view (CSRF and all); returns the Cookie header."""
    async with httpx.AsyncClient(base_url=site.url, timeout=WAIT) as client:
        page = await client.get("/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert token is not None, page.text
        answer = await client.post(
            "/login/",
            data={"csrfmiddlewaretoken": token[1], "username": username, "password": password},
        )
        assert answer.status_code == 302, answer.text
        return "; ".join(f"{name}={value}" for name, value in client.cookies.items())


def test_the_examples_own_test_suite_passes(tmp_path: Path) -> None:
    folder = str(tmp_path)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "EXAMPLE_DB": os.path.join(folder, "db.sqlite3"),
        "EXAMPLE_CHANNEL_SESSIONS": os.path.join(folder, "sessions"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "django", "test", "examples.channels1.chat", "--noinput"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"Ran 1\d tests", result.stderr), result.stderr
    assert "OK" in result.stderr


async def test_getting_started_echo_and_group_chat(site: ExampleSite) -> None:
    async with connect(site, "/echo/") as echo:
        await echo.send("hello world")
        assert await recv(echo) == "hello world"
    async with connect(site, "/chat/") as one, connect(site, "/chat/") as two:
        await one.send("hi all")
        assert await recv(one) == "[user] hi all"
        assert await recv(two) == "[user] hi all"


async def test_rooms_save_messages_and_broadcast_them(site: ExampleSite) -> None:
    room = f"r{os.getpid()}{site.kind}"
    async with connect(site, f"/rooms/{room}/") as one, connect(site, f"/rooms/{room}/") as two:
        await one.send("soup is ready")
        for socket in (one, two):
            assert json.loads(await recv(socket)) == {
                "room": room,
                "message": "soup is ready",
                "user": "",
            }
    async with httpx.AsyncClient(timeout=WAIT) as client:
        page = await client.get(f"{site.url}/room/{room}/")
    assert page.status_code == 200
    assert '<li class="saved">anonymous: soup is ready</li>' in page.text


async def test_enforce_ordering_across_two_workers(site: ExampleSite) -> None:
    cookie = await login(site, "alice", "wonder-land-1")
    async with connect(site, "/ordered/", additional_headers={"Cookie": cookie}) as socket:
        for n in range(20):
            await socket.send(f"m{n}")
        replies = []
        for _ in range(20):
            try:
                replies.append(await recv(socket))
            except TimeoutError:
                raise AssertionError(f"got {replies}\n{site.logs()}") from None
    assert replies == [f"{n + 1}: m{n}" for n in range(20)]


async def test_http_user_and_json_consumer(site: ExampleSite) -> None:
    cookie = await login(site, "alice", "wonder-land-1")
    async with connect(site, "/generic/json/", additional_headers={"Cookie": cookie}) as socket:
        await socket.send(json.dumps({"q": [1, 2]}))
        assert json.loads(await recv(socket)) == {"echo": {"q": [1, 2]}, "user": "alice"}
    async with connect(site, "/generic/json/") as anonymous:
        await anonymous.send("[]")
        assert json.loads(await recv(anonymous)) == {"echo": [], "user": None}


async def test_letters_chat_checks_the_origin(site: ExampleSite) -> None:
    cookie = await login(site, "alice", "wonder-land-1")
    headers = {"Cookie": cookie}
    async with connect(
        site, "/letters/", origin="http://localhost", additional_headers=headers
    ) as s:
        await s.send("hello a-people")
        assert await recv(s) == "alice: hello a-people"
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with connect(site, "/letters/", origin="http://evil.example"):
            pass
    assert refused.value.response.status_code == 403


def wait_for_log(site: ExampleSite, text: str) -> bool:
    """Whether ``text`` shows in the site's logs within the test deadline."""
    deadline = time.monotonic() + WAIT
    while text not in site.logs():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


async def test_generic_echo_and_multiplexer(site: ExampleSite) -> None:
    async with connect(site, "/generic/echo/") as socket:
        for text in ("one", "two", "three"):
            await socket.send(text)
        assert [await recv(socket) for _ in range(3)] == ["one", "two", "three"]
    async with connect(site, "/generic/multiplex/") as socket:
        hello = json.loads(await recv(socket))
        assert hello == {"stream": "echo", "payload": {"status": "I just connected!"}}
        await socket.send(json.dumps({"stream": "echo", "payload": {"a": 1}}))
        reply = json.loads(await recv(socket))
        assert reply == {"stream": "echo", "payload": {"original_message": {"a": 1}}}
        await socket.send(json.dumps({"stream": "nowhere", "payload": {}}))
        await socket.send(json.dumps({"stream": "other", "payload": {"b": 2}}))
        # The bad frame was refused (and logged); the socket goes on.
        reply = json.loads(await recv(socket))
        assert reply == {"stream": "other", "payload": {"length": len(json.dumps({"b": 2}))}}
    # Another worker may have taken the bad frame: wait for its log line rather than race it.
    assert wait_for_log(site, "stream 'nowhere' not mapped")


async def test_routing_filters_send_post_poll_to_a_consumer(site: ExampleSite) -> None:
    async with httpx.AsyncClient(base_url=site.url, timeout=WAIT) as client:
        posted = await client.post("/poll/", content=b"x" * 1234)
        got = await client.get("/poll/")
    assert (posted.status_code, posted.text) == (200, "polled 1234 bytes")
    assert got.status_code == 404


def test_consume_later_requeues_through_the_layer(site: ExampleSite) -> None:
    reply = site.view.new_channel("test.later!")
    site.view.send("later", {"reply_channel": reply, "n": 1})
    replies = [receive(site, reply) for _ in range(2)]
    assert replies == [{"text": "held, then discarded"}, {"text": "done after 1"}]
    assert site.view.receive([reply], block=False) == (None, None)


def test_a_message_always_put_back_is_dropped_after_ten_tries(site: ExampleSite) -> None:
    site.view.send("never", {"n": 1})
    deadline = time.monotonic() + WAIT
    while "asked to consume it later 10 times" not in site.logs():
        assert time.monotonic() < deadline, site.logs()
        time.sleep(0.1)
    assert site.view.receive(["never"], block=False) == (None, None)


def receive(site: ExampleSite, channel: str) -> dict[str, Any]:
    for _ in range(10):
        name, message = site.view.receive([channel], block=True)
        if name is not None:
            assert message is not None
            return dict(message)
    raise AssertionError(f"nothing on {channel}:\n{site.logs()}")
