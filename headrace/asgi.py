"""The Channels-1 (ASGI draft spec) synchronous view of a channel layer.

Theory of operation
-------------------
Channels 1.x code talks to a channel layer through the synchronous API of the ASGI draft spec:
``send(channel, message)``, ``receive(channels, block=False)`` returning ``(channel, message)``
or ``(None, None)``, ``new_channel(pattern)``, the ``groups`` / ``flush`` / ``statistics``
extensions and an awaitable ``receive_async``. :class:`AsgiChannelLayer` is that API as **one
adapter over any async** :class:`~headrace.layers.base.BaseChannelLayer` (in-memory, IPC,
Redis core or pub/sub); no backend is implemented twice.

*One private loop.* Every view owns one event-loop thread and runs every backend call on it
(``asyncio.run_coroutine_threadsafe``), so a sync call works from any thread (Django views,
worker threads) and from a process that never started a loop. All of the view's traffic sits on
one loop, which is what the backends want: the IPC layer receives a process-local channel on
one loop only and keeps one hub connection per loop, and the Redis layer keeps one connection
set per loop. ``receive_async`` hops onto the same loop and awaits the result from the caller's
loop. A sync call made *on* the view's own loop thread would wait for itself, so it raises
``RuntimeError`` instead. The thread is started on first use and stopped by :meth:`close`
(also at interpreter exit); a forked child starts its own thread on first use (the parent's
thread does not exist in the child) and drops what the parent had buffered.

*Receiving from several channels* (:func:`receive_first`, which the Channels-1 worker's threads
use too). A backend that can take one message from any of several channels in one call
(``receive_any(names)``: the Redis layer's single ``BLPOP`` over their lists, the IPC layer's
single RECEIVE_ANY request parked at its hub) does so. The
others receive one channel at a time, so ``receive(channels)`` starts one backend receive per
channel (in random order, so a busy channel cannot starve a quiet one), takes the first message,
and cancels the others. The backends never lose a message to a cancelled receive; a receive
that completed anyway in the same instant leaves its message in the caller's *stash*, which the
next ``receive`` of that channel returns first (so per-channel order holds). ``close()`` sends
stashed messages back to their channels. ``block=True`` waits up to
:attr:`AsgiChannelLayer.blocking_timeout` (5 s, as 1.x layers bounded their blocking pops) and
then returns ``(None, None)``; ``block=False`` returns as soon as the backend hands a message
over, or ``(None, None)`` after :attr:`AsgiChannelLayer.poll_timeout` (50 ms): a network backend
needs a round trip to know, and the spec allows a non-blocking receive to return after a delay.

*Names.* ASGI-1 names are ASCII letters, digits, ``-``, ``_`` and ``.``, plus at most one type
character: ``!`` (process-specific) or ``?`` (single-reader). Process-specific names come from
``new_channel("prefix!")``, which asks the backend for one of its own process-local names
(``prefix.<instance>!<random>``: the instance part is what lets Redis and IPC route it back to
this process), so they are received by this view. Receiving on a bare ``prefix!`` (the draft's
"receive every local channel under it") is refused: receive the full name, as modern Channels
does. Backends know no ``?``; a single-reader name ``main?suffix`` is stored as the **normal**
backend channel ``main__sr__suffix`` (:func:`backend_name`), which every backend makes globally
consistent and FIFO, so any one process may read it, in order. Normal ASGI-1 names may not
contain ``__sr__``.

*Messages.* A message must be a dict of the spec's types (str keys; str, bytes, int within
signed 64 bits, float, bool, None, list/tuple, dict). The size limit (1 MiB by default,
:attr:`AsgiChannelLayer.max_message_size`) is checked on an **estimate** of the encoded size,
computed while checking the types without encoding anything: the UTF-8 length of every string,
the length of every bytes value, 9 bytes per number and 5 bytes of framing per container and
item, which is at least what msgpack and JSON use. Too large raises :class:`MessageTooLarge`;
a full channel raises :class:`ChannelFull` (``send_group`` never does: full members miss the
message); a bad name raises :class:`InvalidChannelName` (a ``TypeError``).

*History and presence.* Over a backend with the ``history`` / ``presence`` extensions the view
offers them too (docs/history-presence.md): ``send_group`` returns the message's
:class:`~headrace.layers.history.Position`, ``group_history(group, since, limit)``,
``group_add(group, channel, info)``, ``group_presence(group)`` (keyed by ASGI-1 names) and
``group_presence_count(group)``. Presence events carry the backend's name of a single-reader
member (``main__sr__suffix``); :func:`asgi_name` turns it back.

*Settings.* ``CHANNEL_LAYERS`` is the modern setting; an entry with a ``"ROUTING"`` key (a
dotted path to a routing list, or the list itself) is a Channels-1 layer. :data:`channel_layers`
maps an alias to a :class:`ChannelLayerWrapper` (``.channel_layer`` the view, ``.routing``,
``.alias``; ``headrace.routing.Router(wrapper.routing)`` resolves the routing); the view's
backend is the modern manager's backend for that alias (``headrace.layers.channel_layers[alias]``),
so 1.x and modern code in one process share one layer.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import functools
import importlib
import logging
import os
import random
import re
import threading
import weakref
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from headrace.constants import DEFAULT_CHANNEL_LAYER
from headrace.exceptions import (
    ChannelFull,
    ChannelLayerError,
    InvalidChannelLayerError,
    InvalidChannelName,
    MessageTooLarge,
)
from headrace.layers.base import BaseChannelLayer
from headrace.layers.history import GroupHistory, Position
from headrace.utils import import_string

__all__ = [
    "BLOCKING_TIMEOUT",
    "MAX_MESSAGE_SIZE",
    "POLL_TIMEOUT",
    "SINGLE_READER_MARKER",
    "AsgiChannelLayer",
    "ChannelLayerManager",
    "ChannelLayerWrapper",
    "Stash",
    "asgi_name",
    "backend_name",
    "channel_layers",
    "check_message",
    "finish_loop",
    "get_channel_layer",
    "receive_first",
    "require_valid_channel_name",
    "require_valid_group_name",
    "resolve_routing",
]

logger = logging.getLogger("headrace.asgi")

_PASSED_ON = ("statistics", "history", "presence")
"""Extensions the view offers when its backend has them."""

T = TypeVar("T")
Message = dict[str, Any]

MAX_MESSAGE_SIZE = 1024 * 1024
"""The default message size limit (1 MiB), as in the ASGI draft spec."""

BLOCKING_TIMEOUT = 5.0
"""How long ``receive(channels, block=True)`` waits before returning ``(None, None)``."""

POLL_TIMEOUT = 0.05
"""How long ``receive(channels, block=False)`` gives the backend to hand over a message."""

SINGLE_READER_MARKER = "__sr__"
"""What ``?`` becomes in the backend's name of a single-reader channel."""

