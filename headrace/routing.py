"""Routers: ASGI applications that pick an inner application by scope type, path or channel.

Theory of operation
-------------------
* :class:`ProtocolTypeRouter` looks at ``scope["type"]`` (``http``, ``websocket``, ``channel``...).
* :class:`URLRouter` matches ``scope["path"]`` against Django ``path()``/``re_path()`` entries.
  The outermost router strips ``scope["root_path"]`` first; each match consumes the start of the
  path and records the rest in ``scope["path_remaining"]``, so a nested ``URLRouter`` matches only
  what is left (its entries are turned into non-endpoint patterns, like ``include()``). Captured
  positional and keyword arguments accumulate in ``scope["url_route"]`` (``args``, ``kwargs``,
  with ``path()`` defaults merged in). When nothing matches, the outermost router raises
  ``ValueError("No route found for path '/the/full/path'.")``; nested routers raise Django's
  ``Resolver404`` so the outer router can try its next entry.
* :class:`ChannelNameRouter` maps ``scope["channel"]`` (worker scopes) to applications.

The Channels-1 routing lives beside them and is told apart by how it is called: the modern
routers are ASGI applications called with ``(scope, receive, send)``; a 1.x routing list is
made of :func:`route`, :func:`route_class` and :func:`include` entries, and a :class:`Router`
built over it is asked ``router.match(message)`` for a ``(consumer, kwargs)`` pair. Filters are
regular expressions on message keys (``path=r"^/chat/(?P<room>[^/]+)/$"``, ``method="GET"``),
anchored at the start whether or not they begin with ``^``; named groups become keyword
arguments of the consumer. An ``include(routing, path=prefix)`` strips what its path filter
matched before the included routes see the path, so includes nest. A routing may also be a
dotted path to a list, or (1.x's oldest form) a dict of ``{channel: consumer}``; consumers may
be dotted paths. Mistakes (an unknown object in the list, a filter that is not a string or does
not compile, a consumer that cannot be imported) raise when the router is built, naming the
entry.

Only :class:`URLRouter` and :func:`get_default_application` need Django, and they import it
when used, so plain ASGI users of the other routers never load it.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from headrace._types import Receive, Scope, Send
from headrace.utils import import_string

if TYPE_CHECKING:
    from headrace.message import Message

__all__ = [
    "ChannelNameRouter",
    "Include",
    "ProtocolTypeRouter",
    "Route",
    "RouteClass",
    "Router",
    "URLRouter",
    "get_default_application",
    "include",
    "route",
    "route_class",
]

Application = Callable[[Scope, Receive, Send], Awaitable[Any]]
"""An ASGI application; routers return whatever it returns (``None`` for ASGI apps), as
Channels' routers do."""


def get_default_application() -> Any:
    """The application named by Django's ``ASGI_APPLICATION`` setting (``"module.attribute"``)."""
    from django.conf import settings
    from django.core.exceptions import (
        ImproperlyConfigured,
    )

    dotted = getattr(settings, "ASGI_APPLICATION", None)
    if not isinstance(dotted, str) or "." not in dotted:
        raise ImproperlyConfigured(
            "Cannot find ASGI_APPLICATION setting (expected 'package.module.application')."
        )
    module_path, name = dotted.rsplit(".", 1)
    try:
        module = importlib.import_module(module_path)
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"Cannot import ASGI_APPLICATION module {module_path!r}: {exc}"
        ) from exc
    try:
        return getattr(module, name)
    except AttributeError:
        raise ImproperlyConfigured(
            f"Cannot find {name!r} in ASGI_APPLICATION module {module_path}"
        ) from None


class ProtocolTypeRouter:
    """Dispatch on ``scope["type"]`` to the application mapped for it."""

    def __init__(self, application_mapping: Mapping[str, Application]) -> None:
        self.application_mapping = application_mapping

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        scope_type = scope["type"]
        try:
            application = self.application_mapping[scope_type]
        except KeyError:
            raise ValueError(f"No application configured for scope type {scope_type!r}") from None
        return await application(scope, receive, send)


