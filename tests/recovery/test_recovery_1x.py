"""Recovery after reconnect and presence for Channels-1 consumers (``group_recovery``): the
interface server and a worker over IPC (tests/recovery/site1), messages published by this
process through the same layer, clients speaking ``websockets``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from headrace.asgi import AsgiChannelLayer
from headrace.layers.ipc import IPCChannelLayer
from tests.conftest import free_port
from tests.django.processes import ServerProcess
from tests.recovery.features import FEATURES
from tests.recovery.test_recovery_server import DEADLINE, STORM_CLIENTS, Client

SETTINGS = {"DJANGO_SETTINGS_MODULE": "tests.recovery.site1.settings"}


class Site:
    def __init__(self) -> None:
        prefix = f"rec1x-{uuid.uuid4().hex[:8]}"
        self.env = {**SETTINGS, "RECOVERY_IPC_PREFIX": prefix}
        # This process holds the IPC hub (started by the first layer that connects).
        self.layer = AsgiChannelLayer(IPCChannelLayer(prefix=prefix, **FEATURES))
        self.layer.new_channel("warmup!")
        self.worker = ServerProcess(
            ["-m", "django", "runworker", "--threads", "4"], 0, env=self.env
        )
        self.wait_for(self.worker, "Listening on")
        target = "tests.recovery.site1.asgi:channel_layer"
        # No HTTP route: the server is ready once it says it listens.
        port = free_port()
        argv = ["-m", "headrace", "-b", "127.0.0.1", "-p", str(port), target]
        self.server = ServerProcess(argv, port, env=self.env)
        self.wait_for(self.server, "Listening on")

    @staticmethod
    def wait_for(process: ServerProcess, text: str) -> None:
        deadline = time.monotonic() + DEADLINE
        while text not in process.log():
            assert process.process.poll() is None, process.log()
            assert time.monotonic() < deadline, process.log()
            time.sleep(0.05)

    async def publish(self, room: str, count: int, batch: str) -> None:
        def send() -> None:
            for n in range(1, count + 1):
                text = json.dumps({"n": n, "batch": batch})
                self.layer.send_group(f"room.{room}", {"text": text})

        await asyncio.to_thread(send)

    def close(self) -> None:
        self.server.stop()
        self.worker.stop()
        self.layer.close()


@pytest.fixture
def site() -> Iterator[Site]:
    with contextlib.closing(Site()) as running:
        yield running


async def test_1x_reconnect_gets_exactly_what_it_missed(site: Site) -> None:
    port = site.server.port
    alice = await Client.open(port, "r1", "alice")
    assert alice.recoveries[0]["recovered"] is None
    assert alice.presence[0]["event"] == "members"
    assert list(alice.presence[0]["members"].values()) == [{"name": "alice"}]
    await site.publish("r1", 3, "live")
    await alice.wait_for(lambda: len(alice.messages) == 3)
    assert [(o, f["n"]) for o, f in alice.messages] == [(1, 1), (2, 2), (3, 3)]
    position = alice.position("room.r1")
    await alice.close()

    await site.publish("r1", 5, "missed")
    back = await Client.open(port, "r1", "alice", position)
    assert back.recoveries[0] == {
        "group": "room.r1",
        "epoch": position["room.r1"][0],
        "offset": 3,
        "recovered": True,
    }
    await back.wait_for(lambda: len(back.messages) == 5)
    assert [(o, f["n"], f["batch"]) for o, f in back.messages] == [
        (4 + i, 1 + i, "missed") for i in range(5)
    ]
    stale = await Client.open(port, "r1", "alice", {"room.r1": ["another-epoch", 2]})
    assert stale.recoveries[0]["recovered"] is False and stale.recoveries[0]["offset"] == 8
    await site.publish("r1", 1, "after")
    for client in (back, stale):
        await client.wait_for(lambda c=client: bool(c.messages) and c.messages[-1][0] == 9)
        await client.close()
    assert [o for o, _ in back.messages] == list(range(4, 10))
    assert [o for o, _ in stale.messages] == [9]


async def test_1x_presence_events_reach_the_client(site: Site) -> None:
    port = site.server.port
    alice = await Client.open(port, "p1", "alice")
    bob = await Client.open(port, "p1", "bob")

    def alice_saw(event: str) -> bool:
        return any(p["event"] == event and p["info"] == {"name": "bob"} for p in alice.presence)

    await alice.wait_for(lambda: alice_saw("join"))
    await bob.close()
    await alice.wait_for(lambda: alice_saw("leave"))
    await alice.close()


async def test_1x_reconnect_storm_while_messages_flow(site: Site) -> None:
    port, room, group = site.server.port, "storm", "room.storm"
    count = max(10, STORM_CLIENTS // 2)
    clients = [await Client.open(port, room, f"c{i}") for i in range(count)]
    await site.publish(room, 10, "before")
    saved = []
    for index, client in enumerate(clients):
        await client.wait_for(lambda c=client: len(c.messages) == 10)
        del client.messages[index % 11 :]
        saved.append(client.position(group))
        await client.close()
    await site.publish(room, 20, "while-away")

    async def come_back(position: dict[str, list[Any]]) -> Client:
        return await Client.open(port, room, "again", position)

    returning = [asyncio.ensure_future(come_back(position)) for position in saved]
    await asyncio.gather(asyncio.gather(*returning), site.publish(room, 20, "during"))
    for position, task in zip(saved, returning, strict=True):
        client = task.result()
        await client.wait_for(lambda c=client: bool(c.messages) and c.messages[-1][0] >= 50)
        start = position[group][1]
        assert [offset for offset, _ in client.messages] == list(range(start + 1, 51)), (
            client.recoveries,
            client.messages[:8],
            start,
        )
        assert client.recoveries[0]["recovered"] is True
        await client.close()
