"""Database access from async code, the way Django's request cycle does it.

Django closes stale and broken connections at the start and end of every request
(``close_old_connections`` on the ``request_started``/``request_finished`` signals). A
consumer lives much longer than a request, so each database call made from async code
must do the same around itself: ``database_sync_to_async`` is asgiref's ``SyncToAsync``
(thread-sensitive by default, so it shares Django's one database thread) that calls
``close_old_connections`` before and after the wrapped function. Use it as a decorator or
a wrapper; ``aclose_old_connections`` is the bare clean-up for code that uses Django's
own async ORM methods (``aget``, ``acreate``) in long-lived consumers.

The clean-up is switched off by :data:`db_cleanup_enabled` (a context variable, so per test):
the test communicators set it to ``False`` so a ``TestCase`` transaction survives. It lives
here, where the clean-up is, and :mod:`headrace.consumer` re-exports it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import SyncToAsync, sync_to_async

__all__ = [
    "DatabaseSyncToAsync",
    "aclose_old_connections",
    "database_sync_to_async",
    "db_cleanup_enabled",
]

P = ParamSpec("P")
R = TypeVar("R")

db_cleanup_enabled: ContextVar[bool] = ContextVar("headrace_db_cleanup_enabled", default=True)
"""False inside test communicators: consumers then leave Django's connections alone, so a
``TestCase`` transaction is not closed under the test."""


def _close_old_connections() -> None:
    if not db_cleanup_enabled.get():
        # Inside test communicators: leave a TestCase's transaction alone.
        return
    from django.db import close_old_connections

    close_old_connections()


class DatabaseSyncToAsync(SyncToAsync[P, R]):
    """``SyncToAsync`` that closes stale database connections around the call.

    The clean-up runs inside the wrapped call, in the caller's copied context (asgiref runs
    only the function itself under that context, not ``thread_handler``), so the
    ``db_cleanup_enabled`` switch set by the test communicators is honoured."""

    def __init__(self, func: Callable[P, R], *args: Any, **kwargs: Any) -> None:
        super().__init__(func, *args, **kwargs)
        self.func = _with_cleanup(func)

    def thread_handler(self, loop: asyncio.AbstractEventLoop, *args: Any, **kwargs: Any) -> Any:
        """asgiref's handler, unchanged (kept with Channels' signature for subclasses)."""
        return super().thread_handler(loop, *args, **kwargs)  # type: ignore[no-untyped-call]


def _with_cleanup(func: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(func)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        _close_old_connections()
        try:
            return func(*args, **kwargs)
        finally:
            _close_old_connections()

    return call


database_sync_to_async = DatabaseSyncToAsync
"""Wrap a blocking ORM function so async code can await it (decorator or call)."""


async def aclose_old_connections() -> None:
    """Close connections that are broken or past ``CONN_MAX_AGE`` (call between events)."""
    await sync_to_async(_close_old_connections)()
