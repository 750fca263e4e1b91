"""Base class for ASGI middleware that wraps one inner application.

A middleware instance serves every connection, so it keeps no per-connection state on ``self``;
it passes per-connection data down in the scope. :class:`BaseMiddleware` copies the scope before
calling the inner application, so keys a middleware adds never leak back to outer layers.
Subclasses override ``__call__``, adjust ``scope`` and then ``await super().__call__(...)``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from headrace._types import Receive, Scope, Send

__all__ = ["BaseMiddleware"]


class BaseMiddleware:
    """Wraps ``inner``; calling it runs ``inner`` with a private copy of the scope."""

    def __init__(self, inner: Callable[[Scope, Receive, Send], Awaitable[Any]]) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        scope = dict(scope)
        return await self.inner(scope, receive, send)
