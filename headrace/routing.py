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

Only :class:`URLRouter` and :func:`get_default_application` need Django, and they import it
when used, so plain ASGI users of the other routers never load it.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from headrace._types import Receive, Scope, Send

__all__ = ["ChannelNameRouter", "ProtocolTypeRouter", "URLRouter", "get_default_application"]

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
