"""The conformance suite of ``receive_any(channels)``: one message from any of several channels
in one call, the receive the Channels-1 worker and the ASGI-1 view use when a backend has it
(:func:`headrace.asgi.receive_first`).

Every backend with ``receive_any`` runs it; subclass :class:`ReceiveAnyConformance` in a test
module under a name pytest collects and supply the factory::

    from headrace.testing.receive_any import ReceiveAnyConformance

    class TestMyLayerReceiveAny(ReceiveAnyConformance):
        async def make_layer(self, **config: Any) -> BaseChannelLayer:
            return MyLayer(prefix=self.prefix, **config)

``make_layer(**config)`` returns a new instance over the test's store; two instances made in
one test share their channels (as two processes would). ``config`` may hold ``expiry``.

Hooks a backend may override:

* ``takes_process_local`` — True when ``receive_any`` also serves process-local (``!``)
  channels; False when it answers ``None`` for them (the caller then receives them one by one);
* :meth:`until_waiting` — return once a ``receive_any`` over ``channels`` is waiting in the
  store (default: a 0.2 s pause, for stores that cannot be asked);
* :meth:`dispose` — release the instances a test made (default: ``flush()`` and ``close()``);
* ``receive_timeout`` — bound on every awaited receive.

What is checked: each call takes exactly one message, from any of the channels, in each
channel's order; what a call does not take stays for another instance; a waiting call is
answered by whichever channel gets a message first; a busy channel does not starve a quiet
one; expired messages are skipped; a call cancelled while waiting takes nothing, and calls
cancelled at any moment while messages flow lose none and duplicate none; process-local
channels (alone or mixed with normal ones) per ``takes_process_local``; bad names raise
``TypeError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any, ClassVar, Protocol, cast

import pytest

from headrace.layers.base import BaseChannelLayer, LayerMessage

__all__ = ["ReceiveAnyConformance", "ReceivesAny"]

Answer = tuple[str, LayerMessage] | None


class ReceivesAny(Protocol):
    """A channel layer with ``receive_any``."""

    async def receive_any(self, channels: Sequence[str]) -> Answer: ...


def receive_any(layer: BaseChannelLayer, channels: Sequence[str]) -> Coroutine[Any, Any, Answer]:
    """``layer.receive_any(channels)`` (the method is not part of the base contract)."""
    return cast(ReceivesAny, layer).receive_any(channels)


class ReceiveAnyConformance:
    """Base class of the ``receive_any`` suite; subclasses implement make_layer()."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.asyncio]

    takes_process_local: ClassVar[bool] = True
    receive_timeout: ClassVar[float] = 10.0
    stress_messages: ClassVar[int] = 200

    # ------------------------------------------------------------------ hooks

    async def make_layer(self, **config: Any) -> BaseChannelLayer:
        """Return a new instance over this test's store."""
        raise NotImplementedError("conformance subclasses must implement make_layer()")

    async def until_waiting(self, layer: BaseChannelLayer, channels: Sequence[str]) -> None:
        """Return once a ``receive_any(channels)`` of ``layer`` waits in the store."""
        await asyncio.sleep(0.2)

    async def dispose(self, layers: Sequence[BaseChannelLayer]) -> None:
        for layer in layers:
            with contextlib.suppress(Exception):
                await layer.flush()
            await layer.close()

    # ------------------------------------------------------------------ helpers

    @asynccontextmanager
    async def pair(self, **config: Any) -> AsyncIterator[tuple[BaseChannelLayer, ...]]:
        """Two instances over one store."""
        layers = [await self.make_layer(**config) for _ in range(2)]
        try:
            yield tuple(layers)
        finally:
            await self.dispose(layers)

    async def take(self, layer: BaseChannelLayer, channels: Sequence[str]) -> tuple[str, Any]:
        """One ``receive_any`` that must answer with a message."""
        answer = await asyncio.wait_for(receive_any(layer, channels), self.receive_timeout)
        assert answer is not None, f"receive_any({list(channels)}) answered None"
        channel, message = answer
        return channel, message

    async def waiting_call(
        self, layer: BaseChannelLayer, channels: Sequence[str]
    ) -> asyncio.Future[Answer]:
        """A ``receive_any`` started and waiting in the store."""
        call = asyncio.ensure_future(receive_any(layer, channels))
        try:
            await asyncio.wait_for(self.until_waiting(layer, channels), self.receive_timeout)
        except BaseException:
            await self.cancel(call)
            raise
        assert not call.done(), f"receive_any({list(channels)}) answered {call.result()!r}"
        return call

    @staticmethod
    async def cancel(call: asyncio.Future[Answer]) -> Answer:
        """Cancel ``call``; what it answered if it had finished anyway."""
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            return await call
        return None

    @staticmethod
    async def send_numbered(layer: BaseChannelLayer, *channels: str) -> None:
        """Send ``{"type": "job", "n": 1, 2, ...}`` to ``channels`` in turn."""
        for number, channel in enumerate(channels, 1):
            await layer.send(channel, {"type": "job", "n": number})

    # ------------------------------------------------------------------ normal channels

    async def test_each_call_takes_one_message_of_any_channel(self) -> None:
        async with self.pair() as (receiver, sender):
            await self.send_numbered(sender, "any.a", "any.b", "any.a")
            taken = [await self.take(receiver, ["any.a", "any.b", "any.c"]) for _ in range(3)]
            assert sorted((channel, message["n"]) for channel, message in taken) == [
                ("any.a", 1),
                ("any.a", 3),
                ("any.b", 2),
            ]
            assert [m["n"] for c, m in taken if c == "any.a"] == [1, 3]  # per-channel order

    async def test_what_one_call_does_not_take_stays_for_another_instance(self) -> None:
        async with self.pair() as (first, second):
            await self.send_numbered(first, "stay.x", "stay.x")
            assert await self.take(first, ["stay.x", "stay.y"]) == (
                "stay.x",
                {"type": "job", "n": 1},
            )
            second_message = await asyncio.wait_for(second.receive("stay.x"), self.receive_timeout)
            assert second_message == {"type": "job", "n": 2}

    async def test_a_waiting_call_is_answered_by_the_channel_that_gets_a_message(self) -> None:
        async with self.pair() as (receiver, sender):
            call = await self.waiting_call(receiver, ["wake.a", "wake.b", "wake.c"])
            await sender.send("wake.b", {"type": "job", "n": 1})
            answer = await asyncio.wait_for(call, self.receive_timeout)
            assert answer == ("wake.b", {"type": "job", "n": 1})
            await sender.send("wake.a", {"type": "job", "n": 2})  # nobody waits on it now
            second = await asyncio.wait_for(sender.receive("wake.a"), self.receive_timeout)
            assert second == {"type": "job", "n": 2}

    async def test_a_busy_channel_does_not_starve_a_quiet_one(self) -> None:
        async with self.pair() as (receiver, sender):
            await self.send_numbered(sender, *["fair.busy"] * 30)
            await sender.send("fair.quiet", {"type": "job", "n": 0})
            taken = [await self.take(receiver, ["fair.busy", "fair.quiet"]) for _ in range(30)]
            # The quiet channel is looked at first by about half the calls; all 30 passing
            # it over would be a 1 in 2**30 chance of a fair order.
            assert ("fair.quiet", {"type": "job", "n": 0}) in taken

    async def test_an_expired_message_is_skipped(self) -> None:
        async with self.pair() as (receiver, _):
            short = await self.make_layer(expiry=0.05)
            try:
                await short.send("old.q", {"type": "stale"})
            finally:
                await short.close()
            await asyncio.sleep(0.2)  # past its expiry
            await receiver.send("old.q", {"type": "fresh"})
            assert await self.take(receiver, ["old.q"]) == ("old.q", {"type": "fresh"})

    async def test_a_cancelled_call_takes_nothing(self) -> None:
        async with self.pair() as (waiting, other):
            await waiting.send("gone.warm", {"type": "warm"})
            assert await self.take(waiting, ["gone.warm"]) == ("gone.warm", {"type": "warm"})
            call = await self.waiting_call(waiting, ["gone.jobs", "gone.more"])
            assert await self.cancel(call) is None
            await other.send("gone.jobs", {"type": "job"})
            message = await asyncio.wait_for(other.receive("gone.jobs"), self.receive_timeout)
            assert message == {"type": "job"}

    async def test_calls_cancelled_at_any_moment_lose_and_duplicate_nothing(self) -> None:
        async with self.pair() as (receiver, sender):
            channels = ["storm.a", "storm.b", "storm.c"]
            total = self.stress_messages
            sending = asyncio.ensure_future(self._send_spread(sender, channels, total))
            taken = await self._receive_while_cancelling(receiver, channels, sending)
            await sending
            while len(taken) < total:
                taken.append(await self.take(receiver, channels))
            # Every message once. (Not necessarily in order: a message given back by a call
            # cancelled as it arrived may come after one a later call took meanwhile.)
            assert sorted(message["n"] for _, message in taken) == list(range(total))
            assert all(name == channels[message["n"] % 3] for name, message in taken)

    @staticmethod
    async def _send_spread(layer: BaseChannelLayer, channels: Sequence[str], total: int) -> None:
        for number in range(total):
            await layer.send(channels[number % len(channels)], {"type": "job", "n": number})
            await asyncio.sleep(0)

    async def _receive_while_cancelling(
        self, layer: BaseChannelLayer, channels: Sequence[str], sending: asyncio.Future[None]
    ) -> list[tuple[str, Any]]:
        """Start calls and cancel each after 0 to 5 loop steps until ``sending`` is done;
        the messages of the calls that finished first."""
        steps = random.Random(12)
        taken = []
        while not sending.done():
            call = asyncio.ensure_future(receive_any(layer, channels))
            for _ in range(steps.randrange(6)):
                await asyncio.sleep(0)
            answer = await self.cancel(call)
            if answer is not None:
                taken.append(answer)
        return taken

    # ------------------------------------------------------------------ local channels, names

    async def test_process_local_channels(self) -> None:
        async with self.pair() as (layer, sender):
            local, other_local = await layer.new_channel(), await layer.new_channel()
            if not self.takes_process_local:
                assert await receive_any(layer, ["plain.q", local]) is None
                return
            await sender.send(local, {"type": "reply", "n": 1})
            assert await self.take(layer, ["mixed.q", local]) == (local, {"type": "reply", "n": 1})
            await sender.send("mixed.q", {"type": "job", "n": 2})
            assert await self.take(layer, [local, "mixed.q"]) == (
                "mixed.q",
                {"type": "job", "n": 2},
            )
            call = await self.waiting_call(layer, [local, other_local])
            await sender.send(other_local, {"type": "reply", "n": 3})
            answer = await asyncio.wait_for(call, self.receive_timeout)
            assert answer == (other_local, {"type": "reply", "n": 3})

    async def test_a_cancelled_call_over_local_and_normal_channels_takes_nothing(self) -> None:
        async with self.pair() as (layer, sender):
            local = await layer.new_channel()
            if not self.takes_process_local:
                assert await receive_any(layer, [local]) is None
                return
            call = await self.waiting_call(layer, [local, "both.q"])
            assert await self.cancel(call) is None
            await sender.send(local, {"type": "reply"})
            await sender.send("both.q", {"type": "job"})
            assert await asyncio.wait_for(layer.receive(local), self.receive_timeout) == {
                "type": "reply"
            }
            assert await asyncio.wait_for(sender.receive("both.q"), self.receive_timeout) == {
                "type": "job"
            }

    async def test_bad_names_are_refused(self) -> None:
        async with self.pair() as (layer, _):
            with pytest.raises(TypeError):
                await receive_any(layer, ["bad name"])
            with pytest.raises(TypeError):
                await receive_any(layer, ["good.q", "x" * 200])
