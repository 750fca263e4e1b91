"""IPCChannelLayer.receive_any: one parked request over several channels (hub protocol 5).

The public suite (headrace.testing.receive_any) on a private hub, then what is particular to
the IPC layer: the hub's bookkeeping after a call, reconnecting, and an older hub."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from headrace.asgi import AsgiChannelLayer
from headrace.layers.base import BaseChannelLayer
from headrace.layers.ipc import HubHost, IPCChannelLayer, hub
from headrace.layers.ipc.hub import HubState
from headrace.testing.receive_any import ReceiveAnyConformance
from tests.ipc.support import WAIT, PrivateHubLayers, hosted, until


def hub_state(path: str) -> HubState:
    state = HubHost.for_path(path).state
    assert state is not None, "the test's hub runs in this process"
    return state


def parked_everywhere(layer: BaseChannelLayer, path: str, channels: Sequence[str]) -> bool:
    """Whether a receive of ``layer`` waits on every one of ``channels`` (at the hub for a
    normal channel, in the link's watch for a process-local one)."""
    state = HubHost.for_path(path).state
    if state is None:
        return False  # the layer has not started the hub yet
    assert isinstance(layer, IPCChannelLayer)
    link = layer._link()
    for channel in channels:
        if "!" in channel:
            watch = link.watched.get(channel)
            if watch is None or not watch.waiters:
                return False
        elif not state.waiters.get(channel):
            return False
    return True


class TestIPCReceiveAny(PrivateHubLayers, ReceiveAnyConformance):
    """The public receive_any suite on the IPC layer."""

    async def until_waiting(self, layer: BaseChannelLayer, channels: Sequence[str]) -> None:
        await until(lambda: parked_everywhere(layer, self.hub_path, channels))


async def test_an_answered_call_leaves_no_receive_parked(hub_path: str) -> None:
    layer, state = await hosted(hub_path)
    receiving = asyncio.ensure_future(layer.receive_any(["left.a", "left.b", "left.c"]))
    await asyncio.wait_for(until(lambda: parked_everywhere(layer, hub_path, ["left.a"])), WAIT)
    await layer.send("left.c", {"type": "job"})
    assert await asyncio.wait_for(receiving, WAIT) == ("left.c", {"type": "job"})
    assert not state.waiters
    assert all(not connection.any_waits for connection in connections(state))
    await layer.close()


async def test_a_cancelled_call_leaves_no_receive_parked(hub_path: str) -> None:
    layer, state = await hosted(hub_path)
    receiving = asyncio.ensure_future(layer.receive_any(["gone.a", "gone.b"]))
    await asyncio.wait_for(until(lambda: parked_everywhere(layer, hub_path, ["gone.b"])), WAIT)
    receiving.cancel()
    await asyncio.gather(receiving, return_exceptions=True)
    await asyncio.wait_for(until(lambda: not state.waiters), WAIT)
    assert all(not connection.any_waits for connection in connections(state))
    await layer.close()


def connections(state: HubState) -> set[hub.HubConnection]:
    """The connections that have parked a receive (found through the parked counts)."""
    seen = {connection for waiting in state.waiters.values() for connection, _ in waiting}
    return seen | {owner for owner, _ in state.watchers.values()}


async def test_a_waiting_call_is_parked_again_on_a_new_hub(hub_path: str) -> None:
    """The hub dies while a call waits: the link reconnects (hosting the next hub) and
    re-parks the call, which a message sent to the new hub answers."""
    layer, first_hub = await hosted(hub_path)
    receiving = asyncio.ensure_future(layer.receive_any(["again.a", "again.b"]))
    await asyncio.wait_for(until(lambda: parked_everywhere(layer, hub_path, ["again.a"])), WAIT)
    HubHost.for_path(hub_path).stop()
    await asyncio.wait_for(until(lambda: hub_state(hub_path) is not first_hub), WAIT)
    await asyncio.wait_for(until(lambda: parked_everywhere(layer, hub_path, ["again.b"])), WAIT)
    sender = IPCChannelLayer(path=hub_path)
    await sender.send("again.b", {"type": "job"})
    assert await asyncio.wait_for(receiving, WAIT) == ("again.b", {"type": "job"})
    await sender.close()
    await layer.close()


async def test_an_older_hub_leaves_the_channels_to_receive(
    hub_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hub from before protocol 5 (its HELLO answer says so): ``receive_any`` answers None
    and the ASGI-1 view receives the channels one by one."""
    monkeypatch.setattr(hub, "PROTOCOL_VERSION", 4)
    layer, _ = await hosted(hub_path)
    assert await layer.receive_any(["old.a", "old.b"]) is None
    local = await layer.new_channel()
    assert await layer.receive_any([local, "old.a"]) is None
    await layer.send("old.b", {"type": "job"})
    view = AsgiChannelLayer(layer, owns_backend=False)
    try:
        answer = await view.receive_async(["old.a", "old.b"])
    finally:
        view.close()
    assert answer == ("old.b", {"type": "job"})
    await layer.close()
