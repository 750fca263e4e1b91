"""Channels-1 ``Channel`` and ``Group``, with the 1.x rule that a consumer's sends wait for it.

Theory of operation
-------------------
``Channel(name).send(content)`` and ``Group(name).send(content)`` go to the Channels-1 view of
a layer (:func:`headrace.asgi.get_channel_layer`, looked up at send time, so objects made at
import time follow later settings). ``content`` must be a dict (``TypeError`` otherwise); names
and the size limit are checked when ``send`` is called, even when the send is held.

*Held sends (consumer atomicity).* Channels 1.0 made a consumer an atomic block: what it sends
is sent when it returns. The worker runs each consumer inside :func:`held_sends`; while that
context is open in the current thread (a ``contextvars`` context, so worker threads and asyncio
tasks each have their own), ``send(content)`` is recorded instead of sent, and on exit every
recorded send goes out in the order it was made. ``send(content, immediately=True)`` bypasses
the hold. As in Channels 1.x, the held sends go out **also when the consumer raised** (the 1.0
release notes: "even if an exception is raised"); a worker that must not send them (a message
it will retry) calls :meth:`HeldSends.discard` before the context ends. Outside
:func:`held_sends` (tests, management commands, Django views), sends are immediate, as in 1.x.
The worker itself uses :func:`recorded_sends` (record only) and performs the recorded sends
from its event loop once the consumer thread is done, straight on the async backend: one
thread hand-off per message fewer in each direction than sending from the consumer thread.

A held send that fails on exit (a full channel) does not stop the others: each is tried; then,
if the consumer itself returned normally, the first failure is raised, else the failures are
logged and the consumer's own exception propagates. ``Group.add`` / ``Group.discard`` are never
held.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from headrace.constants import DEFAULT_CHANNEL_LAYER

if TYPE_CHECKING:
    from headrace.asgi import AsgiChannelLayer

__all__ = ["Channel", "Group", "HeldSends", "held_sends", "recorded_sends"]

logger = logging.getLogger("headrace.channel")


@dataclass(frozen=True, slots=True)
class _HeldSend:
    layer: AsgiChannelLayer
    is_group: bool
    name: str
    content: dict[str, Any]

    def perform(self) -> None:
        if self.is_group:
            self.layer.send_group(self.name, self.content)
        else:
            self.layer.send(self.name, self.content)

    async def perform_async(self) -> None:
        if self.is_group:
            await self.layer.send_group_async(self.name, self.content)
        else:
            await self.layer.send_async(self.name, self.content)


class HeldSends:
    """The sends recorded while one :func:`held_sends` context is open."""

    def __init__(self) -> None:
        self.sends: list[_HeldSend] = []

    def __len__(self) -> int:
        return len(self.sends)

    def discard(self) -> None:
        """Forget every send recorded so far; nothing is sent for them."""
        self.sends.clear()

    def send_all(self) -> list[Exception]:
        """Perform every recorded send in order; return the failures (each send is tried)."""
        sends, self.sends = self.sends, []
        failures: list[Exception] = []
        for held in sends:
            try:
                held.perform()
            except Exception as exc:
                failures.append(exc)
        return failures

    async def send_all_async(self) -> list[Exception]:
        """:meth:`send_all` from the caller's event loop, straight to the async backends
        (the worker sends what its consumer thread recorded without another thread hop)."""
        sends, self.sends = self.sends, []
        failures: list[Exception] = []
        for held in sends:
            try:
                await held.perform_async()
            except Exception as exc:
                failures.append(exc)
        return failures


_current: contextvars.ContextVar[HeldSends | None] = contextvars.ContextVar(
    "headrace_held_sends", default=None
)


@contextmanager
def recorded_sends() -> Iterator[HeldSends]:
    """Record the ``Channel.send`` / ``Group.send`` calls made inside (except
    ``immediately=True`` ones) and send nothing: the caller performs them later, with
    :meth:`HeldSends.send_all` or, from an event loop, :meth:`HeldSends.send_all_async`."""
    held = HeldSends()
    token = _current.set(held)
    try:
        yield held
    finally:
        _current.reset(token)


@contextmanager
def held_sends() -> Iterator[HeldSends]:
    """Hold ``Channel.send`` / ``Group.send`` calls made inside until the block ends, then send
    them in order (also when the block raised; see the module docs)."""
    with recorded_sends() as held:
        try:
            yield held
        except BaseException:
            log_failed_sends(held.send_all(), consumer_raised=True)
            raise
    raise_first_failed_send(held.send_all())


def log_failed_sends(failures: list[Exception], consumer_raised: bool = False) -> None:
    after = " after the consumer raised" if consumer_raised else ""
    for failure in failures:
        logger.error("a held send failed%s: %r", after, failure)


def raise_first_failed_send(failures: list[Exception]) -> None:
    """Log every failure but the first, then raise the first (a consumer that returned
    normally reports its first failed send as its own error)."""
    if failures:
        log_failed_sends(failures[1:])
        raise failures[0]


def _check_content(content: object) -> dict[str, Any]:
    if not isinstance(content, dict):
        raise TypeError(f"You can only send dicts as content on channels, not {type(content)}")
    return content


def _name_of(channel: object) -> str:
    """A channel name from a :class:`Channel` or a str."""
    if isinstance(channel, Channel):
        return channel.name
    if isinstance(channel, str):
        return channel
    raise TypeError(f"expected a Channel or a channel name, not {type(channel).__name__}")


class _Named:
    """What Channel and Group share: a name and a layer (given, or looked up by alias)."""

    __slots__ = ("_channel_layer", "alias", "name")

    def __init__(
        self,
        name: str,
        alias: str = DEFAULT_CHANNEL_LAYER,
        channel_layer: AsgiChannelLayer | None = None,
    ) -> None:
        if not isinstance(name, str):
            raise TypeError(f"{type(self).__name__} name must be a str, not {type(name).__name__}")
        self.name = name
        self.alias = alias
        self._channel_layer = channel_layer

    @property
    def channel_layer(self) -> AsgiChannelLayer:
        """The Channels-1 layer this object sends through."""
        if self._channel_layer is not None:
            return self._channel_layer
        from headrace.asgi import get_channel_layer

        return get_channel_layer(self.alias)

    def _send(self, is_group: bool, content: object, immediately: bool) -> None:
        message = _check_content(content)
        layer = self.channel_layer
        held = None if immediately else _current.get()
        if held is None:
            if is_group:
                layer.send_group(self.name, message)
            else:
                layer.send(self.name, message)
            return
        layer.check_send(self.name, message, group=is_group)
        held.sends.append(_HeldSend(layer, is_group, self.name, message))

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class Channel(_Named):
    """A named channel of a Channels-1 layer."""

    __slots__ = ()

    def send(self, content: dict[str, Any], immediately: bool = False) -> None:
        """Send ``content`` (a dict) to this channel; held until the consumer returns unless
        ``immediately`` (see the module docs)."""
        self._send(False, content, immediately)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Channel):
            return self.name == other.name
        if isinstance(other, str):
            return self.name == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.name)


class Group(_Named):
    """A named group of channels of a Channels-1 layer."""

    __slots__ = ()

    def add(self, channel: Channel | str) -> None:
        """Add ``channel`` (a Channel or a name) to the group; never held."""
        self.channel_layer.group_add(self.name, _name_of(channel))

    def discard(self, channel: Channel | str) -> None:
        """Remove ``channel`` from the group if it is a member; never held."""
        self.channel_layer.group_discard(self.name, _name_of(channel))

    def send(self, content: dict[str, Any], immediately: bool = False) -> None:
        """Send ``content`` (a dict) to every member; held until the consumer returns unless
        ``immediately``."""
        self._send(True, content, immediately)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Group):
            return self.name == other.name
        return NotImplemented

    def __hash__(self) -> int:
        return hash(("group", self.name))
