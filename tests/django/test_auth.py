"""get_user, login, logout and AuthMiddlewareStack against a real session database."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import user_logged_in, user_logged_out
from django.contrib.sessions.backends.db import SessionStore

from headrace._types import Receive, Scope, Send
from headrace.auth import AuthMiddleware, AuthMiddlewareStack, get_user, login, logout
from headrace.db import database_sync_to_async
from headrace.sessions import save_session
from tests.django.asgi_helpers import ScopeRecorder, call, http_scope, websocket_scope


async def logged_in_session(user: Any) -> SessionStore:
    scope: dict[str, Any] = {"session": SessionStore()}
    await login(scope, user)
    await save_session(scope)
    return scope["session"]


def cookie_for(session: SessionStore) -> list[tuple[bytes, bytes]]:
    return [(b"cookie", f"{settings.SESSION_COOKIE_NAME}={session.session_key}".encode())]


async def test_anonymous_without_session_cookie(migrated_database: None) -> None:
    inner = ScopeRecorder()
    await call(AuthMiddlewareStack(inner), websocket_scope(), [{"type": "websocket.connect"}])
    assert inner.scope["user"].is_anonymous


async def test_login_then_middleware_resolves_user(user_factory: Any) -> None:
    alice = await database_sync_to_async(user_factory)("alice")
    session = await logged_in_session(alice)
    inner = ScopeRecorder()
    await call(
        AuthMiddlewareStack(inner),
        websocket_scope(headers=cookie_for(session)),
        [{"type": "websocket.connect"}],
    )
    assert inner.scope["user"].is_authenticated
    assert inner.scope["user"].username == "alice"


async def test_password_change_invalidates_session(user_factory: Any) -> None:
    bob = await database_sync_to_async(user_factory)("bob")
    session = await logged_in_session(bob)

    def change_password() -> None:
        bob.set_password("another-pass")
        bob.save()

    await database_sync_to_async(change_password)()
    user = await get_user({"session": SessionStore(session.session_key)})
    assert user.is_anonymous


async def test_unknown_backend_is_anonymous(user_factory: Any) -> None:
    carol = await database_sync_to_async(user_factory)("carol")
    scope: dict[str, Any] = {"session": SessionStore()}
    await login(scope, carol, backend="not.a.configured.Backend")
    assert (await get_user(scope)).is_anonymous


async def test_login_and_logout_send_signals_and_update_scope(user_factory: Any) -> None:
    dave = await database_sync_to_async(user_factory)("dave")
    events: list[str] = []

    def on_login(sender: Any, user: Any, request: Any, **kwargs: Any) -> None:
        events.append(f"in:{user.username}:{request}")

    def on_logout(sender: Any, user: Any, request: Any, **kwargs: Any) -> None:
        events.append(f"out:{user.username}:{request}")

    user_logged_in.connect(on_login)
    user_logged_out.connect(on_logout)
    try:
        scope: dict[str, Any] = {"session": SessionStore()}
        await login(scope, dave)
        assert scope["user"] == dave
        await logout(scope)
        assert scope["user"].is_anonymous
        assert (await get_user(scope)).is_anonymous
    finally:
        user_logged_in.disconnect(on_login)
        user_logged_out.disconnect(on_logout)
    assert events == ["in:dave:None", "out:dave:None"]


async def test_login_as_other_user_flushes_session(user_factory: Any) -> None:
    erin = await database_sync_to_async(user_factory)("erin")
    frank = await database_sync_to_async(user_factory)("frank")
    scope: dict[str, Any] = {"session": SessionStore()}
    await login(scope, erin)
    await database_sync_to_async(scope["session"].__setitem__)("erin-data", 1)
    await login(scope, frank)
    assert "erin-data" not in await database_sync_to_async(scope["session"].keys)()
    assert (await get_user(scope)).username == "frank"


async def test_login_without_user_is_an_error() -> None:
    with pytest.raises(ValueError, match="User must be passed"):
        await login({"session": SessionStore()}, None)


async def test_functions_need_a_session() -> None:
    for action in (get_user({}), logout({})):
        with pytest.raises(ValueError, match="SessionMiddleware"):
            await action


async def test_auth_middleware_needs_session() -> None:
    with pytest.raises(ValueError, match="SessionMiddleware"):
        await call(AuthMiddleware(ScopeRecorder()), http_scope(), [])


async def test_websocket_login_persists_for_next_http_request(user_factory: Any) -> None:
    """A consumer logs in over the socket, saves, and the next page load sees the user."""
    grace = await database_sync_to_async(user_factory)("grace")
    anonymous = SessionStore()
    await database_sync_to_async(anonymous.create)()

    async def consumer(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await login(scope, grace)
        await save_session(scope)
        await send({"type": "websocket.accept"})

    await call(
        AuthMiddlewareStack(consumer),
        websocket_scope(headers=cookie_for(anonymous)),
        [{"type": "websocket.connect"}],
    )
    # login cycled the key: find the session the consumer saved through the user's id.
    inner = ScopeRecorder()

    def newest_session_key() -> str:
        from django.contrib.sessions.models import Session

        return str(Session.objects.order_by("-expire_date").first().session_key)  # type: ignore[union-attr]

    key = await database_sync_to_async(newest_session_key)()
    await call(
        AuthMiddlewareStack(inner),
        http_scope(headers=cookie_for(SessionStore(key))),
        [{"type": "http.request"}],
    )
    assert inner.scope["user"].username == "grace"
