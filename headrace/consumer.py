"""Consumers: ASGI applications that dispatch each incoming message to a method by its type.

Theory of operation
-------------------
``Consumer.as_asgi()`` returns an ASGI app that builds one consumer instance per connection. The
instance looks up its channel layer (``channel_layer_alias``), asks it for a process-local
channel name, and then waits on two sources at once: the ASGI ``receive`` and the layer's
``receive(channel_name)``. Every message from either is dispatched to the method named by its
``type`` with dots turned into underscores (``chat.message`` → ``chat_message``); names with a
leading underscore are refused so a message can never call a private method. Raising
:class:`~headrace.exceptions.StopConsumer` ends the instance cleanly.

One implementation, two faces. All logic is written once, as coroutines, on
:class:`AsyncConsumer` and the generic consumers. A synchronous class does not re-implement it:

* its dispatcher runs plain (``def``) handlers in asgiref's thread-sensitive executor
  (``sync_to_async``), and awaits ``async def`` handlers on the loop;
* the methods users call from that thread (``send``, ``accept``, ``close``...) are the async
  implementations wrapped by :func:`blocking` (asgiref's ``async_to_sync``);
* hooks a framework coroutine calls back into (``connect``, ``receive``, ``encode_json``...) go
  through :meth:`AsyncConsumer._invoke`, which awaits coroutine functions and runs plain
  functions in the executor.

When Django's database settings are configured, stale connections are closed around handlers
as in Channels 4.3 (``headrace.db``); without Django nothing Django-related runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ClassVar, Concatenate, ParamSpec, TypeVar

from asgiref.sync import async_to_sync, sync_to_async

from headrace._types import ASGIApp, Message, Receive, Scope, Send
from headrace.constants import DEFAULT_CHANNEL_LAYER
from headrace.db import aclose_old_connections, database_sync_to_async, db_cleanup_enabled
from headrace.exceptions import StopConsumer
from headrace.layers import BaseChannelLayer, get_channel_layer

__all__ = [
    "AsyncConsumer",
    "SyncConsumer",
    "await_many_dispatch",
    "blocking",
    "db_cleanup_enabled",
    "get_handler_name",
]

P = ParamSpec("P")
R = TypeVar("R")
C = TypeVar("C", bound="AsyncConsumer")


def get_handler_name(message: Message) -> str:
    """The method name for ``message``: its ``type`` with ``.`` replaced by ``_``."""
    if "type" not in message:
        raise ValueError("Incoming message has no 'type' attribute")
    handler_name = str(message["type"]).replace(".", "_")
    if handler_name.startswith("_"):
        raise ValueError(f"Malformed type in message (leading underscore): {message['type']!r}")
    return handler_name


def _django_databases_configured() -> bool:
    if not db_cleanup_enabled.get():
        return False
    conf = sys.modules.get("django.conf")
    if conf is None:
        return False
    settings = conf.settings
    return bool(settings.configured and getattr(settings, "DATABASES", None))


async def await_many_dispatch(
    sources: list[Callable[[], Awaitable[Message]]],
    dispatch: Callable[[Message], Awaitable[None]],
) -> None:
    """Wait on every source at once and dispatch messages in arrival order until an error
    (including StopConsumer) ends the loop; pending waits are cancelled on the way out.

    A source is read again only after its previous message has been dispatched, so when a
    handler fails no further message has been taken from that source: whatever is still
    queued stays there for whoever reads the source next (the worker hands it on)."""
    tasks = [asyncio.ensure_future(source()) for source in sources]
    try:
        while True:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for index, task in enumerate(tasks):
                if task.done():
                    await dispatch(task.result())
                    tasks[index] = asyncio.ensure_future(sources[index]())
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def blocking(
    method: Callable[Concatenate[C, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[C, P], R]:
    """Turn an async consumer method into the blocking method a sync consumer exposes."""

    def run(self: C, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return async_to_sync(method)(self, *args, **kwargs)

    functools.update_wrapper(run, method)
    run.__headrace_async__ = method  # type: ignore[attr-defined]
    return run


class AsyncConsumer:
    """Base consumer: dispatches messages by type to ``async def`` handler methods."""

    _sync: ClassVar[bool] = False
    channel_layer_alias: ClassVar[str] = DEFAULT_CHANNEL_LAYER

    scope: Scope
    channel_layer: BaseChannelLayer | None
    channel_name: str
    channel_receive: Callable[[], Awaitable[Message]]
    base_send: Send

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        cls = type(self)
        for key, value in kwargs.items():
            if not hasattr(cls, key):
                raise TypeError(
                    f"{cls.__name__}.as_asgi() received an invalid keyword {key!r}: only "
                    "attributes the class already defines can be set this way"
                )
            setattr(self, key, value)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        sources: list[Callable[[], Awaitable[Message]]] = [receive]
        if self.channel_layer is not None:
            self.channel_name = await self.channel_layer.new_channel()
            self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
            sources.append(self.channel_receive)
        self.base_send = send
        with contextlib.suppress(StopConsumer):
            await await_many_dispatch(sources, self.dispatch)

    def _handler_for(self, message: Message) -> Callable[[Message], Any]:
        handler: Callable[[Message], Any] | None = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']!r}")
        return handler

    async def dispatch(self, message: Message) -> None:
        """Run the handler for ``message``."""
        handler = self._handler_for(message)
        if _django_databases_configured():
            await aclose_old_connections()
        await self._invoke(handler, message)

    async def _invoke(self, hook: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call a user hook: await coroutine functions, run plain functions in a thread.

        A :func:`blocking` wrapper called from the loop runs its coroutine directly, so a sync
        consumer's framework methods cost no thread round trip."""
        coroutine_function = getattr(hook, "__headrace_async__", None)
        if coroutine_function is not None and inspect.ismethod(hook):
            return await coroutine_function(hook.__self__, *args, **kwargs)
        if inspect.iscoroutinefunction(hook):
            return await hook(*args, **kwargs)
        result = await self._run_in_thread(hook, *args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def _run_in_thread(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if _django_databases_configured():
            return await database_sync_to_async(function)(*args, **kwargs)
        return await sync_to_async(function)(*args, **kwargs)

    async def send(self, message: Message) -> None:
        """Send an ASGI message to the client (overridable)."""
        await self.base_send(message)

    @classmethod
    def as_asgi(cls, **initkwargs: Any) -> ASGIApp:
        """An ASGI app creating one instance per connection with ``initkwargs``; like Django's
        ``as_view()``, each keyword must name an attribute the class already has."""

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            consumer = cls(**initkwargs)
            await consumer(scope, receive, send)

        functools.update_wrapper(app, cls, updated=())
        app.consumer_class = cls  # type: ignore[attr-defined]
        app.consumer_initkwargs = initkwargs  # type: ignore[attr-defined]
        return app


async def _async_send(self: AsyncConsumer, /, message: Message) -> None:
    await self.base_send(message)


_blocking_send = blocking(_async_send)


class SyncConsumer(AsyncConsumer):
    """Consumer whose handlers are plain functions run in asgiref's thread-sensitive executor;
    ``send`` blocks that thread until the message is handed to the server."""

    _sync: ClassVar[bool] = True

    send = _blocking_send  # type: ignore[assignment]