def _as_non_endpoint(route: Any) -> None:
    from django.urls.resolvers import (
        RegexPattern,
        RoutePattern,
    )

    pattern = route.pattern
    if isinstance(pattern, RegexPattern):
        source = pattern._regex
    elif isinstance(pattern, RoutePattern):
        source = pattern._route
    else:
        raise ValueError(f"Unsupported pattern type: {type(pattern)}")
    route.pattern = pattern.__class__(source, pattern.name, is_endpoint=False)


class URLRouter:
    """Route by URL path with Django ``path()`` / ``re_path()`` entries; routers may nest."""

    _path_routing = True

    def __init__(self, routes: Sequence[Any]) -> None:
        from django.core.exceptions import (
            ImproperlyConfigured,
        )
        from django.urls.resolvers import URLResolver

        self.routes = list(routes)
        for route in self.routes:
            if not getattr(route, "callback", None) and isinstance(route, URLResolver):
                raise ImproperlyConfigured(
                    f"{route}: include() is not supported in URLRouter. "
                    "Use nested URLRouter instances instead."
                )
            if getattr(route.callback, "_path_routing", False) is True:
                _as_non_endpoint(route)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        from django.urls.exceptions import Resolver404

        outermost = "path_remaining" not in scope
        path = self._path_to_match(scope, outermost)
        for route in self.routes:
            try:
                match = route.pattern.match(path)
            except Resolver404:
                continue
            if not match:
                continue
            try:
                return await route.callback(self._inner_scope(scope, route, match), receive, send)
            except Resolver404:
                continue  # a nested router found nothing: try the next entry
        full_path = scope.get("path", path)
        if outermost:
            raise ValueError(f"No route found for path {full_path!r}.")
        raise Resolver404(f"No route found for path {full_path!r}.")

    @staticmethod
    def _path_to_match(scope: Scope, outermost: bool) -> str:
        path = scope.get("path_remaining", scope.get("path"))
        if path is None:
            raise ValueError("No 'path' key in connection scope, cannot route URLs")
        if outermost:
            root_path = scope.get("root_path", "")
            if root_path:
                if not path.startswith(root_path):
                    raise ValueError(
                        f"No route found for path {path!r}: it is outside root_path {root_path!r}."
                    )
                path = path[len(root_path) :]
        return str(path).lstrip("/")

    @staticmethod
    def _inner_scope(
        scope: Scope, route: Any, match: tuple[str, tuple[Any, ...], dict[str, Any]]
    ) -> Scope:
        new_path, args, kwargs = match
        kwargs = {**kwargs, **route.default_args}
        outer = scope.get("url_route", {})
        return dict(
            scope,
            path_remaining=new_path,
            url_route={
                "args": tuple(outer.get("args", ())) + tuple(args),
                "kwargs": {**outer.get("kwargs", {}), **kwargs},
            },
        )


class ChannelNameRouter:
    """Dispatch worker scopes on ``scope["channel"]``."""

    def __init__(self, application_mapping: Mapping[str, Application]) -> None:
        self.application_mapping = application_mapping

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        if "channel" not in scope:
            raise ValueError(
                "ChannelNameRouter got a scope without a 'channel' key. "
                "Did you make sure it's only being used for 'channel' type messages?"
            )
        try:
            application = self.application_mapping[scope["channel"]]
        except KeyError:
            raise ValueError(
                f"No application configured for channel name {scope['channel']!r}"
            ) from None
        return await application(scope, receive, send)


# ---------------------------------------------------------------------- Channels 1.x routing

Consumer = Callable[..., Any]
"""A Channels-1 consumer: called as ``consumer(message, **kwargs)``."""

Match = tuple[Consumer, dict[str, Any]]

_ROUTE_CHANNEL_REGEX = re.compile(r"^[a-zA-Z\d\-_.]+$")