MAX_NAME_LENGTH = BaseChannelLayer.MAX_NAME_LENGTH

CHANNEL_NAME_REGEX = re.compile(r"^[a-zA-Z\d\-_.]+([!?][a-zA-Z\d\-_.]*)?$")
GROUP_NAME_REGEX = re.compile(r"^[a-zA-Z\d\-_.]+$")
PATTERN_REGEX = re.compile(r"^[a-zA-Z\d\-_.]+[!?]$")

_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_NUMBER_SIZE = 9
_FRAMING_SIZE = 5
_SCALARS = (bool, int, float, type(None))


# ---------------------------------------------------------------------- names


def require_valid_channel_name(name: object, receive: bool = False) -> str:
    """Check an ASGI-1 channel name; return the backend's name for it.

    Raise :class:`InvalidChannelName` (a ``TypeError``) for a non-str, a name breaking the
    character rules, a normal name containing :data:`SINGLE_READER_MARKER`, a name whose backend
    form is :data:`MAX_NAME_LENGTH` characters or longer, and (``receive=True``) a bare
    process-specific prefix ending at ``!``."""
    if not isinstance(name, str):
        raise InvalidChannelName(f"Channel name must be a str, not {type(name).__name__}")
    if not CHANNEL_NAME_REGEX.match(name):
        raise InvalidChannelName(
            f"Channel name {name[:120]!r} is invalid: use ASCII letters, digits, '-', '_' and "
            "'.', plus at most one '!' (process-specific) or '?' (single-reader)"
        )
    if receive and name.endswith("!"):
        raise InvalidChannelName(
            f"Cannot receive on the bare prefix {name!r}: receive the full process-specific "
            "name new_channel() returned"
        )
    mapped = backend_name(name)
    if len(mapped) >= MAX_NAME_LENGTH:
        raise InvalidChannelName(
            f"Channel name {name[:40]!r}... is too long: its layer name must be shorter than "
            f"{MAX_NAME_LENGTH} characters (it is {len(mapped)})"
        )
    return mapped


