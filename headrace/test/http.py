"""The Channels-1 test clients: ``Client``, ``HttpClient`` and its alias ``WSClient``.

Theory of operation
-------------------
A :class:`Client` is one fake connection: it has its own reply channel, ``send`` puts
messages on a channel of the (captive) layer with that reply channel, ``consume`` takes the
next message of a channel and runs the consumer the layer's routing picks for it exactly as
the worker does (inside :func:`~headrace.channel.held_sends`, ``ConsumeLater`` putting the
message back, ``DenyConnection`` answering ``{"close": True}``, an unrouted ``http.request``
going to the Django views), and ``receive`` reads what was sent back to the reply channel.

:class:`HttpClient` adds what a browser brings along: headers and cookies (the session cookie
included, so ``http_session`` decorators find ``client.session``), ``login`` /
``force_login`` through Django's own ``login``, JSON text frames, the ``order`` key numbered
for ``enforce_ordering`` consumers (``ordered=True``), and the ``{"accept": True}`` check
after a ``websocket.connect``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import import_module
from typing import Any
from urllib.parse import quote

from headrace.asgi import AsgiChannelLayer, channel_layers
from headrace.channel import Group, held_sends
from headrace.constants import DEFAULT_CHANNEL_LAYER
from headrace.exceptions import ConsumeLater, DenyConnection
from headrace.message import Message
from headrace.routing import Router
from headrace.routing_worker import (
    HTTP_REQUEST,
    WEBSOCKET_CONNECT,
    RoutingWorker,
    accept_connection,
    requeue,
)
from headrace.test.base import DEFAULT_TIMEOUT, next_message

__all__ = ["Client", "HttpClient", "WSClient"]


class Client:
    """A fake connection with its own reply channel on layer ``alias``."""

    def __init__(
        self, alias: str = DEFAULT_CHANNEL_LAYER, channel_layer: AsgiChannelLayer | None = None
    ) -> None:
        self.alias = alias
        self._channel_layer = channel_layer
        self.reply_channel = self.channel_layer.new_channel("test.reply!")

    @property
    def channel_layer(self) -> AsgiChannelLayer:
        if self._channel_layer is not None:
            return self._channel_layer
        return channel_layers[self.alias].channel_layer

    def get_next_message(
        self, channel: str, require: bool = False, timeout: float = DEFAULT_TIMEOUT
    ) -> Message | None:
        return next_message(channel, self.alias, require, timeout)

    def send(self, to: str, content: dict[str, Any] | None = None) -> None:
        """Send ``content`` (with this client's reply channel) to channel ``to``."""
        message = copy.deepcopy(content or {})
        message.setdefault("reply_channel", self.reply_channel)
        self.channel_layer.send(to, message)

    def consume(self, channel: str, fail_on_none: bool = True) -> None:
        """Run the routed consumer for the next message on ``channel``. ``AssertionError``
        when there is no message or no route, unless ``fail_on_none=False``."""
        message = self.get_next_message(channel, require=fail_on_none)
        if message is None:
            return None
        match = self._route(message)
        if match is None:
            if fail_on_none:
                raise AssertionError(f"No route for a message on {channel!r}: {message.content}")
            return None
        consumer, kwargs = match
        self._run(consumer, message, kwargs)
        return None

    def _route(self, message: Message) -> tuple[Any, dict[str, Any]] | None:
        match = Router(channel_layers[self.alias].routing).match(message)
        if match is None and message.channel.name == HTTP_REQUEST:
            from headrace.handler import ViewConsumer

            return ViewConsumer(), {}
        if match is None and message.channel.name == WEBSOCKET_CONNECT:
            return accept_connection, {}
        return match

    def _run(self, consumer: Any, message: Message, kwargs: dict[str, Any]) -> None:
        try:
            with _keep_test_connection(), held_sends() as held:
                try:
                    RoutingWorker.call_consumer(consumer, message, kwargs)
                except ConsumeLater:
                    held.discard()
                    requeue(message.channel_layer, message.channel.name, message.content)
        except DenyConnection:
            if message.reply_channel is not None:
                message.reply_channel.send({"close": True}, immediately=True)

    def send_and_consume(
        self, channel: str, content: dict[str, Any] | None = None, fail_on_none: bool = True
    ) -> Any:
        self.send(channel, content)
        return self.consume(channel, fail_on_none=fail_on_none)

    def receive(self, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any] | None:
        """The content of the next message sent to this client's reply channel, or ``None``."""
        message = self.get_next_message(self.reply_channel, timeout=timeout)
        return None if message is None else message.content

    def join_group(self, group_name: str) -> None:
        Group(group_name, channel_layer=self.channel_layer).add(self.reply_channel)


@contextmanager
def _keep_test_connection() -> Iterator[None]:
    """Django views send ``request_started``/``request_finished``, which close database
    connections; inside a test's transaction that would close the test's own connection
    (Django's test client disconnects the same handler)."""
    from django.core import signals
    from django.db import close_old_connections

    disconnected = [
        signal
        for signal in (signals.request_started, signals.request_finished)
        if signal.disconnect(close_old_connections)
    ]
    try:
        yield
    finally:
        for signal in disconnected:
            signal.connect(close_old_connections)


class HttpClient(Client):
    """A browser-like client: headers, cookies, the Django session, logins, JSON frames."""

    def __init__(
        self,
        alias: str = DEFAULT_CHANNEL_LAYER,
        channel_layer: AsgiChannelLayer | None = None,
        ordered: bool = False,
    ) -> None:
        super().__init__(alias, channel_layer)
        self._ordered = ordered
        self.order = 0
        self._headers: dict[str, str] = {}
        self._cookies: dict[str, str] = {}
        self._session: Any = None

    # -------------------------------------------------------------- headers, cookies, session

    @property
    def headers(self) -> dict[str, str]:
        return self._headers

    @property
    def cookies(self) -> dict[str, str]:
        return self._cookies

    def set_cookie(self, name: str, value: str) -> None:
        self._cookies[name] = value

    def get_headers(self) -> list[list[bytes]]:
        """The headers of the next message: ``headers`` plus a ``cookie`` header."""
        headers = {name.lower(): value for name, value in self._headers.items()}
        if self._cookies:
            headers["cookie"] = "; ".join(
                f"{name}={quote(value, safe='')}" for name, value in self._cookies.items()
            )
        return [
            [name.encode("latin-1"), value.encode("latin-1")] for name, value in headers.items()
        ]

    @property
    def session(self) -> Any:
        """The Django session of this client's session cookie (created and saved when the
        client has none), as ``self.client.session`` in Django's test client."""
        from django.conf import settings

        engine = import_module(settings.SESSION_ENGINE)
        key = self._cookies.get(settings.SESSION_COOKIE_NAME)
        if self._session is None or self._session.session_key != key:
            self._session = engine.SessionStore(key)
            if key is None:
                self._session.save()
                self._cookies[settings.SESSION_COOKIE_NAME] = self._session.session_key
        return self._session

    # -------------------------------------------------------------- sending

    def send(
        self,
        to: str,
        content: dict[str, Any] | str | None = None,
        text: Any = None,
        path: str = "/",
    ) -> None:
        """Send a message to ``to`` with this client's reply channel, path, headers and
        cookies; ``text`` that is not a str is sent as JSON. A str ``content`` is the path."""
        if isinstance(content, str):
            path, content = content, None
        message = copy.deepcopy(content or {})
        message.setdefault("reply_channel", self.reply_channel)
        path, _, query = path.partition("?")
        message.setdefault("path", path)
        if query:
            message.setdefault("query_string", query.encode("latin-1"))
        message.setdefault("headers", self.get_headers())
        if self._ordered:
            if "order" in message:
                raise ValueError("Do not put 'order' in the content of an HttpClient(ordered=True)")
            message["order"] = self.order
            self.order += 1
        text = text if text is not None else message.get("text")
        if text is not None:
            message["text"] = text if isinstance(text, str) else json.dumps(text)
        self.channel_layer.send(to, message)

    def send_and_consume(  # type: ignore[override]
        self,
        channel: str,
        content: dict[str, Any] | str | None = None,
        text: Any = None,
        path: str = "/",
        fail_on_none: bool = True,
        check_accept: bool = True,
    ) -> Any:
        self.send(channel, content, text, path)
        return self.consume(channel, fail_on_none=fail_on_none, check_accept=check_accept)

    def consume(self, channel: str, fail_on_none: bool = True, check_accept: bool = True) -> Any:
        """As :meth:`Client.consume`; after a ``websocket.connect`` it also reads the answer
        and raises ``AssertionError`` unless it was ``{"accept": True}``."""
        result = super().consume(channel, fail_on_none=fail_on_none)
        if channel == "websocket.connect" and check_accept:
            answer = super().receive()
            if answer != {"accept": True}:
                raise AssertionError(f"Connection rejected: {answer!r} != {{'accept': True}}")
        return result

    def receive(self, json: bool = True, timeout: float = DEFAULT_TIMEOUT) -> Any:  # type: ignore[override]
        """The next reply: with ``json`` its ``text`` decoded from JSON (other replies as the
        content dict); with ``json=False`` the ``text`` itself, or the content. ``None``
        when nothing came."""
        content = super().receive(timeout=timeout)
        if content is None:
            return None
        text = content.get("text")
        if not isinstance(text, str):
            return content
        return _json_loads(text) if json else text

    # -------------------------------------------------------------- logins

    def login(self, **credentials: Any) -> bool:
        """Authenticate with ``credentials`` and log the session in; False when they fail."""
        from django.contrib.auth import authenticate

        user = authenticate(**credentials)
        if user is None or not getattr(user, "is_active", True):
            return False
        self._login(user)
        return True

    def force_login(self, user: Any, backend: str | None = None) -> None:
        """Log ``user`` in without credentials (the first backend unless ``backend``)."""
        from django.conf import settings

        self._login(user, backend or settings.AUTHENTICATION_BACKENDS[0])

    def _login(self, user: Any, backend: str | None = None) -> None:
        from django.contrib.auth import login
        from django.http import HttpRequest

        request = HttpRequest()
        request.session = self.session
        login(request, user, backend)
        request.session.save()
        from django.conf import settings

        self._cookies[settings.SESSION_COOKIE_NAME] = request.session.session_key
        self._session = request.session


WSClient = HttpClient
"""The later 1.x name of :class:`HttpClient`."""


def _json_loads(text: str) -> Any:
    return json.loads(text)