def _import_dotted(dotted: str, what: str) -> Any:
    try:
        return import_string(dotted)
    except ImportError as exc:
        raise ImportError(f"cannot import {what} {dotted!r}: {exc}") from exc


def _compile_filters(filters: Mapping[str, object]) -> dict[str, re.Pattern[str]]:
    compiled: dict[str, re.Pattern[str]] = {}
    for key, value in filters.items():
        if not isinstance(value, str):
            raise TypeError(
                f"route filter {key}= must be a regular expression string, not {value!r}"
            )
        source = value if value.startswith("^") else "^" + value
        try:
            compiled[key] = re.compile(source)
        except re.error as exc:
            raise ValueError(f"route filter {key}={value!r} is not a valid regex: {exc}") from exc
    return compiled


def _filter_value(message: Message, key: str, overrides: Mapping[str, str]) -> str | None:
    """The string a filter on ``key`` matches: what an include left of it, else the content's
    value (bytes are read as Latin-1, as header and query bytes are)."""
    if key in overrides:
        return overrides[key]
    value = message.content.get(key)
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value if isinstance(value, str) else None


def _apply_filters(
    filters: Mapping[str, re.Pattern[str]], message: Message, overrides: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]] | None:
    """Match every filter; return (captured kwargs, what is left of each filtered value)."""
    kwargs: dict[str, Any] = {}
    remaining: dict[str, str] = {}
    for key, regex in filters.items():
        value = _filter_value(message, key, overrides)
        if value is None:
            return None
        found = regex.match(value)
        if found is None:
            return None
        kwargs.update(found.groupdict())
        remaining[key] = value[found.end() :]
    return kwargs, remaining


class _RoutingEntry:
    """What a Channels-1 routing list holds."""

    filters: dict[str, re.Pattern[str]]

    def channel_names(self) -> set[str]:
        raise TypeError(f"{type(self).__name__} does not name channels")

    def match(self, message: Message, overrides: Mapping[str, str] | None = None) -> Match | None:
        raise TypeError(f"{type(self).__name__} does not match messages")


class Route(_RoutingEntry):
    """``route(channel, consumer, **filters)``: messages on ``channel`` whose keys match."""

    def __init__(
        self, channel: str | Sequence[str], consumer: Consumer | str, **filters: str
    ) -> None:
        names = [channel] if isinstance(channel, str) else list(channel)
        for name in names:
            if not isinstance(name, str) or not _ROUTE_CHANNEL_REGEX.match(name):
                raise ValueError(
                    f"route() channel must be a normal channel name "
                    f"(ASCII letters, digits, '-', '_', '.'), not {name!r}"
                )
        if isinstance(consumer, str):
            consumer = _import_dotted(consumer, "consumer")
        if not callable(consumer):
            raise TypeError(f"route() consumer for {names} must be callable, not {consumer!r}")
        self.channels = names
        self.consumer: Consumer = consumer
        self.filters = _compile_filters(filters)

    def channel_names(self) -> set[str]:
        return set(self.channels)

    def match(self, message: Message, overrides: Mapping[str, str] | None = None) -> Match | None:
        if message.channel.name not in self.channels:
            return None
        applied = _apply_filters(self.filters, message, overrides or {})
        if applied is None:
            return None
        return self.consumer, applied[0]

    def __repr__(self) -> str:
        filters = "".join(f", {key}={regex.pattern!r}" for key, regex in self.filters.items())
        return f"route({self.channels!r}, {self.consumer!r}{filters})"


