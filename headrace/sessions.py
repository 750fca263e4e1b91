"""Cookies and Django sessions in the ASGI scope (Channels' ``channels.sessions``).

Theory of operation
-------------------
``CookieMiddleware`` parses the ``Cookie`` header(s) once into ``scope["cookies"]`` (the
same dict Django puts in ``request.COOKIES``; several fields, as HTTP/2 clients send them,
are joined first). Its class methods ``set_cookie`` and
``delete_cookie`` append ``set-cookie`` headers to an ``http.response.start`` message.

``SessionMiddleware`` puts a lazy Django session in ``scope["session"]``: the session
store is created from the cookie on the first access, so connections that never touch
the session never query the session backend. For HTTP it wraps ``send``: when the
response starts and the session was modified (or ``SESSION_SAVE_EVERY_REQUEST``), it
saves the session and sets or deletes the cookie, following Django's own
``SessionMiddleware``. A WebSocket has no response to carry a cookie, so a consumer
that changes the session saves it itself with one call::

    await save_session(self.scope)

(the cookie the browser already holds names the same session key, so the change is
visible to the next HTTP request). A nested ``SessionMiddleware`` sees the session that
an outer one put in the scope and leaves saving to it.
"""

from __future__ import annotations

import datetime
import time
from importlib import import_module
from typing import Any

from headrace._types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "CookieMiddleware",
    "InstanceSessionWrapper",
    "SessionMiddleware",
    "SessionMiddlewareStack",
    "save_session",
]

_SAMESITE_VALUES = ("strict", "lax", "none")


class CookieMiddleware:
    """Adds ``scope["cookies"]`` (a dict, like ``request.COOKIES``) for HTTP and WebSocket."""

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if "headers" not in scope:
            raise ValueError(
                "CookieMiddleware was passed a scope without headers "
                "(it only handles HTTP and WebSocket connections)"
            )
        await self.inner(dict(scope, cookies=parse_cookies(scope)), receive, send)

    @classmethod
    def set_cookie(
        cls,
        message: Message,
        key: str,
        value: Any = "",
        max_age: int | None = None,
        expires: str | datetime.datetime | None = None,
        path: str | None = "/",
        domain: str | None = None,
        secure: bool | None = False,
        httponly: bool | None = False,
        samesite: str | None = "lax",
    ) -> None:
        """Append a ``set-cookie`` header to an ``http.response.start`` message.

        ``expires`` is a preformatted date string or a datetime (naive means UTC); a
        datetime is turned into ``max_age`` as Django's ``HttpResponse.set_cookie`` does.
        """
        from django.http.cookie import SimpleCookie
        from django.utils.encoding import force_str
        from django.utils.http import http_date

        cookies: SimpleCookie = SimpleCookie()
        cookies[key] = force_str(value)
        morsel = cookies[key]
        if isinstance(expires, datetime.datetime):
            max_age = _seconds_until(expires)
            expires = None
        morsel["expires"] = expires or ""
        if max_age is not None:
            morsel["max-age"] = str(max_age)
            if not expires:
                morsel["expires"] = http_date(time.time() + max_age)
        if path is not None:
            morsel["path"] = path
        if domain is not None:
            morsel["domain"] = domain
        if secure:
            morsel["secure"] = True
        if httponly:
            morsel["httponly"] = True
        if samesite:
            if samesite.lower() not in _SAMESITE_VALUES:
                raise ValueError("samesite must be 'strict', 'lax' or 'none'")
            morsel["samesite"] = samesite
        header = morsel.output(header="").strip().encode("utf-8")
        message["headers"] = [*message.get("headers", ()), (b"set-cookie", header)]

    @classmethod
    def delete_cookie(
        cls, message: Message, key: str, path: str | None = "/", domain: str | None = None
    ) -> None:
        """Append a ``set-cookie`` header that expires ``key`` in the browser."""
        cls.set_cookie(
            message,
            key,
            max_age=0,
            path=path,
            domain=domain,
            expires="Thu, 01 Jan 1970 00:00:00 GMT",
        )


def parse_cookies(scope: Scope) -> dict[str, str]:
    """The request's cookies, parsed the way Django parses them."""
    from django.http import parse_cookie

    values = [value for name, value in scope.get("headers", ()) if name.lower() == b"cookie"]
    if not values:
        return {}
    # HTTP/2 clients may split the cookies over several fields (RFC 9113 8.2.3): join them.
    return dict(parse_cookie(b"; ".join(values).decode("latin-1")))


