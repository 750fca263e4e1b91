"""Cookies and Django sessions in the ASGI scope (Channels' ``channels.sessions``).

Theory of operation
-------------------
``CookieMiddleware`` parses the ``Cookie`` header(s) once into ``scope["cookies"]`` (the
same dict Django puts in ``request.COOKIES``; several fields, as HTTP/2 clients send them,
are joined first). Its class methods ``set_cookie`` and
``delete_cookie`` append ``Set-Cookie`` headers to an ``http.response.start`` message.

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

Channels 1.x decorators
-----------------------
The 1.x names live here too and are told apart by how they are called: they decorate a
consumer called as ``consumer(message, **kwargs)`` (a :class:`headrace.message.Message`),
where the middleware above wraps an ASGI application.

* ``channel_session`` gives ``message.channel_session``, a session that lives as long as the
  connection: its key is derived from the reply channel (``"chn"`` + the first 29 hex digits
  of the SHA-1 of its name), in ``CHANNEL_SESSION_ENGINE`` (default ``SESSION_ENGINE``; the
  signed-cookie engine cannot work and is refused). It is created on the first message; when
  two workers race to create it, the loser raises :class:`~headrace.exceptions.ConsumeLater`
  so its message runs again after the winner. It is saved after the consumer when modified.
* ``http_session`` gives ``message.http_session``: the Django session named by the
  ``session_key`` query parameter or the session cookie, or ``None`` (never created here).
* ``channel_and_http_session`` does both and remembers the HTTP session key in the channel
  session on the first message, so later messages (which carry no cookies) get it too.
* ``enforce_ordering`` runs a WebSocket's messages strictly in their ``order``: a message that
  comes early is parked on a single-reader wait channel of its own (``__wait__.<hash of the
  reply channel>?<order>``) and a ``parked`` record is written to the channel session engine;
  the process that finishes the message before it sees the record (a read that cannot miss,
  unlike a non-blocking receive under load), claims it by creating a ``claimed`` record (only
  one creator wins) and sends the message back to its channel. The next expected
  order is kept in the channel session under ``__channels_next_order``. Before it is set,
  order 1 may run too: the connect (order 0) always runs first, with or without the
  decorator (Channels 1.x waited for a 0 that never came when only the receive consumer
  was decorated, as in its own manual). What the consumer sends goes out before the next
  order is released, so the replies of consecutive messages keep their order too.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import logging
import time
from collections.abc import Callable
from importlib import import_module
from typing import Any

from headrace._types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "CHANNEL_SESSION_PREFIX",
    "CookieMiddleware",
    "InstanceSessionWrapper",
    "SessionMiddleware",
    "SessionMiddlewareStack",
    "channel_and_http_session",
    "channel_session",
    "enforce_ordering",
    "http_session",
    "save_session",
    "session_for_reply_channel",
]

_SAMESITE_VALUES = ("strict", "lax", "none")

logger = logging.getLogger("headrace.sessions")


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
        """Append a ``Set-Cookie`` header to an ``http.response.start`` message (to its
        ``headers`` list, created when missing), as Channels does.

        ``expires`` is a preformatted date string or a datetime (naive means UTC); a
        datetime is turned into ``max_age`` as Django's ``HttpResponse.set_cookie`` does.
        ``samesite`` other than ``None`` must be ``"strict"``, ``"lax"`` or ``"none"`` (any
        case); another string raises ``AssertionError``, another type (``False``)
        ``AttributeError``, as in Channels, both naming the argument.
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
        if samesite is not None:
            # Channels' exception types (and message), for tests that check them.
            if not isinstance(samesite, str):
                raise AttributeError(
                    f"samesite must be 'strict', 'lax', 'none' or None, not {samesite!r}"
                )
            if samesite.lower() not in _SAMESITE_VALUES:
                raise AssertionError("samesite must be either 'strict', 'lax' or 'none'")
            morsel["samesite"] = samesite
        header = morsel.output(header="").strip().encode("utf-8")
        # Channels' header name casing, appended to the message's own list (a tuple of
        # headers, which Channels cannot extend, becomes a list).
        headers = message.setdefault("headers", [])
        if not isinstance(headers, list):
            headers = message["headers"] = list(headers)
        headers.append((b"Set-Cookie", header))

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
            expires="Thu, 01-Jan-1970 00:00:00 GMT",
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
        # Saved even when empty, as Channels does (the cookie may not be deletable).
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
            secure=settings.SESSION_COOKIE_SECURE or None,
            httponly=settings.SESSION_COOKIE_HTTPONLY or None,
            samesite=settings.SESSION_COOKIE_SAMESITE,
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


# ---------------------------------------------------------------------- Channels 1.x decorators

CHANNEL_SESSION_PREFIX = "chn"
_NEXT_ORDER = "__channels_next_order"
_SIGNED_COOKIES = "django.contrib.sessions.backends.signed_cookies"

Consumer1 = Callable[..., Any]