class RouteClass(Route):
    """``route_class(consumer_class, **filters)``: the channels come from the class's
    ``channel_names()`` classmethod; the class is called as ``cls(message, **kwargs)``."""

    def __init__(self, consumer_class: type | str, **filters: str) -> None:
        if isinstance(consumer_class, str):
            consumer_class = _import_dotted(consumer_class, "consumer class")
        names_of = getattr(consumer_class, "channel_names", None)
        if not isinstance(consumer_class, type) or not callable(names_of):
            raise TypeError(
                f"route_class() needs a consumer class with a channel_names() classmethod, "
                f"not {consumer_class!r}"
            )
        channels = names_of()
        if isinstance(channels, str) or not isinstance(channels, Iterable):
            raise TypeError(
                f"{consumer_class.__name__}.channel_names() must return channel names, "
                f"not {channels!r}"
            )
        super().__init__(sorted(channels), consumer_class, **filters)

    def __repr__(self) -> str:
        return f"route_class({self.consumer!r})"


class Include(_RoutingEntry):
    """``include(routing, **filters)``: another routing, behind filters whose matched start
    is stripped before the included routes see the value."""

    def __init__(self, routing: Any, **filters: str) -> None:
        self.routes = make_routes(routing)
        self.filters = _compile_filters(filters)

    def channel_names(self) -> set[str]:
        names: set[str] = set()
        for entry in self.routes:
            names |= entry.channel_names()
        return names

    def match(self, message: Message, overrides: Mapping[str, str] | None = None) -> Match | None:
        applied = _apply_filters(self.filters, message, overrides or {})
        if applied is None:
            return None
        kwargs, remaining = applied
        inner_overrides = {**(overrides or {}), **remaining}
        for entry in self.routes:
            found = entry.match(message, inner_overrides)
            if found is not None:
                return found[0], {**kwargs, **found[1]}
        return None

    def __repr__(self) -> str:
        return f"include({self.routes!r})"


def route(channel: str | Sequence[str], consumer: Consumer | str, **filters: str) -> Route:
    """A Channels-1 route: ``consumer`` handles ``channel`` messages matching ``filters``."""
    return Route(channel, consumer, **filters)


def route_class(consumer_class: type | str, **filters: str) -> RouteClass:
    """A Channels-1 route for a class-based consumer (see :class:`RouteClass`)."""
    return RouteClass(consumer_class, **filters)


def include(routing: Any, **filters: str) -> Include:
    """Route into another Channels-1 routing (a list or a dotted path) behind ``filters``."""
    return Include(routing, **filters)


def make_routes(routing: Any) -> list[_RoutingEntry]:
    """A Channels-1 routing (list, tuple, dict or dotted path to one) as a list of entries."""
    if isinstance(routing, str):
        routing = _import_dotted(routing, "routing")
    if isinstance(routing, Mapping):
        return [Route(channel, consumer) for channel, consumer in routing.items()]
    if not isinstance(routing, list | tuple):
        raise TypeError(
            f"a Channels-1 routing must be a list of route()/route_class()/include() entries "
            f"(or a dotted path to one), not {type(routing).__name__}"
        )
    for index, entry in enumerate(routing):
        if not isinstance(entry, _RoutingEntry):
            raise TypeError(
                f"routing entry {index} is {entry!r}: use route(), route_class() or include() "
                "(modern routers such as URLRouter belong in an ASGI application, not here)"
            )
    return list(routing)


class Router:
    """A Channels-1 routing, asked which consumer handles a message."""

    def __init__(self, routing: Any) -> None:
        self.routes = make_routes(routing)

    @property
    def channels(self) -> set[str]:
        """Every channel a route names: what a worker over this routing listens on."""
        names: set[str] = set()
        for entry in self.routes:
            names |= entry.channel_names()
        return names

    def add_route(self, entry: _RoutingEntry) -> None:
        """Append ``entry`` (matched after every existing route)."""
        self.routes.extend(make_routes([entry]))

    def match(self, message: Message) -> Match | None:
        """The first ``(consumer, kwargs)`` whose route matches ``message``, else ``None``."""
        for entry in self.routes:
            found = entry.match(message)
            if found is not None:
                return found
        return None

    def __repr__(self) -> str:
        return f"<Router channels={sorted(self.channels)!r}>"
