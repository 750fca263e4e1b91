"""CookieMiddleware, SessionMiddleware and save_session through plain ASGI calls."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore

from headrace._types import Receive, Scope, Send
from headrace.db import database_sync_to_async
from headrace.sessions import (
    CookieMiddleware,
    SessionMiddleware,
    SessionMiddlewareStack,
    save_session,
)
from tests.django.asgi_helpers import ScopeRecorder, call, http_scope, websocket_scope


def set_cookies(messages: list[dict[str, Any]]) -> list[str]:
    start = next(m for m in messages if m["type"] == "http.response.start")
    return [value.decode() for name, value in start.get("headers", []) if name == b"Set-Cookie"]


def session_cookie_value(header: str) -> str:
    first = header.split(";", 1)[0]
    name, _, value = first.partition("=")
    assert name == settings.SESSION_COOKIE_NAME
    return value


async def test_cookie_middleware_parses_cookie_header() -> None:
    inner = ScopeRecorder()
    headers = [(b"cookie", b'a=1; b=two; quoted="x y"')]
    await call(CookieMiddleware(inner), http_scope(headers=headers), [])
    assert inner.scope["cookies"] == {"a": "1", "b": "two", "quoted": "x y"}


async def test_cookie_middleware_without_cookie_header_gives_empty_dict() -> None:
    inner = ScopeRecorder()
    await call(CookieMiddleware(inner), websocket_scope(), [{"type": "websocket.connect"}])
    assert inner.scope["cookies"] == {}


async def test_cookie_middleware_rejects_scope_without_headers() -> None:
    with pytest.raises(ValueError, match="headers"):
        await call(CookieMiddleware(ScopeRecorder()), {"type": "lifespan"}, [])


def test_set_cookie_attributes() -> None:
    message: dict[str, Any] = {"type": "http.response.start", "status": 200}
    CookieMiddleware.set_cookie(
        message, "k", "v", max_age=60, domain="example.com", secure=True, httponly=True
    )
    (header,) = set_cookies([message])
    assert header.startswith("k=v;")
    for part in ("Max-Age=60", "Domain=example.com", "Path=/", "Secure", "HttpOnly"):
        assert part in header
    assert "SameSite=lax" in header
    assert "expires=" in header


def test_set_cookie_datetime_expiry_becomes_max_age() -> None:
    message: dict[str, Any] = {"type": "http.response.start"}
    expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    CookieMiddleware.set_cookie(message, "k", "v", expires=expires)
    (header,) = set_cookies([message])
    max_age = int(header.split("Max-Age=")[1].split(";")[0])
    assert 3590 <= max_age <= 3601


def test_set_cookie_rejects_bad_samesite() -> None:
    with pytest.raises(AssertionError, match="samesite"):
        CookieMiddleware.set_cookie({"type": "http.response.start"}, "k", samesite="sometimes")


def test_delete_cookie_expires_in_the_past() -> None:
    message: dict[str, Any] = {"type": "http.response.start"}
    CookieMiddleware.delete_cookie(message, "gone")
    (header,) = set_cookies([message])
    assert header.startswith('gone="";')
    assert "Max-Age=0" in header
    assert "1970" in header


async def test_session_middleware_needs_cookie_middleware() -> None:
    with pytest.raises(ValueError, match="CookieMiddleware"):
        await call(SessionMiddleware(ScopeRecorder()), http_scope(), [])


class CountingApp:
    """Increments ``visits`` in the session on every HTTP request."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        session = scope["session"]
        visits = await database_sync_to_async(session.get)("visits", 0)
        session["visits"] = visits + 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(visits + 1).encode()})


async def test_http_session_is_saved_and_cookie_round_trips(migrated_database: None) -> None:
    app = SessionMiddlewareStack(CountingApp())
    first = await call(app, http_scope(), [{"type": "http.request"}])
    (header,) = set_cookies(first)
    key = session_cookie_value(header)
    assert "HttpOnly" in header
    cookie = f"{settings.SESSION_COOKIE_NAME}={key}".encode()
    second = await call(app, http_scope(headers=[(b"cookie", cookie)]), [{"type": "http.request"}])
    assert second[-1]["body"] == b"2"
    stored = await database_sync_to_async(lambda: SessionStore(key).load())()
    assert stored["visits"] == 2


async def test_unmodified_session_sets_no_cookie(migrated_database: None) -> None:
    first = await call(SessionMiddlewareStack(ScopeRecorder()), http_scope(), [])
    assert set_cookies(first) == []


async def test_server_error_response_does_not_save(migrated_database: None) -> None:
    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        scope["session"]["x"] = 1
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent = await call(SessionMiddlewareStack(failing), http_scope(), [])
    assert set_cookies(sent) == []


async def test_flushed_session_deletes_cookie(migrated_database: None) -> None:
    store = SessionStore()
    store["x"] = 1
    await database_sync_to_async(store.save)()

    async def flushing(scope: Scope, receive: Receive, send: Send) -> None:
        await database_sync_to_async(scope["session"].flush)()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    cookie = f"{settings.SESSION_COOKIE_NAME}={store.session_key}".encode()
    sent = await call(
        SessionMiddlewareStack(flushing), http_scope(headers=[(b"cookie", cookie)]), []
    )
    (header,) = set_cookies(sent)
    assert "Max-Age=0" in header


async def test_nested_session_middleware_keeps_outer_session(migrated_database: None) -> None:
    inner = ScopeRecorder()
    outer = ScopeRecorder()

    async def capture_outer(scope: Scope, receive: Receive, send: Send) -> None:
        outer.scope = dict(scope)
        await SessionMiddleware(inner)(scope, receive, send)

    await call(SessionMiddlewareStack(capture_outer), http_scope(), [])
    assert inner.scope["session"] is outer.scope["session"]


async def test_websocket_consumer_saves_session_with_one_call(migrated_database: None) -> None:
    store = SessionStore()
    store["room"] = "lobby"
    await database_sync_to_async(store.save)()

    async def consumer(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        # Reading or writing a session loads it from the database: do it off the loop.
        await database_sync_to_async(scope["session"].__setitem__)("room", "kitchen")
        await save_session(scope)

    cookie = f"{settings.SESSION_COOKIE_NAME}={store.session_key}".encode()
    await call(
        SessionMiddlewareStack(consumer),
        websocket_scope(headers=[(b"cookie", cookie)]),
        [{"type": "websocket.connect"}],
    )
    stored = await database_sync_to_async(lambda: SessionStore(store.session_key).load())()
    assert stored["room"] == "kitchen"


async def test_save_session_needs_a_session() -> None:
    with pytest.raises(ValueError, match="SessionMiddleware"):
        await save_session({"type": "websocket"})


async def test_cookie_fields_split_over_http2_are_joined() -> None:
    inner = ScopeRecorder()
    headers = [(b"cookie", b"a=1"), (b"accept", b"*/*"), (b"cookie", b"b=2; c=3")]
    await call(CookieMiddleware(inner), http_scope(headers=headers), [])
    assert inner.scope["cookies"] == {"a": "1", "b": "2", "c": "3"}


def test_set_cookie_keeps_existing_headers_even_in_a_tuple() -> None:
    message: dict[str, Any] = {"type": "http.response.start", "headers": ((b"x-a", b"1"),)}
    CookieMiddleware.set_cookie(message, "k", "v")
    assert message["headers"][0] == (b"x-a", b"1")
    assert message["headers"][1][0] == b"Set-Cookie"