def _seconds_until(expires: datetime.datetime) -> int:
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=datetime.UTC)
    delta = expires - datetime.datetime.now(datetime.UTC)
    # One second more so the rounded date matches the requested one.
    return max(0, int(delta.total_seconds()) + 1)


async def save_session(scope: Scope) -> None:
    """Save ``scope["session"]`` now; the call a WebSocket consumer makes after changing it."""
    from django.contrib.sessions.backends.base import UpdateError
    from django.core.exceptions import SuspiciousOperation

    from headrace.db import database_sync_to_async

    session = scope.get("session")
    if session is None:
        raise ValueError("No session in scope: wrap the application in SessionMiddleware")
    try:
        await database_sync_to_async(session.save)()
    except UpdateError as exc:
        raise SuspiciousOperation(
            "The session was deleted before the request completed "
            "(the user may have logged out in a concurrent request)."
        ) from exc


class InstanceSessionWrapper:
    """Per-connection state: the lazy session in the scope and the session-saving ``send``."""

    save_message_types = ("http.response.start",)
    cookie_response_message_types = ("http.response.start",)

    def __init__(self, scope: Scope, send: Send) -> None:
        from django.conf import settings
        from django.utils.functional import LazyObject

        self.cookie_name: str = settings.SESSION_COOKIE_NAME
        self.session_store: Any = import_module(settings.SESSION_ENGINE).SessionStore
        self.scope: Scope = dict(scope)
        self.real_send = send
        self.activated = "session" not in self.scope
        if self.activated:
            if "cookies" not in self.scope:
                raise ValueError(
                    "No cookies in scope: SessionMiddleware must run inside CookieMiddleware"
                )
            self.scope["session"] = LazyObject()

    async def resolve_session(self) -> None:
        """Bind the lazy session to the store named by the session cookie (no query yet)."""
        if self.activated:
            session_key = self.scope["cookies"].get(self.cookie_name)
            self.scope["session"]._wrapped = self.session_store(session_key)

    async def save_session(self) -> None:
        """Save the scope's session now (Channels' method; same as :func:`save_session`)."""
        await save_session(self.scope)

    async def send(self, message: Message) -> None:
        """Save the session and set its cookie when a response starts; then pass it on."""
        if self.activated and message["type"] in self.save_message_types:
            await self._save_for_response(message)
        await self.real_send(message)

    async def _save_for_response(self, message: Message) -> None:
        from django.conf import settings

        session = self.scope["session"]
        if message.get("status", 200) == 500:
            return
        if not (session.modified or settings.SESSION_SAVE_EVERY_REQUEST):
            return
        empty = session.is_empty()
        if not empty:
            await self.save_session()
        if message["type"] not in self.cookie_response_message_types:
            return
        if empty:
            if settings.SESSION_COOKIE_NAME in self.scope["cookies"]:
                CookieMiddleware.delete_cookie(
                    message,
                    settings.SESSION_COOKIE_NAME,
                    path=settings.SESSION_COOKIE_PATH,
                    domain=settings.SESSION_COOKIE_DOMAIN,
                )
        else:
            self._set_session_cookie(message, session)

    def _set_session_cookie(self, message: Message, session: Any) -> None:
        from django.conf import settings
        from django.utils.http import http_date

        max_age: int | None = None
        expires: str | None = None
        if not session.get_expire_at_browser_close():
            max_age = int(session.get_expiry_age())
            expires = http_date(time.time() + max_age)
        CookieMiddleware.set_cookie(
            message,
            self.cookie_name,
            session.session_key,
            max_age=max_age,
            expires=expires,
            domain=settings.SESSION_COOKIE_DOMAIN,
            path=settings.SESSION_COOKIE_PATH,
            secure=settings.SESSION_COOKIE_SECURE,
            httponly=settings.SESSION_COOKIE_HTTPONLY,
            samesite=settings.SESSION_COOKIE_SAMESITE or None,
        )


class SessionMiddleware:
    """Adds a lazy Django session to ``scope["session"]``; needs ``CookieMiddleware`` above."""

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        wrapper = InstanceSessionWrapper(scope, send)
        await wrapper.resolve_session()
        await self.inner(wrapper.scope, receive, wrapper.send)


def SessionMiddlewareStack(inner: ASGIApp) -> ASGIApp:
    """``CookieMiddleware(SessionMiddleware(inner))``."""
    return CookieMiddleware(SessionMiddleware(inner))
