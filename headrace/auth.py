"""Django authentication in the ASGI scope (Channels' ``channels.auth``).

Theory of operation
-------------------
``AuthMiddleware`` sits inside ``SessionMiddleware`` and resolves ``scope["user"]`` from
the session exactly as ``django.contrib.auth.get_user`` does for a request: it reads the
user id and backend path stored at login, asks that backend for the user, and checks the
session hash so a password change logs out other sessions. The lookup runs once per
connection, before the inner application starts, in Django's database thread
(``database_sync_to_async``); anonymous visitors get ``AnonymousUser``.

``login`` and ``logout`` are the consumer-side counterparts of Django's views helpers:
they change the session in the scope and send Django's ``user_logged_in`` /
``user_logged_out`` signals (with ``request=None``). They do not save the session; an
HTTP consumer's response saves it, a WebSocket consumer calls
``await headrace.sessions.save_session(self.scope)``.

Channels 1.x decorators
-----------------------
The 1.x names decorate consumers called as ``consumer(message, **kwargs)`` and set
``message.user`` with the same lookup: ``http_session_user`` from the HTTP session,
``channel_session_user`` from the channel session, and ``channel_session_user_from_http``
(for ``websocket.connect``) copies the login from the HTTP session into the channel session
with ``transfer_user`` so the messages after the connect find it.
``channel_and_http_session_user_from_http`` does that and keeps the HTTP session too.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from headrace._types import ASGIApp, Receive, Scope, Send
from headrace.db import database_sync_to_async
from headrace.middleware import BaseMiddleware
from headrace.sessions import (
    CookieMiddleware,
    SessionMiddleware,
    channel_and_http_session,
    channel_session,
    http_session,
)

__all__ = [
    "AuthMiddleware",
    "AuthMiddlewareStack",
    "channel_and_http_session_user_from_http",
    "channel_session_user",
    "channel_session_user_from_http",
    "get_user",
    "http_session_user",
    "login",
    "logout",
    "transfer_user",
]

# Channels' own messages: projects' tests compare them.
_NO_SESSION = "Cannot find session in scope. You should wrap your consumer in SessionMiddleware."
_LOGOUT_NO_SESSION = (
    "Login cannot find session in scope. You should wrap your consumer in SessionMiddleware."
)
_NO_USER = "User must be passed as an argument or must be present in the scope."
_SEVERAL_BACKENDS = (
    "You have multiple authentication backends configured and therefore must provide the "
    "`backend` argument or set the `backend` attribute on the user."
)


def _session(scope: Scope, missing: str = _NO_SESSION) -> Any:
    if "session" not in scope:
        raise ValueError(missing)
    return scope["session"]


def _session_user_id(session: Any) -> Any:
    from django.contrib.auth import SESSION_KEY, get_user_model

    # The id is stored as a string; convert it back with the primary key's own field.
    return get_user_model()._meta.pk.to_python(session[SESSION_KEY])


def _user_from_session(session: Any) -> Any:
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, load_backend
    from django.utils.crypto import constant_time_compare

    try:
        user_id = _session_user_id(session)
        backend_path = session[BACKEND_SESSION_KEY]
    except KeyError:
        return None
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return None
    user = load_backend(backend_path).get_user(user_id)
    if user is not None and hasattr(user, "get_session_auth_hash"):
        session_hash = session.get(HASH_SESSION_KEY)
        if not (session_hash and constant_time_compare(session_hash, user.get_session_auth_hash())):
            session.flush()
            return None
    return user


@database_sync_to_async
def get_user(scope: Scope) -> Any:
    """The user the scope's session is logged in as, or an ``AnonymousUser``."""
    from django.contrib.auth.models import AnonymousUser

    return _user_from_session(_session(scope)) or AnonymousUser()


def _backend_path(user: Any, backend: str | None) -> str:
    from django.contrib.auth import _get_backends

    if backend:
        return backend
    if getattr(user, "backend", None):
        return str(user.backend)
    backends = _get_backends(return_tuples=True)
    if len(backends) != 1:
        raise ValueError(_SEVERAL_BACKENDS)
    return str(backends[0][1])


@database_sync_to_async
def login(scope: Scope, user: Any, backend: str | None = None) -> None:
    """Log ``user`` (or ``scope["user"]`` when None) into the scope's session."""
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        user_logged_in,
    )
    from django.utils.crypto import constant_time_compare

    session = _session(scope)
    user = user if user is not None else scope.get("user")
    if user is None:
        raise ValueError(_NO_USER)
    auth_hash = user.get_session_auth_hash() if hasattr(user, "get_session_auth_hash") else ""
    if SESSION_KEY in session:
        other_user = _session_user_id(session) != user.pk
        stale = auth_hash and not constant_time_compare(
            session.get(HASH_SESSION_KEY, ""), auth_hash
        )
        if other_user or stale:
            # Never reuse a session that belongs to someone else.
            session.flush()
    else:
        session.cycle_key()
    session[SESSION_KEY] = user._meta.pk.value_to_string(user)
    session[BACKEND_SESSION_KEY] = _backend_path(user, backend)
    session[HASH_SESSION_KEY] = auth_hash
    scope["user"] = user
    user_logged_in.send(sender=user.__class__, request=None, user=user)


