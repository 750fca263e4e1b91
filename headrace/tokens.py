"""Bearer-token authentication for HTTP and WebSocket scopes (beyond Channels).

Theory of operation
-------------------
Browsers cannot put an ``Authorization`` header on a WebSocket handshake, and API clients
often have no session cookie, so ``TokenAuthMiddleware`` looks for a bearer token in three
places, in this order:

1. the ``Authorization: Bearer <token>`` header (header name and scheme configurable);
2. a WebSocket subprotocol ``bearer.<token>`` (``new WebSocket(url, ["bearer." + t, "chat"])``);
   that entry is removed from ``scope["subprotocols"]`` so the application never accepts it
   as its protocol (a browser accepts a handshake answer without any subprotocol);
3. the query string parameter ``token`` (visible in logs: the last resort).

The token goes to a pluggable *authenticator*: any ``async (token, scope) -> user | None``.
A user becomes ``scope["user"]``; an unknown token gives ``AnonymousUser`` or, with
``reject_invalid=True``, a refusal (``401`` for HTTP, a denied handshake for WebSocket).
Without a token the middleware leaves an existing ``scope["user"]`` alone (so it stacks
inside ``AuthMiddlewareStack`` as a second way in) and otherwise sets ``AnonymousUser``.

``SignedTokenAuthenticator`` is a ready authenticator: ``make_token(user)`` signs the
user's primary key with ``SECRET_KEY`` (Django's ``TimestampSigner``, with a separator
valid in a subprotocol name) together with a digest of the user's session hash, so a
password change invalidates every token; ``max_age`` bounds a token's life.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from headrace._types import ASGIApp, Receive, Scope, Send
from headrace.db import database_sync_to_async
from headrace.security.websocket import WebsocketDenier

__all__ = ["Authenticator", "SignedTokenAuthenticator", "TokenAuthMiddleware"]

Authenticator = Callable[[str, Scope], Awaitable[Any]]
"""``async (token, scope) -> user or None``."""


class TokenAuthMiddleware:
    """Sets ``scope["user"]`` from a bearer token checked by ``authenticator``."""

    def __init__(
        self,
        inner: ASGIApp,
        authenticator: Authenticator,
        *,
        header: str = "authorization",
        scheme: str = "Bearer",
        subprotocol_prefix: str | None = "bearer.",
        query_param: str | None = "token",
        reject_invalid: bool = False,
    ) -> None:
        self.inner = inner
        self.authenticator = authenticator
        self.header = header.lower().encode("latin-1")
        self.scheme = scheme.lower()
        self.subprotocol_prefix = subprotocol_prefix
        self.query_param = query_param
        self.reject_invalid = reject_invalid

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.inner(scope, receive, send)
            return
        scope = dict(scope)
        token = self.token_from_header(scope) or self.take_subprotocol_token(scope)
        token = token or self.token_from_query(scope)
        if token is None:
            if "user" not in scope:
                scope["user"] = _anonymous_user()
            await self.inner(scope, receive, send)
            return
        user = await self.authenticator(token, scope)
        if user is None and self.reject_invalid:
            await _refuse(scope, receive, send)
            return
        scope["user"] = user if user is not None else _anonymous_user()
        await self.inner(scope, receive, send)

    def token_from_header(self, scope: Scope) -> str | None:
        """The token of an ``<scheme> <token>`` header, if present."""
        for name, value in scope.get("headers", ()):
            if name.lower() == self.header:
                text: str = value.decode("latin-1")
                scheme, _, token = text.strip().partition(" ")
                if scheme.lower() == self.scheme and token.strip():
                    return token.strip()
        return None

    def take_subprotocol_token(self, scope: Scope) -> str | None:
        """The token of a ``<prefix><token>`` subprotocol, removed from the offered list."""
        prefix = self.subprotocol_prefix
        offered = scope.get("subprotocols") or []
        if prefix is None or scope["type"] != "websocket":
            return None
        for protocol in offered:
            if protocol.startswith(prefix) and len(protocol) > len(prefix):
                scope["subprotocols"] = [p for p in offered if p != protocol]
                return str(protocol[len(prefix) :])
        return None

    def token_from_query(self, scope: Scope) -> str | None:
        """The value of the query-string parameter, if present."""
        if self.query_param is None:
            return None
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        values = query.get(self.query_param)
        return values[0] if values else None


async def _refuse(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        await WebsocketDenier()(scope, receive, send)
        return
    headers = [(b"content-type", b"text/plain"), (b"www-authenticate", b"Bearer")]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": b"Invalid token\n"})


def _anonymous_user() -> Any:
    from django.contrib.auth.models import AnonymousUser

    return AnonymousUser()


class SignedTokenAuthenticator:
    """Issues and checks tokens signed with ``SECRET_KEY`` (see the module docstring)."""

    def __init__(self, *, max_age: float | None = 24 * 3600, salt: str = "headrace.tokens") -> None:
        self.max_age = max_age
        self.salt = salt

    def _signer(self) -> Any:
        from django.core.signing import TimestampSigner

        return TimestampSigner(salt=self.salt, sep=".")

    def make_token(self, user: Any) -> str:
        """A token for ``user``, valid until ``max_age`` or a password change."""
        payload = {"u": user._meta.pk.value_to_string(user), "h": _user_digest(user)}
        return str(self._signer().sign_object(payload))

    async def __call__(self, token: str, scope: Scope) -> Any:
        return await database_sync_to_async(self.user_for_token)(token)

    def user_for_token(self, token: str) -> Any:
        """The active user the token was issued to, or None (blocking: ORM query)."""
        from django.contrib.auth import get_user_model
        from django.core.signing import BadSignature
        from django.utils.crypto import constant_time_compare

        try:
            payload = self._signer().unsign_object(token, max_age=self.max_age)
            model = get_user_model()
            user = model._default_manager.get(pk=model._meta.pk.to_python(payload["u"]))
        except (BadSignature, KeyError, TypeError, ValueError):
            return None
        except get_user_model().DoesNotExist:
            return None
        if not getattr(user, "is_active", True):
            return None
        if not constant_time_compare(str(payload.get("h", "")), _user_digest(user)):
            return None
        return user


def _user_digest(user: Any) -> str:
    from django.utils.crypto import salted_hmac

    auth_hash = user.get_session_auth_hash() if hasattr(user, "get_session_auth_hash") else ""
    return str(salted_hmac("headrace.tokens.user", auth_hash).hexdigest()[:16])