def backend_name(channel: str) -> str:
    """The backend channel name of ASGI-1 channel ``channel``: ``main?suffix`` becomes the
    normal channel ``main__sr__suffix``; other names are unchanged. Raises
    :class:`InvalidChannelName` for a normal name containing the reserved marker."""
    main, question, suffix = channel.partition("?")
    if question:
        return f"{main}{SINGLE_READER_MARKER}{suffix}"
    if SINGLE_READER_MARKER in channel.partition("!")[0]:
        raise InvalidChannelName(
            f"Channel name {channel!r} contains {SINGLE_READER_MARKER!r}, which is reserved "
            "for single-reader ('?') channels"
        )
    return channel


def asgi_name(channel: str) -> str:
    """The ASGI-1 name of backend channel ``channel`` (the inverse of :func:`backend_name`)."""
    if "!" not in channel and SINGLE_READER_MARKER in channel:
        return channel.replace(SINGLE_READER_MARKER, "?", 1)
    return channel


def require_valid_group_name(name: object) -> str:
    """Check a group name (ASCII letters, digits, ``-``, ``_``, ``.``; shorter than
    :data:`MAX_NAME_LENGTH`); raise :class:`InvalidChannelName` otherwise."""
    if not isinstance(name, str):
        raise InvalidChannelName(f"Group name must be a str, not {type(name).__name__}")
    if not GROUP_NAME_REGEX.match(name) or len(name) >= MAX_NAME_LENGTH:
        raise InvalidChannelName(
            f"Group name {name[:120]!r} is invalid: use fewer than {MAX_NAME_LENGTH} ASCII "
            "letters, digits, '-', '_' and '.'"
        )
    return name


# ---------------------------------------------------------------------- messages


def check_message(message: object, limit: int = MAX_MESSAGE_SIZE) -> int:
    """Check that ``message`` is a dict of ASGI types within ``limit`` bytes; return the
    estimated encoded size (see the module docs for the estimate).

    Raise ``TypeError`` for a non-dict or a value of another type, :class:`MessageTooLarge`
    when the estimate exceeds ``limit``."""
    if not isinstance(message, dict):
        raise TypeError(f"message must be a dict, not {type(message).__name__}")
    size = 0
    stack: list[Any] = [message]
    while stack:
        value = stack.pop()
        size += _value_size(value, stack)
        if size > limit:
            raise MessageTooLarge(
                f"message is over the {limit}-byte limit; send large data in chunks on its own "
                "channel"
            )
    return size


def _value_size(value: Any, stack: list[Any]) -> int:
    """The estimated size of ``value`` itself; pushes its children on ``stack``."""
    if isinstance(value, str):
        return _FRAMING_SIZE + (len(value) if value.isascii() else len(value.encode("utf-8")))
    if isinstance(value, bytes):
        return _FRAMING_SIZE + len(value)
    if isinstance(value, _SCALARS):
        if isinstance(value, int) and not _INT_MIN <= value <= _INT_MAX:
            raise TypeError(f"integer {value} is outside the signed 64-bit range")
        return _NUMBER_SIZE
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"message dict keys must be str, not {type(key).__name__}")
            stack.append(key)
            stack.append(item)
        return _FRAMING_SIZE
    if isinstance(value, list | tuple):
        stack.extend(value)
        return _FRAMING_SIZE
    raise TypeError(
        f"message values must be str, bytes, int, float, bool, None, list or dict, "
        f"not {type(value).__name__}"
    )


# ---------------------------------------------------------------------- the loop thread


def finish_loop(loop: asyncio.AbstractEventLoop) -> None:
    """End a loop that is not running: cancel what is left, finish async generators (the Redis
    layer's per-loop guards close their connections there), then close it (the IPC layer hands
    its watched channels back when its loop closes)."""
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    with contextlib.suppress(Exception):
        loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