@database_sync_to_async
def logout(scope: Scope) -> None:
    """Flush the scope's session and make ``scope["user"]`` anonymous."""
    from django.contrib.auth import user_logged_out
    from django.contrib.auth.models import AnonymousUser

    session = _session(scope, _LOGOUT_NO_SESSION)
    user = scope.get("user")
    if user is not None and getattr(user, "is_authenticated", False):
        user_logged_out.send(sender=user.__class__, request=None, user=user)
    session.flush()
    if "user" in scope:
        scope["user"] = AnonymousUser()


@functools.cache
def _user_lazy_object_class() -> type:
    from django.utils.functional import LazyObject

    class UserLazyObject(LazyObject):  # type: ignore[misc, unused-ignore]
        """Raises a clear error when the user is read before the middleware resolved it."""

        def _setup(self) -> None:
            raise ValueError("Accessing scope['user'] before AuthMiddleware resolved it")

    UserLazyObject.__module__ = __name__
    return UserLazyObject


def _user_lazy_object() -> Any:
    return _user_lazy_object_class()()


def __getattr__(name: str) -> Any:
    """``UserLazyObject`` is built on first access, so importing this module needs no Django."""
    if name == "UserLazyObject":
        return _user_lazy_object_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class AuthMiddleware(BaseMiddleware):
    """Populates ``scope["user"]`` from the Django session; needs ``SessionMiddleware`` above."""

    def populate_scope(self, scope: Scope) -> None:
        """Put an unresolved user placeholder in the scope (kept if one is already there)."""
        if "session" not in scope:
            raise ValueError(
                "AuthMiddleware cannot find session in scope: put SessionMiddleware above it"
            )
        if "user" not in scope:
            scope["user"] = _user_lazy_object()

    async def resolve_scope(self, scope: Scope) -> None:
        """Resolve the placeholder to the session's user (a resolved user is left alone)."""
        from django.utils.functional import empty

        if getattr(scope["user"], "_wrapped", None) is empty:
            scope["user"]._wrapped = await get_user(scope)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope = dict(scope)
        self.populate_scope(scope)
        await self.resolve_scope(scope)
        await super().__call__(scope, receive, send)


def AuthMiddlewareStack(inner: ASGIApp) -> ASGIApp:
    """``CookieMiddleware(SessionMiddleware(AuthMiddleware(inner)))``."""
    return CookieMiddleware(SessionMiddleware(AuthMiddleware(inner)))


# ---------------------------------------------------------------------- Channels 1.x decorators

Consumer1 = Callable[..., Any]


def _user_of(session: Any) -> Any:
    from django.contrib.auth.models import AnonymousUser

    if session is None:
        return AnonymousUser()
    return _user_from_session(session) or AnonymousUser()


def transfer_user(from_session: Any, to_session: Any) -> None:
    """Copy the login (user id, backend, session hash) from one session to another."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

    for key in (SESSION_KEY, BACKEND_SESSION_KEY, HASH_SESSION_KEY):
        if key in from_session:
            to_session[key] = from_session[key]


def channel_session_user(func: Consumer1) -> Consumer1:
    """``channel_session`` plus ``message.user``, the user logged into the channel session."""

    @functools.wraps(func)
    def inner(message: Any, *args: Any, **kwargs: Any) -> Any:
        message.user = _user_of(message.channel_session)
        return func(message, *args, **kwargs)

    return channel_session(inner)


def http_session_user(func: Consumer1) -> Consumer1:
    """``http_session`` plus ``message.user``, the user of the HTTP session (as
    ``request.user`` would be), ``AnonymousUser`` without one."""

    @functools.wraps(func)
    def inner(message: Any, *args: Any, **kwargs: Any) -> Any:
        message.user = _user_of(message.http_session)
        return func(message, *args, **kwargs)

    return http_session(inner)


def _transfer_from_http(func: Consumer1) -> Consumer1:
    @functools.wraps(func)
    def inner(message: Any, *args: Any, **kwargs: Any) -> Any:
        if message.http_session is not None:
            transfer_user(message.http_session, message.channel_session)
        return func(message, *args, **kwargs)

    return inner


def channel_session_user_from_http(func: Consumer1) -> Consumer1:
    """For ``websocket.connect``: the HTTP session's user in ``message.user``, copied into the
    channel session so later ``channel_session_user`` consumers see it."""
    return http_session_user(channel_session(_transfer_from_http(func)))


def channel_and_http_session_user_from_http(func: Consumer1) -> Consumer1:
    """``channel_session_user_from_http`` that also keeps ``message.http_session`` for the
    messages after the connect (``channel_and_http_session``)."""
    return http_session_user(channel_and_http_session(_transfer_from_http(func)))
