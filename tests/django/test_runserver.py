"""manage.py runserver served by headrace, started as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from headrace.db import database_sync_to_async
from headrace.tokens import SignedTokenAuthenticator
from tests.django.processes import REPO, ServerProcess, start_server

SETTINGS = "tests.django.settings"
BAD_TIMEOUT = ["--noreload", "--http_timeout=-3", "127.0.0.1:1"]


def runserver(*extra: str, settings: str = SETTINGS) -> ServerProcess:
    def argv(port: int) -> list[str]:
        return ["-m", "django", "runserver", f"127.0.0.1:{port}", f"--settings={settings}", *extra]

    return start_server(argv)


@pytest.fixture(scope="module")
def default_server(migrated_database: None) -> Iterator[ServerProcess]:
    server = runserver()  # with Django's autoreloader, as a developer runs it
    yield server
    server.stop()


async def ws_hello(port: int, origin: str, cookie: str | None = None) -> dict[str, str]:
    headers = {"Cookie": cookie} if cookie else None
    async with websockets.connect(
        f"ws://127.0.0.1:{port}/ws/", origin=origin, additional_headers=headers, open_timeout=10
    ) as socket:
        hello: dict[str, str] = json.loads(await socket.recv(decode=True))
        await socket.send("ping")
        assert await socket.recv() == "ping"
        return hello


async def test_serves_http_static_files_and_banner(default_server: ServerProcess) -> None:
    base = f"http://127.0.0.1:{default_server.port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        page = await client.get("/whoami/")
        static = await client.get("/static/hello.txt")
    assert page.status_code == 200
    assert page.text.startswith("anonymous")
    assert static.status_code == 200
    assert static.text == "headrace static file\n"
    log = default_server.log()
    assert "Starting ASGI/headrace version" in log
    assert "Watching for file changes" in log  # the autoreloader is on


async def test_serves_websocket_with_origin_check(default_server: ServerProcess) -> None:
    port = default_server.port
    hello = await ws_hello(port, f"http://127.0.0.1:{port}")
    assert hello == {"user": "anonymous", "path": "/ws/", "root_path": ""}
    with pytest.raises(InvalidStatus) as refused:
        await ws_hello(port, "http://evil.test")
    assert refused.value.response.status_code == 403


async def test_session_login_reaches_the_websocket(
    default_server: ServerProcess, user_factory: object
) -> None:
    await database_sync_to_async(user_factory)("rs-alice")  # type: ignore[arg-type]
    port = default_server.port
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        response = await client.post(
            "/login/", data={"username": "rs-alice", "password": "secret-pass"}
        )
        assert response.status_code == 200
        session = client.cookies["sessionid"]
    hello = await ws_hello(port, f"http://127.0.0.1:{port}", cookie=f"sessionid={session}")
    assert hello["user"] == "rs-alice"


async def test_nostatic_and_daphne_options(migrated_database: None) -> None:
    options = ["--noreload", "--nostatic", "--http_timeout", "30"]
    server = runserver(*options, "--websocket_handshake_timeout", "3")
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            static = await client.get(f"http://127.0.0.1:{server.port}/static/hello.txt")
        assert static.status_code == 404
        assert (await ws_hello(server.port, f"http://127.0.0.1:{server.port}"))["user"]
    finally:
        server.stop()


async def test_force_script_name_becomes_root_path(migrated_database: None) -> None:
    server = runserver("--noreload", settings="tests.django.settings_script_name")
    try:
        hello = await ws_hello(server.port, f"http://127.0.0.1:{server.port}")
        async with httpx.AsyncClient(timeout=10) as client:
            page = await client.get(f"http://127.0.0.1:{server.port}/prefix/whoami/")
    finally:
        server.stop()
    assert hello["root_path"] == "/prefix"
    assert page.text == "anonymous /prefix|"


async def test_noasgi_runs_django_wsgi_server(migrated_database: None) -> None:
    server = runserver("--noreload", "--noasgi")
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            page = await client.get(f"http://127.0.0.1:{server.port}/whoami/")
        assert page.text.startswith("anonymous")
        assert "WSGIServer" in page.headers.get("server", "")
    finally:
        server.stop()


def test_invalid_option_value_is_refused() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "django", "runserver", "--settings=" + SETTINGS, *BAD_TIMEOUT],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "must be > 0" in result.stderr


async def test_bearer_token_in_subprotocol_through_the_server(
    default_server: ServerProcess, user_factory: object
) -> None:
    user = await database_sync_to_async(user_factory)("rs-token")  # type: ignore[arg-type]
    token = SignedTokenAuthenticator().make_token(user)
    port = default_server.port
    async with websockets.connect(
        f"ws://127.0.0.1:{port}/ws/token/",
        origin=f"http://127.0.0.1:{port}",  # type: ignore[arg-type]
        subprotocols=["bearer." + token],  # type: ignore[list-item]
        open_timeout=10,
    ) as socket:
        hello = json.loads(await socket.recv(decode=True))
        assert socket.subprotocol is None  # the token is never echoed back
    assert hello["user"] == "rs-token"
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(
            f"ws://127.0.0.1:{port}/ws/token/?token=forged",
            origin=f"http://127.0.0.1:{port}",  # type: ignore[arg-type]
        ):
            pass
    assert refused.value.response.status_code == 403


async def test_insecure_serves_static_files_without_debug(migrated_database: None) -> None:
    server = runserver("--noreload", "--insecure", settings="tests.django.settings_nodebug")
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            static = await client.get(f"http://127.0.0.1:{server.port}/static/hello.txt")
    finally:
        server.stop()
    assert static.status_code == 200
    assert static.text == "headrace static file\n"
