"""Channels-1 origin checks: decorators for ``websocket.connect`` consumers.

``@allowed_hosts_only`` lets a connect message through only when its ``Origin`` header names
a host of ``settings.ALLOWED_HOSTS`` (the loopback names when ``DEBUG`` and the list is
empty); ``@allowed_origins(["https://example.com", ".example.org"])`` checks against a list
of patterns of the modern :class:`~headrace.security.websocket.OriginValidator` (same rules).
Anything else, a missing or unparsable ``Origin`` included, raises
:class:`~headrace.exceptions.DenyConnection`, which the worker answers with ``{"close":
True}`` (the handshake is refused with 403). Subclass :class:`BaseOriginValidator` and
override ``validate_origin(message, origin)`` for other rules.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import SplitResult, urlsplit

from headrace.exceptions import DenyConnection
from headrace.security.websocket import origin_matches

__all__ = [
    "AllowedHostsOnlyOriginValidator",
    "BaseOriginValidator",
    "allowed_hosts_only",
    "allowed_origins",
]

_DEBUG_ALLOWED_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def message_origin(message: Any) -> SplitResult | None:
    """The parsed last ``Origin`` header of a connect message, or None."""
    origin: SplitResult | None = None
    for header in message.content.get("headers") or ():
        if len(header) < 2:
            continue
        name, value = header[0], header[1]
        if (name.lower() if isinstance(name, bytes) else str(name).lower().encode()) != b"origin":
            continue
        try:
            text = value.decode("ascii") if isinstance(value, bytes) else str(value)
            origin = urlsplit(text)
        except (UnicodeDecodeError, ValueError):
            origin = None
    return origin


class BaseOriginValidator:
    """Wraps a connect consumer; raises ``DenyConnection`` unless ``validate_origin`` agrees."""

    def __init__(self, func: Callable[..., Any]) -> None:
        functools.update_wrapper(self, func)
        self.func = func

    def __call__(self, message: Any, *args: Any, **kwargs: Any) -> Any:
        return self.run(self.func, message, *args, **kwargs)

    def run(self, func: Callable[..., Any], message: Any, *args: Any, **kwargs: Any) -> Any:
        """Call ``func(message, ...)`` if the origin is valid, else deny the connection."""
        if not self.validate_origin(message, message_origin(message)):
            raise DenyConnection()
        return func(message, *args, **kwargs)

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        """Decorating a method binds like a function: ``self.connect(message)`` works."""
        if instance is None:
            return self
        return functools.partial(self.run, functools.partial(self.func, instance))

    def validate_origin(self, message: Any, origin: SplitResult | None) -> bool:
        raise NotImplementedError(f"{type(self).__name__} must define validate_origin()")


class AllowedHostsOnlyOriginValidator(BaseOriginValidator):
    """Admits origins whose host is in ``ALLOWED_HOSTS``."""

    def validate_origin(self, message: Any, origin: SplitResult | None) -> bool:
        from django.conf import settings

        allowed_hosts = list(settings.ALLOWED_HOSTS)
        if settings.DEBUG and not allowed_hosts:
            allowed_hosts = list(_DEBUG_ALLOWED_HOSTS)
        if origin is None:
            return "*" in allowed_hosts
        return any(origin_matches(origin, pattern) for pattern in allowed_hosts)


allowed_hosts_only = AllowedHostsOnlyOriginValidator


def allowed_origins(patterns: Iterable[str]) -> Callable[[Callable[..., Any]], Any]:
    """A decorator admitting only origins that match one of ``patterns``."""
    if isinstance(patterns, str):
        raise TypeError("allowed_origins() takes a list of origin patterns, not one string")
    allowed = tuple(patterns)

    class _AllowedOrigins(BaseOriginValidator):
        def validate_origin(self, message: Any, origin: SplitResult | None) -> bool:
            if origin is None:
                return "*" in allowed
            return any(origin_matches(origin, pattern) for pattern in allowed)

    return _AllowedOrigins