def channel_session_engine() -> Any:
    """The module named by ``CHANNEL_SESSION_ENGINE`` (default ``SESSION_ENGINE``)."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    name = getattr(settings, "CHANNEL_SESSION_ENGINE", None) or settings.SESSION_ENGINE
    if not isinstance(name, str):
        raise ImproperlyConfigured(
            f"CHANNEL_SESSION_ENGINE must be a module path, not {type(name).__name__}"
        )
    if name == _SIGNED_COOKIES:
        raise ImproperlyConfigured(
            "CHANNEL_SESSION_ENGINE (or SESSION_ENGINE) is the signed-cookie engine, which "
            "cannot store channel sessions: only an HTTP response can write a cookie"
        )
    try:
        return import_module(name)
    except ImportError as exc:
        raise ImproperlyConfigured(f"Cannot import CHANNEL_SESSION_ENGINE {name!r}: {exc}") from exc


def channel_session_key(reply_channel: str) -> str:
    """The 1.x session key of a connection: ``"chn"`` + 29 hex digits of SHA-1(reply channel)."""
    digest = hashlib.sha1(reply_channel.encode("utf-8")).hexdigest()
    return CHANNEL_SESSION_PREFIX + digest[:29]


def session_for_reply_channel(reply_channel: str) -> Any:
    """The channel session store of ``reply_channel`` (loaded, not yet created)."""
    key = channel_session_key(reply_channel)
    session = channel_session_engine().SessionStore(session_key=key)
    session._session  # noqa: B018  # load now (one read), as Django's own accessors do
    # Django's stores drop a key that does not exist yet on load; keep ours.
    session._session_key = key
    return session


def _require_reply_channel(message: Any, decorator: str) -> str:
    reply_channel = getattr(message, "reply_channel", None)
    if reply_channel is None:
        raise ValueError(
            f"No reply_channel in the message on {message.channel.name!r}: @{decorator} only "
            "works on messages that have one"
        )
    return str(reply_channel.name)


def _open_channel_session(message: Any) -> Any:
    from django.contrib.sessions.backends.base import CreateError

    from headrace.exceptions import ConsumeLater

    session = session_for_reply_channel(_require_reply_channel(message, "channel_session"))
    if not session.exists(session.session_key):
        try:
            session.save(must_create=True)
        except CreateError:
            # Another worker created it in the meantime: run this message after it.
            raise ConsumeLater() from None
    return session


def channel_session(func: Consumer1) -> Consumer1:
    """Provide ``message.channel_session``, kept per connection and saved after ``func``."""

    @functools.wraps(func)
    def inner(message: Any, *args: Any, **kwargs: Any) -> Any:
        if hasattr(message, "channel_session"):  # an outer decorator opened it
            return func(message, *args, **kwargs)
        session = message.channel_session = _open_channel_session(message)
        try:
            return func(message, *args, **kwargs)
        finally:
            if session.modified and not session.is_empty():
                session.save()

    return inner


def _http_session_key(message: Any) -> str | None:
    """The session key a connect message names: ``?session_key=`` first, else the cookie."""
    from django.conf import settings
    from django.http import QueryDict

    content = message.content
    if "path" not in content and "headers" not in content:
        raise ValueError(
            f"@http_session needs an HTTP or WebSocket message (with a path and headers); "
            f"the message on {message.channel.name!r} is not one"
        )
    query = content.get("query_string") or b""
    if isinstance(query, bytes):
        query = query.decode("latin-1")
    key = QueryDict(query).get("session_key")
    if key:
        return str(key)
    scope = {"headers": [(_bytes(n), _bytes(v)) for n, v in content.get("headers") or ()]}
    return parse_cookies(scope).get(settings.SESSION_COOKIE_NAME) or None


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("latin-1")


def _http_session_store(session_key: str | None) -> Any:
    from django.conf import settings

    if not session_key:
        return None
    return import_module(settings.SESSION_ENGINE).SessionStore(session_key=session_key)


def http_session(func: Consumer1) -> Consumer1:
    """Provide ``message.http_session``: the Django session of the request's cookie or
    ``session_key`` parameter, or ``None``. Saved after ``func`` when modified."""

    @functools.wraps(func)
    def inner(message: Any, *args: Any, **kwargs: Any) -> Any:
        if hasattr(message, "http_session"):
            return func(message, *args, **kwargs)
        session = message.http_session = _http_session_store(_http_session_key(message))
        result = func(message, *args, **kwargs)
        if session is not None and session.modified:
            session.save()
        return result

    return inner


def channel_and_http_session(func: Consumer1) -> Consumer1:
    """Both sessions; the HTTP session key is kept in the channel session, so messages after
    the connect (which carry no cookies) get ``message.http_session`` as well."""

    @functools.wraps(func)
    def remember_http_session(message: Any, *args: Any, **kwargs: Any) -> Any:
        from django.conf import settings

        name = settings.SESSION_COOKIE_NAME
        if message.http_session is not None and name not in message.channel_session:
            message.channel_session[name] = message.http_session.session_key
        elif message.http_session is None and name in message.channel_session:
            message.http_session = _http_session_store(message.channel_session[name])
        return func(message, *args, **kwargs)

    return http_session(channel_session(remember_http_session))


def _wait_channel(reply_channel: str, order: int) -> str:
    """The single-reader channel where message ``order`` of a connection waits its turn."""
    digest = hashlib.sha1(reply_channel.encode("utf-8")).hexdigest()[:24]
    return f"__wait__.{digest}?{order}"


def _marker(reply_channel: str, order: int, kind: str) -> Any:
    """A record in the channel session engine: ``parked`` says message ``order`` waits on its
    wait channel, ``claimed`` that one process is putting it back (created atomically)."""
    key = channel_session_key(f"{reply_channel}|{kind}|{order}")
    return channel_session_engine().SessionStore(session_key=key)


def _create(record: Any) -> bool:
    from django.contrib.sessions.backends.base import CreateError

    try:
        record.save(must_create=True)
    except CreateError:
        return False
    return True


def _park(message: Any, order: int) -> None:
    """Put an early message on its wait channel, then record that it is there."""
    from headrace.exceptions import ChannelFull

    reply_channel = message.reply_channel.name
    wait_channel = _wait_channel(reply_channel, order)
    content = dict(message.content, original_channel=message.channel.name)
    try:
        message.channel_layer.send(wait_channel, content)
    except ChannelFull:
        raise ChannelFull(
            f"Cannot park an out-of-order message: {wait_channel!r} is full"
        ) from None
    _create(_marker(reply_channel, order, "parked"))


def _release(message: Any, order: int) -> None:
    """Send message ``order`` back to its channel if it is parked; of the processes that may
    try at once (the one that finished the message before, the one that parked it), the one
    that creates the ``claimed`` record does it."""
    from headrace.exceptions import ChannelFull

    reply_channel = message.reply_channel.name
    parked = _marker(reply_channel, order, "parked")
    if not parked.exists(parked.session_key):
        return
    claimed = _marker(reply_channel, order, "claimed")
    if not _create(claimed):
        return
    layer = message.channel_layer
    wait_channel = _wait_channel(reply_channel, order)
    try:
        # It was sent before the parked record was written: a blocking receive gets it.
        for _attempt in range(3):
            channel, content = layer.receive([wait_channel], block=True)
            if channel is not None:
                break
        else:
            logger.error("A parked message was not on %r; it is lost", wait_channel)
            return
        original = content.pop("original_channel")
        try:
            layer.send(original, content)
        except ChannelFull:
            raise ChannelFull(
                f"Cannot put a parked message back on {original!r}: the channel is full"
            ) from None
    finally:
        parked.delete()
        claimed.delete()


def _expected_order(message: Any, order: int) -> int:
    """The order that may run now. Before any ordered message ran, that is 0, or 1 for a
    message after the connect: a WebSocket sends nothing before its connect was answered,
    so a connect consumer without ``@enforce_ordering`` (as in the manual) has run."""
    expected = message.channel_session.get(_NEXT_ORDER)
    if expected is not None:
        return int(expected)
    return 1 if order == 1 and message.channel.name != "websocket.connect" else 0


def _wait_for_turn(message: Any, order: int, expected: int) -> None:
    if order < expected:
        logger.warning(
            "Dropped message %d of %r: @enforce_ordering already ran it",
            order,
            message.reply_channel.name,
        )
        return
    _park(message, order)
    # The message before it may have finished while this one was being parked.
    if order == message.channel_session.load().get(_NEXT_ORDER, 0):
        _release(message, order)


def _ordered(func: Consumer1) -> Consumer1:
    @functools.wraps(func)
    def inner(message: Any, *args: Any, **kwargs: Any) -> Any:
        from headrace.channel import held_sends

        if "order" not in message.content:
            raise ValueError(
                f"@enforce_ordering needs an 'order' key; the message on "
                f"{message.channel.name!r} has none"
            )
        order = int(message.content["order"])
        session = message.channel_session
        expected = _expected_order(message, order)
        if order != expected:
            _wait_for_turn(message, order, expected)
            return None
        try:
            # The consumer's own sends go out before the next message may run, so its
            # replies cannot be overtaken by those of the message after it.
            with held_sends():
                return func(message, *args, **kwargs)
        finally:
            session[_NEXT_ORDER] = order + 1
            session.save()
            session.modified = False
            _release(message, order + 1)

    return channel_session(inner)


def enforce_ordering(func: Consumer1 | None = None, slight: bool = False) -> Any:
    """Run a connection's messages strictly in their ``order`` (see the module docs).

    ``@enforce_ordering`` and ``@enforce_ordering()`` both work; ``slight=True`` is refused
    as in Channels 1.x, where the slight ordering became what every connection gets."""
    if slight:
        raise ValueError(
            "enforce_ordering(slight=True) is gone: slight ordering (connect before receive) "
            "is always on now; drop the decorator, or use @enforce_ordering for strict order"
        )
    if func is None:
        return _ordered
    return _ordered(func)
