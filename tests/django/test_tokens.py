"""TokenAuthMiddleware and SignedTokenAuthenticator: header, subprotocol and query tokens."""

from __future__ import annotations

from typing import Any

from headrace.auth import AuthMiddlewareStack
from headrace.db import database_sync_to_async
from headrace.tokens import SignedTokenAuthenticator, TokenAuthMiddleware
from tests.django.asgi_helpers import ScopeRecorder, call, http_scope, websocket_scope

CONNECT = [{"type": "websocket.connect"}]


async def test_header_token(user_factory: Any) -> None:
    alice = await database_sync_to_async(user_factory)("tok-alice")
    auth = SignedTokenAuthenticator()
    inner = ScopeRecorder()
    headers = [(b"authorization", f"Bearer {auth.make_token(alice)}".encode())]
    await call(TokenAuthMiddleware(inner, auth), http_scope(headers=headers), [])
    assert inner.scope["user"].username == "tok-alice"


async def test_subprotocol_token_is_removed_from_offer(user_factory: Any) -> None:
    bob = await database_sync_to_async(user_factory)("tok-bob")
    auth = SignedTokenAuthenticator()
    token = auth.make_token(bob)
    assert all(ch.isalnum() or ch in "-_." for ch in token)  # valid as a subprotocol name
    inner = ScopeRecorder()
    scope = websocket_scope(subprotocols=["bearer." + token, "chat"])
    await call(TokenAuthMiddleware(inner, auth), scope, CONNECT)
    assert inner.scope["user"].username == "tok-bob"
    assert inner.scope["subprotocols"] == ["chat"]


async def test_query_token(user_factory: Any) -> None:
    carol = await database_sync_to_async(user_factory)("tok-carol")
    auth = SignedTokenAuthenticator()
    inner = ScopeRecorder()
    query = f"room=1&token={auth.make_token(carol)}".encode()
    await call(TokenAuthMiddleware(inner, auth), websocket_scope(query_string=query), CONNECT)
    assert inner.scope["user"].username == "tok-carol"


async def test_tampered_token_is_anonymous(user_factory: Any) -> None:
    dave = await database_sync_to_async(user_factory)("tok-dave")
    auth = SignedTokenAuthenticator()
    token = auth.make_token(dave)[:-2] + "xx"
    inner = ScopeRecorder()
    headers = [(b"authorization", f"Bearer {token}".encode())]
    await call(TokenAuthMiddleware(inner, auth), http_scope(headers=headers), [])
    assert inner.scope["user"].is_anonymous


async def test_password_change_revokes_token(user_factory: Any) -> None:
    erin = await database_sync_to_async(user_factory)("tok-erin")
    auth = SignedTokenAuthenticator()
    token = auth.make_token(erin)

    def change_password() -> None:
        erin.set_password("changed-pass")
        erin.save()

    await database_sync_to_async(change_password)()
    assert await auth(token, http_scope()) is None


async def test_inactive_user_and_expired_token_are_refused(user_factory: Any) -> None:
    frank = await database_sync_to_async(user_factory)("tok-frank")
    expired = SignedTokenAuthenticator(max_age=-1)
    assert await expired(expired.make_token(frank), http_scope()) is None
    auth = SignedTokenAuthenticator()
    token = auth.make_token(frank)

    def deactivate() -> None:
        frank.is_active = False
        frank.save()

    await database_sync_to_async(deactivate)()
    assert await auth(token, http_scope()) is None


async def test_reject_invalid_refuses_http_and_websocket() -> None:
    async def nobody(token: str, scope: Any) -> None:
        return None

    app = TokenAuthMiddleware(ScopeRecorder(), nobody, reject_invalid=True)
    headers = [(b"authorization", b"Bearer nope")]
    http = await call(app, http_scope(headers=headers), [])
    assert http[0]["status"] == 401
    ws = await call(app, websocket_scope(query_string=b"token=nope"), CONNECT)
    assert ws == [{"type": "websocket.close"}]  # refused before accept: the client sees 403


async def test_pluggable_authenticator_and_custom_scheme() -> None:
    seen: list[str] = []

    async def api_keys(token: str, scope: Any) -> str | None:
        seen.append(token)
        return "service-account" if token == "k-123" else None

    inner = ScopeRecorder()
    app = TokenAuthMiddleware(inner, api_keys, header="x-api-key", scheme="Key")
    await call(app, http_scope(headers=[(b"x-api-key", b"Key k-123")]), [])
    assert inner.scope["user"] == "service-account"
    assert seen == ["k-123"]


async def test_without_token_keeps_session_user(user_factory: Any) -> None:
    """Inside AuthMiddlewareStack, no token means the session user stays."""
    inner = ScopeRecorder()
    app = AuthMiddlewareStack(TokenAuthMiddleware(inner, SignedTokenAuthenticator()))
    await call(app, websocket_scope(), CONNECT)
    assert inner.scope["user"].is_anonymous


async def test_lifespan_passes_through() -> None:
    reached: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["type"])

    await call(TokenAuthMiddleware(inner, SignedTokenAuthenticator()), {"type": "lifespan"}, [])
    assert reached == ["lifespan"]