class _LoopThread:
    """One event loop running forever in a daemon thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self._shut_down()

    def _shut_down(self) -> None:
        finish_loop(self.loop)

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def in_thread(self) -> bool:
        return threading.current_thread() is self.thread

    def stop(self, timeout: float = 10.0) -> None:
        if self.loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.loop.stop)
        if not self.in_thread():
            self.thread.join(timeout)


# ---------------------------------------------------------------------- the view


_views: weakref.WeakSet[AsgiChannelLayer] = weakref.WeakSet()


class AsgiChannelLayer:
    """The ASGI draft spec's synchronous channel layer over one async backend.

    ``backend`` is a :class:`~headrace.layers.base.BaseChannelLayer` or a callable returning
    one (called on first use, so building the view costs nothing). A backend given as an
    instance belongs to the view: :meth:`close` closes it. One from a callable is shared (the
    settings' wrappers get the modern manager's backend): :meth:`close` then releases only what
    the backend holds on the view's loop (Redis connections, the IPC hub link), which the
    backends release when that loop shuts down. ``owns_backend`` overrides the choice. See the
    module docs."""

    MessageTooLarge: ClassVar[type[MessageTooLarge]] = MessageTooLarge
    ChannelFull: ClassVar[type[ChannelFull]] = ChannelFull
    InvalidChannelName: ClassVar[type[InvalidChannelName]] = InvalidChannelName
    MAX_NAME_LENGTH: ClassVar[int] = MAX_NAME_LENGTH
    channel_name_regex: ClassVar[re.Pattern[str]] = CHANNEL_NAME_REGEX
    group_name_regex: ClassVar[re.Pattern[str]] = GROUP_NAME_REGEX

    def __init__(
        self,
        backend: BaseChannelLayer | Callable[[], BaseChannelLayer],
        *,
        alias: str = DEFAULT_CHANNEL_LAYER,
        max_message_size: int = MAX_MESSAGE_SIZE,
        blocking_timeout: float = BLOCKING_TIMEOUT,
        poll_timeout: float = POLL_TIMEOUT,
        owns_backend: bool | None = None,
    ) -> None:
        self.alias = alias
        self.max_message_size = max_message_size
        self.blocking_timeout = blocking_timeout
        self.poll_timeout = poll_timeout
        if isinstance(backend, BaseChannelLayer):
            self._backend: BaseChannelLayer | None = backend
            self._factory: Callable[[], BaseChannelLayer] | None = None
        else:
            self._backend, self._factory = None, backend
        self.owns_backend = self._factory is None if owns_backend is None else owns_backend
        self._lock = threading.Lock()
        self._runner: _LoopThread | None = None
        self._stash = Stash()
        self._pid = os.getpid()
        self.closed = False
        _views.add(self)

    def __repr__(self) -> str:
        backend = type(self._backend).__name__ if self._backend is not None else "unbuilt"
        return f"<AsgiChannelLayer alias={self.alias!r} backend={backend}>"

    # ------------------------------------------------------------------ plumbing

    @property
    def backend(self) -> BaseChannelLayer:
        """The async layer this view runs on (built on first use)."""
        backend = self._backend
        if backend is None:
            with self._lock:
                if self._backend is None:
                    assert self._factory is not None
                    self._backend = self._factory()
                backend = self._backend
        return backend

    def _loop_thread(self) -> _LoopThread:
        runner = self._runner
        if runner is not None:
            return runner
        with self._lock:
            if self.closed:
                raise self._closed_error()
            if self._runner is None:
                self._runner = _LoopThread(f"headrace-asgi-{self.alias}")
            return self._runner

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the view's loop and wait for it from this (sync) thread."""
        try:
            runner = self._loop_thread()
        except BaseException:
            coroutine.close()
            raise
        if runner.in_thread():
            coroutine.close()
            raise RuntimeError(
                "synchronous channel layer call on the layer's own event loop; "
                "await receive_async() or use the async backend (layer.backend) there"
            )
        try:
            future = runner.submit(coroutine)
        except RuntimeError:  # the loop closed under us: close() ran on another thread
            coroutine.close()
            raise self._closed_error() from None
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            if self.closed:  # close() cancelled what was still running
                raise self._closed_error() from None
            raise
        except BaseException:
            future.cancel()  # an interrupted caller cancels the call (backends lose nothing)
            raise

    def _closed_error(self) -> ChannelLayerError:
        return ChannelLayerError(f"the ASGI channel layer {self.alias!r} is closed")

    async def _on_loop(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Await ``coroutine`` on the view's loop from the caller's loop."""
        runner = self._loop_thread()
        if runner.in_thread():
            return await coroutine
        return await asyncio.wrap_future(runner.submit(coroutine))

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._runner = None
        self._stash = Stash()
        self._pid = os.getpid()
        if self._factory is not None:
            self._backend = None

    # ------------------------------------------------------------------ attributes

    @property
    def extensions(self) -> list[str]:
        """The extensions this view provides: ``groups``, ``flush``, ``async`` (also spelled
        ``asyncio``, as the draft's extension list names it) and, when the backend keeps
        them, ``statistics``."""
        names = ["groups", "flush", "async", "asyncio"]
        names += [name for name in _PASSED_ON if name in self.backend.extensions]
        return names

    @property
    def capacity(self) -> int:
        return self.backend.capacity

    @property
    def channel_capacity(self) -> list[tuple[re.Pattern[str], int]]:
        """Per-channel capacities as the backend compiled them: ``(regex, capacity)`` pairs,
        first match wins."""
        return self.backend.channel_capacity

    @property
    def expiry(self) -> float:
        return self.backend.expiry

    @property
    def group_expiry(self) -> float:
        return self.backend.group_expiry

    def get_capacity(self, channel: str) -> int:
        """The capacity of ``channel`` (an ASGI-1 name)."""
        return self.backend.get_capacity(require_valid_channel_name(channel))

    def check_send(self, name: str, message: Message, group: bool = False) -> None:
        """Check what ``send`` (``send_group`` when ``group``) would check, without sending:
        the name, the message's types and its size."""
        if group:
            require_valid_group_name(name)
        else:
            require_valid_channel_name(name)
        check_message(message, self.max_message_size)

    # ------------------------------------------------------------------ core API

    def send(self, channel: str, message: Message) -> None:
        """Send ``message`` to ``channel``; raises ChannelFull, MessageTooLarge, TypeError."""
        name = require_valid_channel_name(channel)
        check_message(message, self.max_message_size)
        self._call(self.backend.send(name, message))

    async def send_async(self, channel: str, message: Message) -> None:
        """:meth:`send` for asyncio callers: checked the same way, then awaited on the
        backend from the caller's own loop (no hop to the view's loop)."""
        name = require_valid_channel_name(channel)
        check_message(message, self.max_message_size)
        await self.backend.send(name, message)

    def receive(
        self, channels: Sequence[str], block: bool = False
    ) -> tuple[str, Message] | tuple[None, None]:
        """The next message on any of ``channels`` as ``(channel, message)``, or
        ``(None, None)`` when none arrived within the poll (``block=False``) or blocking
        timeout (``block=True``)."""
        names = self._receive_names(channels)
        patience = self.blocking_timeout if block else self.poll_timeout
        return self._call(self._receive(names, patience))

    async def receive_async(
        self, channels: Sequence[str]
    ) -> tuple[str, Message] | tuple[None, None]:
        """``receive(channels, block=True)`` for asyncio callers (the ``async`` extension)."""
        names = self._receive_names(channels)
        return await self._on_loop(self._receive(names, self.blocking_timeout))

    def new_channel(self, pattern: str) -> str:
        """A new channel name from ``pattern`` (ending in ``!`` or ``?``); see module docs."""
        if not isinstance(pattern, str) or not PATTERN_REGEX.match(pattern):
            raise InvalidChannelName(
                f"new_channel() pattern must be a channel name ending in '!' or '?', "
                f"not {pattern!r}"
            )
        if pattern.endswith("!"):
            name = self._call(self.backend.new_channel(pattern[:-1]))
        else:
            name = pattern + BaseChannelLayer.random_suffix(16)
        require_valid_channel_name(name)
        return name

    # ------------------------------------------------------------------ groups

    def group_add(self, group: str, channel: str, info: Message | None = None) -> None:
        """Add ``channel`` to ``group`` (renewing its membership if it is one already); in a
        group with presence, with ``info``."""
        require_valid_group_name(group)
        name = require_valid_channel_name(channel)
        if info is None:
            self._call(self.backend.group_add(group, name))
        else:
            self._call(self.backend.group_add(group, name, info))

    def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group``; nothing happens if it is not a member."""
        require_valid_group_name(group)
        self._call(self.backend.group_discard(group, require_valid_channel_name(channel)))

    def send_group(self, group: str, message: Message) -> Position | None:
        """Send ``message`` to every member of ``group``; full members miss it (never
        ChannelFull); raises MessageTooLarge and TypeError. In a group with history, returns
        the message's position."""
        require_valid_group_name(group)
        check_message(message, self.max_message_size)
        return self._call(self.backend.group_send(group, message))

    async def send_group_async(self, group: str, message: Message) -> Position | None:
        """:meth:`send_group` for asyncio callers, on the caller's own loop."""
        require_valid_group_name(group)
        check_message(message, self.max_message_size)
        return await self.backend.group_send(group, message)

    def group_history(
        self, group: str, since: Position | None = None, limit: int | None = None
    ) -> GroupHistory:
        """The kept messages of ``group`` after ``since`` (the backend's ``group_history``)."""
        require_valid_group_name(group)
        return self._call(self.backend.group_history(group, since, limit))

    def group_presence(self, group: str) -> dict[str, Message]:
        """``{channel: info}`` of the members of ``group``, by ASGI-1 channel name."""
        require_valid_group_name(group)
        members = self._call(self.backend.group_presence(group))
        return {asgi_name(channel): info for channel, info in members.items()}

    def group_presence_count(self, group: str) -> int:
        """How many members ``group`` has (the backend's cheap count)."""
        require_valid_group_name(group)
        return self._call(self.backend.group_presence_count(group))

    # ------------------------------------------------------------------ flush, statistics

    def flush(self) -> None:
        """Drop every message and group membership in the layer (and this view's stash)."""
        self._call(self._flush())

    async def _flush(self) -> None:
        self._stash.clear()
        await self.backend.flush()

    def global_statistics(self) -> dict[str, Any]:
        """The backend's layer-wide statistics (the ``statistics`` extension)."""
        return self._call(self._statistics("global_statistics"))

    def channel_statistics(self, channel: str) -> dict[str, Any]:
        """The backend's statistics of ``channel`` (the ``statistics`` extension)."""
        return self._call(
            self._statistics("channel_statistics", require_valid_channel_name(channel))
        )

    async def _statistics(self, method: str, *arguments: str) -> dict[str, Any]:
        backend = self.backend
        if "statistics" not in backend.extensions:
            raise ChannelLayerError(
                f"{type(backend).__name__} does not provide the statistics extension"
            )
        result: dict[str, Any] = await getattr(backend, method)(*arguments)
        return result

    # ------------------------------------------------------------------ serving

    def as_asgi_application(self, **options: Any) -> Any:
        """The interface server's ASGI 3 application over this layer (what
        ``headrace project.asgi:channel_layer`` serves); ``options`` go to
        :class:`~headrace.interface.InterfaceApplication` (the server passes its
        ``--http-timeout`` as ``http_timeout``)."""
        interface = importlib.import_module("headrace.interface")  # imported when served
        return interface.InterfaceApplication(self, **options)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Send stashed messages back, close the backend if the view owns it, stop the loop
        thread (the backends release their per-loop resources as it shuts down). Idempotent;
        later calls raise :class:`~headrace.exceptions.ChannelLayerError`."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            runner, self._runner = self._runner, None
        if runner is None:
            return
        if runner.in_thread():  # called from a coroutine on the view's loop: finish later
            task = runner.loop.create_task(self._shut_down())
            task.add_done_callback(lambda _: runner.loop.stop())
            return
        future = runner.submit(self._shut_down())
        try:
            future.result(timeout=30)
        except Exception:
            logger.exception("closing the ASGI channel layer %r failed", self.alias)
        finally:
            runner.stop()

    async def _shut_down(self) -> None:
        backend = self._backend
        if backend is None:
            return
        stash, self._stash = self._stash, Stash()
        await stash.give_back(backend)
        if self.owns_backend:
            await backend.close()

    # ------------------------------------------------------------------ receiving

    @staticmethod
    def _receive_names(channels: Sequence[str]) -> dict[str, str]:
        if isinstance(channels, str) or not isinstance(channels, Sequence) or not channels:
            raise TypeError("receive() takes a non-empty list of channel names")
        return {channel: require_valid_channel_name(channel, receive=True) for channel in channels}

    async def _receive(
        self, names: Mapping[str, str], patience: float
    ) -> tuple[str, Message] | tuple[None, None]:
        """Receive from any of ``names`` (ASGI name -> backend name) for up to ``patience``
        seconds."""
        return await receive_first(self.backend, names, patience, self._stash)


class Stash(dict[str, deque[Message]]):
    """Messages received for an ASGI channel but not returned yet, first in line for the next
    receive of that channel (see "Receiving from several channels" in the module docs)."""

    def take(self, names: Iterable[str]) -> tuple[str, Message] | None:
        for channel in names:
            queue = self.get(channel)
            if queue:
                message = queue.popleft()
                if not queue:
                    del self[channel]
                return channel, message
        return None

    def keep(self, channel: str, message: Message, first: bool = False) -> None:
        queue = self.setdefault(channel, deque())
        if first:
            queue.appendleft(message)
        else:
            queue.append(message)

    def keep_result(self, channel: str, task: asyncio.Task[Message]) -> None:
        """Keep the message of a receive that completed but was not returned."""
        if _has_result(task):
            self.keep(channel, task.result())

    async def give_back(self, backend: BaseChannelLayer) -> None:
        """Send every stashed message back to its channel (closing a view or a worker)."""
        stash = dict(self)
        self.clear()
        for channel, messages in stash.items():
            for message in messages:
                try:
                    await backend.send(backend_name(channel), message)
                except ChannelFull:
                    logger.warning("dropped a message stashed for %s: channel full", channel)


async def receive_first(
    backend: BaseChannelLayer, names: Mapping[str, str], patience: float | None, stash: Stash
) -> tuple[str, Message] | tuple[None, None]:
    """The next message on any of ``names`` (ASGI name -> backend name) as ``(ASGI name,
    message)``, or ``(None, None)`` after ``patience`` seconds (``None``: wait on). A stashed
    message comes first; a backend with ``receive_any`` (one blocking pop over every channel:
    Redis, IPC) is asked next; otherwise one backend receive per channel races (module docs)."""
    stashed = stash.take(names)
    if stashed is not None:
        return stashed
    receive_any = getattr(backend, "receive_any", None)
    if receive_any is not None:
        try:
            async with asyncio.timeout(patience):
                taken = await receive_any(list(names.values()))
        except TimeoutError:
            return None, None
        if taken is not None:
            asgi_names = {backend: asgi for asgi, backend in names.items()}
            return asgi_names[taken[0]], taken[1]
    return await _race_receives(backend, names, patience, stash)


async def _race_receives(
    backend: BaseChannelLayer, names: Mapping[str, str], patience: float | None, stash: Stash
) -> tuple[str, Message] | tuple[None, None]:
    order = list(names)
    random.shuffle(order)
    tasks = {asyncio.ensure_future(backend.receive(names[name])): name for name in order}
    winner: asyncio.Task[Message] | None = None
    try:
        done, _ = await asyncio.wait(tasks, timeout=patience, return_when=asyncio.FIRST_COMPLETED)
        winner = next((task for task in tasks if task in done and _has_result(task)), None)
    finally:
        await _settle(tasks, winner, stash)
    if winner is not None:
        return tasks[winner], winner.result()
    return _first_error_or_nothing(tasks)


async def _settle(
    tasks: Mapping[asyncio.Task[Message], str], winner: asyncio.Task[Message] | None, stash: Stash
) -> None:
    """Cancel the receives that lost and wait until they are gone; a message one of them took
    anyway goes to the stash before this receive returns (per-channel order)."""
    for task in tasks:
        task.cancel()
    try:
        await asyncio.wait(tasks)
    except asyncio.CancelledError:
        # The caller left: the message it would have got, and any a straggler takes, wait.
        if winner is not None:
            stash.keep(tasks[winner], winner.result(), first=True)
        for task, channel in tasks.items():
            if task is not winner:
                task.add_done_callback(functools.partial(stash.keep_result, channel))
        raise
    for task, channel in tasks.items():
        if task is not winner:
            stash.keep_result(channel, task)


def _first_error_or_nothing(tasks: Mapping[asyncio.Task[Message], str]) -> tuple[None, None]:
    """Raise the first backend error among ``tasks`` (every error is retrieved, so none is
    logged as unretrieved), else return ``(None, None)``."""
    errors = [
        error
        for task in tasks
        if task.done() and not task.cancelled() and (error := task.exception()) is not None
    ]
    if errors:
        raise errors[0]
    return None, None


def _has_result(task: asyncio.Future[Any]) -> bool:
    return task.done() and not task.cancelled() and task.exception() is None


def _after_fork_in_child() -> None:
    for view in list(_views):
        view._after_fork_in_child()


def _close_all_at_exit() -> None:
    for view in list(_views):
        if view._pid == os.getpid():
            with contextlib.suppress(Exception):
                view.close()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_all_at_exit)


# ---------------------------------------------------------------------- settings


def resolve_routing(routing: Any, alias: str = DEFAULT_CHANNEL_LAYER) -> Any:
    """The ``ROUTING`` setting made concrete: a dotted path is imported; a list, tuple or dict
    is returned as it is; ``None`` becomes an empty list."""
    if routing is None:
        return []
    if isinstance(routing, str):
        try:
            routing = import_string(routing)
        except ImportError as exc:
            raise InvalidChannelLayerError(
                f"Cannot import ROUTING {routing!r} of channel layer {alias!r}: {exc}"
            ) from exc
    if not isinstance(routing, list | tuple | dict):
        raise InvalidChannelLayerError(
            f"ROUTING of channel layer {alias!r} must be a list of routes (or a dotted path to "
            f"one), not {type(routing).__name__}"
        )
    return routing


class ChannelLayerWrapper:
    """One configured Channels-1 layer: the view, its routing and its alias."""

    def __init__(self, channel_layer: AsgiChannelLayer, alias: str, routing: Any) -> None:
        self.channel_layer = channel_layer
        self.alias = alias
        self.routing = routing

    def __repr__(self) -> str:
        return f"<ChannelLayerWrapper alias={self.alias!r} {self.channel_layer!r}>"


class ChannelLayerManager:
    """Builds a :class:`ChannelLayerWrapper` per ``CHANNEL_LAYERS`` alias on first use."""

    def __init__(self) -> None:
        self.wrappers: dict[str, ChannelLayerWrapper] = {}
        self._lock = threading.Lock()
        self._connect_setting_changed()

    def _connect_setting_changed(self) -> None:
        try:
            from django.core.signals import setting_changed
        except ImportError:
            return
        setting_changed.connect(self._on_setting_changed, weak=False)

    def _on_setting_changed(self, setting: str, **kwargs: Any) -> None:
        if setting == "CHANNEL_LAYERS":
            self.reset()

    def reset(self) -> None:
        """Close and forget every wrapper (the next lookup reads the settings again)."""
        with self._lock:
            wrappers, self.wrappers = list(self.wrappers.values()), {}
        for wrapper in wrappers:
            wrapper.channel_layer.close()

    @property
    def configs(self) -> Mapping[str, Mapping[str, Any]]:
        from headrace.layers import channel_layers as backends

        return backends.configs

    def __contains__(self, alias: object) -> bool:
        return alias in self.configs

    def __getitem__(self, alias: str) -> ChannelLayerWrapper:
        wrapper = self.wrappers.get(alias)
        if wrapper is not None:
            return wrapper
        with self._lock:
            if alias not in self.wrappers:
                self.wrappers[alias] = self._make_wrapper(alias)
            return self.wrappers[alias]

    def _make_wrapper(self, alias: str) -> ChannelLayerWrapper:
        from headrace.layers import channel_layers as backends

        configs = self.configs
        if alias not in configs:
            raise InvalidChannelLayerError(f"No channel layer alias {alias!r} in CHANNEL_LAYERS")
        routing = resolve_routing(configs[alias].get("ROUTING"), alias)
        view = AsgiChannelLayer(lambda: backends[alias], alias=alias)
        return ChannelLayerWrapper(view, alias, routing)

    def set(self, alias: str, wrapper: ChannelLayerWrapper | None) -> ChannelLayerWrapper | None:
        """Point ``alias`` at ``wrapper`` (``None`` forgets it); returns the previous one. For
        tests that swap a layer in."""
        with self._lock:
            old = self.wrappers.pop(alias, None)
            if wrapper is not None:
                self.wrappers[alias] = wrapper
        return old


channel_layers = ChannelLayerManager()
"""The process-wide Channels-1 layers: ``channel_layers[alias]`` is a
:class:`ChannelLayerWrapper`."""


def get_channel_layer(alias: str = DEFAULT_CHANNEL_LAYER) -> AsgiChannelLayer:
    """The Channels-1 view of layer ``alias``; raises
    :class:`~headrace.exceptions.InvalidChannelLayerError` when it is not configured.

    Like Channels 1.x's, it sets Django up first (``django.setup(set_prefix=False)``) when a
    settings module is named and the apps are not loaded yet, so a 1.x ``asgi.py``
    (``channel_layer = get_channel_layer()``) whose routing imports models just works."""
    _set_up_django()
    return channel_layers[alias].channel_layer


def _set_up_django() -> None:
    try:
        from django.apps import apps
    except ImportError:
        return
    if apps.ready or apps.loading:  # loaded, or being loaded right now (an import inside)
        return
    from django.conf import settings

    if settings.configured or os.environ.get("DJANGO_SETTINGS_MODULE"):
        import django

        django.setup(set_prefix=False)
