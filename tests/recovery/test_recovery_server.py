"""Recovery after reconnect and presence through the real server (tests/recovery/app.py),
spoken to with the ``websockets`` client: exactly the missed messages in order, then live
ones, no gap and no duplicate, also when many clients reconnect at once while messages flow."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.conftest import require_service
from tests.django.processes import ServerProcess, start_server

DEADLINE = 60.0


@pytest.fixture(params=["memory", "memory-slow-join", "ipc", "redis"])
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    if request.param == "redis":
        require_service("Redis", "127.0.0.1", 6379)
    env = {"RECOVERY_LAYER": request.param, "RECOVERY_IPC_PREFIX": f"rec-{uuid.uuid4().hex[:8]}"}
    process = start_server(
        lambda port: ["-m", "headrace", "-b", "127.0.0.1", "-p", str(port), APP], env=env
    )
    try:
        yield process
    finally:
        process.stop()


APP = "tests.recovery.app:application"


class Client:
    """One socket of the room; a task reads every frame (so the socket never backs up)."""

    def __init__(self, socket: ClientConnection, epoch: str | None) -> None:
        self.socket = socket
        self.messages: list[tuple[int, dict[str, Any]]] = []  # (offset, frame)
        self.recoveries: list[dict[str, Any]] = []
        self.presence: list[dict[str, Any]] = []
        self.epoch = epoch  # replayed frames come before the recovery frame naming it
        self.changed = asyncio.Condition()
        self.reader = asyncio.ensure_future(self._read())

    @classmethod
    async def open(
        cls, port: int, room: str, name: str, positions: dict[str, list[Any]] | None = None
    ) -> Client:
        # Like the JavaScript bridge: always a positions parameter, {} when there is none yet.
        url = f"ws://127.0.0.1:{port}/ws/{room}/?name={name}"
        url += "&positions=" + quote(json.dumps(positions or {}))
        epoch = next(iter(positions.values()))[0] if positions else None
        client = cls(await connect(url, open_timeout=DEADLINE), epoch)
        await client.wait_for(lambda: bool(client.recoveries))
        return client

    async def _read(self) -> None:
        async for text in self.socket:
            frame = json.loads(text)
            if "__recovery__" in frame:
                self.recoveries.append(frame["__recovery__"])
                self.epoch = frame["__recovery__"]["epoch"]
            elif "__presence__" in frame:
                self.presence.append(frame["__presence__"])
            else:
                epoch, offset = frame.pop("__position__")
                assert epoch == self.epoch, (epoch, self.epoch)
                self.messages.append((offset, frame))
            async with self.changed:
                self.changed.notify_all()

    async def wait_for(self, done: Any) -> None:
        async with asyncio.timeout(DEADLINE), self.changed:
            while not done():
                if self.reader.done():
                    self.reader.result()  # raises what ended the reader
                    raise AssertionError("the server closed the socket")
                await asyncio.wait_for(self.changed.wait(), DEADLINE)

    async def close(self) -> None:
        await self.socket.close()
        await asyncio.gather(self.reader, return_exceptions=True)

    def position(self, group: str) -> dict[str, list[Any]]:
        offset = self.messages[-1][0] if self.messages else self.recoveries[-1]["offset"]
        return {group: [self.epoch, offset]}


async def publish(port: int, room: str, count: int, batch: str) -> list[Any]:
    async with httpx.AsyncClient(timeout=DEADLINE) as http:
        answer = await http.post(f"http://127.0.0.1:{port}/publish/{room}/{count}/", content=batch)
    answer.raise_for_status()
    result: list[Any] = answer.json()
    return result


async def test_a_reconnecting_client_gets_exactly_what_it_missed(server: ServerProcess) -> None:
    port = server.port
    alice = await Client.open(port, "r1", "alice")
    assert alice.recoveries[0]["recovered"] is None and alice.recoveries[0]["offset"] == 0
    epoch, last = await publish(port, "r1", 3, "live")
    await alice.wait_for(lambda: len(alice.messages) == 3)
    assert [(o, f["n"]) for o, f in alice.messages] == [(1, 1), (2, 2), (3, 3)]
    assert epoch == alice.epoch and last == 3
    position = alice.position("room.r1")
    await alice.close()

    await publish(port, "r1", 5, "missed")
    back = await Client.open(port, "r1", "alice", position)
    assert [(o, f["n"], f["batch"]) for o, f in back.messages] == [
        (4 + i, 1 + i, "missed") for i in range(5)
    ]
    assert back.recoveries == [{"group": "room.r1", "epoch": epoch, "offset": 8, "recovered": True}]
    await publish(port, "r1", 1, "after")
    await back.wait_for(lambda: len(back.messages) == 6)
    assert back.messages[-1] == (9, {"n": 1, "batch": "after"})

    stale = await Client.open(port, "r1", "alice", {"room.r1": ["another-epoch", 2]})
    assert stale.messages == []
    assert stale.recoveries == [
        {"group": "room.r1", "epoch": epoch, "offset": 9, "recovered": False}
    ]
    for client in (back, stale):
        await client.close()


async def test_a_bad_positions_parameter_is_refused(server: ServerProcess) -> None:
    url = f"ws://127.0.0.1:{server.port}/ws/r2/?positions=" + quote('{"room.r2": "nope"}')
    async with connect(url, open_timeout=DEADLINE) as socket:
        async with asyncio.timeout(DEADLINE):
            with pytest.raises(Exception) as raised:
                while True:
                    await socket.recv()
    assert "ConnectionClosed" in type(raised.value).__name__
    assert socket.close_code == 1011
    assert "'positions' query parameter's entry for 'room.r2'" in await wait_log(
        server, "query parameter's entry"
    )


async def wait_log(server: ServerProcess, text: str) -> str:
    def poll() -> str:
        deadline = time.monotonic() + DEADLINE
        while text not in server.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        return server.log()

    return await asyncio.to_thread(poll)


async def test_presence_members_then_joins_and_leaves(server: ServerProcess) -> None:
    port = server.port
    alice = await Client.open(port, "p1", "alice")
    members = alice.presence[0]
    assert members["event"] == "members" and members["group"] == "room.p1"
    assert list(members["members"].values()) == [{"name": "alice"}]
    bob = await Client.open(port, "p1", "bob")
    assert sorted(info["name"] for info in bob.presence[0]["members"].values()) == [
        "alice",
        "bob",
    ]

    def alice_saw(event: str, name: str) -> bool:
        return any(
            p["event"] == event and p["info"] == {"name": name} and p["group"] == "room.p1"
            for p in alice.presence
        )

    await alice.wait_for(lambda: alice_saw("join", "bob"))
    await bob.close()
    await alice.wait_for(lambda: alice_saw("leave", "bob"))
    await alice.close()


STORM_CLIENTS = int(os.environ.get("RECOVERY_STORM_CLIENTS", "60"))


async def test_reconnect_storm_while_messages_flow(server: ServerProcess) -> None:
    """Many clients leave at different points of a stream and all come back at once while
    the stream goes on: each gets every offset after its own position exactly once, in order."""
    port, room, group = server.port, "storm", "room.storm"
    clients = [await Client.open(port, room, f"c{i}") for i in range(STORM_CLIENTS)]
    await publish(port, room, 10, "before")
    saved = []
    for index, client in enumerate(clients):
        await client.wait_for(lambda c=client: len(c.messages) == 10)
        del client.messages[index % 11 :]  # as if it had handled only the first index % 11
        saved.append(client.position(group))
        await client.close()
    await publish(port, room, 30, "while-away")

    async def come_back(position: dict[str, list[Any]]) -> Client:
        return await Client.open(port, room, "again", position)

    returning = [asyncio.ensure_future(come_back(position)) for position in saved]
    _, (_, total) = await asyncio.gather(
        asyncio.gather(*returning), publish(port, room, 30, "during")
    )
    assert total == 70
    for position, task in zip(saved, returning, strict=True):
        client = task.result()
        await client.wait_for(lambda c=client: bool(c.messages) and c.messages[-1][0] >= total)
        start = position[group][1]
        assert [offset for offset, _ in client.messages] == list(range(start + 1, total + 1))
        assert client.recoveries[0]["recovered"] is True
        await client.close()
