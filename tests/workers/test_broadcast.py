"""A group broadcast reaches WebSocket clients connected to every worker (the IPC layer)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator

import pytest
import websockets

from tests.conftest import free_port
from tests.workers.helpers import WAIT, Supervised, supervised, wait_until

ATTEMPTS = 40
APP = "tests.workers.chat:application"


async def _connect_to_every_worker(
    url: str, workers: set[int], stack: contextlib.AsyncExitStack
) -> dict[int, websockets.ClientConnection]:
    """Open connections until each worker holds at least one (bounded attempts)."""
    by_worker: dict[int, websockets.ClientConnection] = {}
    for _ in range(ATTEMPTS):
        connection = await stack.enter_async_context(websockets.connect(url, open_timeout=WAIT))
        greeting = await asyncio.wait_for(connection.recv(), WAIT)
        assert isinstance(greeting, str)
        by_worker.setdefault(int(greeting.split()[1]), connection)
        if set(by_worker) == workers:
            break
    return by_worker


async def _broadcast_reaches_all(
    clients: dict[int, websockets.ClientConnection], text: str
) -> None:
    sender = next(iter(clients.values()))
    await sender.send(text)
    for pid, connection in clients.items():
        await asyncio.wait_for(_until_received(connection, f"{pid}:{text}"), WAIT)


async def _until_received(connection: websockets.ClientConnection, expected: str) -> None:
    """Read until ``expected`` (earlier broadcasts may still be queued before it)."""
    while (await connection.recv()) != expected:
        pass


@contextlib.contextmanager
def chat_server(*options: str) -> Iterator[tuple[Supervised, int, str]]:
    port = free_port()
    arguments = ("--workers", "2", "-p", str(port), *options, APP)
    with supervised(*arguments, base_url="", ready=2) as server:
        yield server, port, str(server.log.parent)


@pytest.mark.parametrize("hub_option", ["--ipc-hub", "--no-ipc-hub"])
async def test_group_broadcast_reaches_clients_on_every_worker(hub_option: str) -> None:
    with chat_server(hub_option) as (server, port, folder):
        workers = server.workers()
        if hub_option == "--ipc-hub":
            assert f"listening on {folder}/asgi.sock" in server.output()
            assert server.hub() is not None
        else:
            assert server.hub() is None
        async with contextlib.AsyncExitStack() as stack:
            clients = await _connect_to_every_worker(f"ws://127.0.0.1:{port}/", workers, stack)
            assert set(clients) == workers
            await _broadcast_reaches_all(clients, "hello everyone")


async def test_groups_survive_a_killed_worker_and_a_killed_hub() -> None:
    """SIGKILL a worker, then the hub companion holding every queue and group: each time the
    surviving WebSocket clients still get the broadcast (memberships are replayed, parked
    receives re-parked at the hub the survivors elect)."""
    with chat_server() as (server, port, _):
        workers = server.workers()
        hub = server.hub()
        assert hub is not None
        async with contextlib.AsyncExitStack() as stack:
            clients = await _connect_to_every_worker(f"ws://127.0.0.1:{port}/", workers, stack)
            victim = min(clients)
            os.kill(victim, signal.SIGKILL)
            server.wait_ready(3)
            survivors = {pid: ws for pid, ws in clients.items() if pid != victim}
            await _broadcast_reaches_all(survivors, "still here")
            wait_until(lambda: len(server.workers() - workers) == 1, what="a replacement")
            assert server.hub() == hub
            # The replacement's clients and the survivor's are in the same group.
            fresh = await _connect_to_every_worker(
                f"ws://127.0.0.1:{port}/", server.workers(), stack
            )
            assert set(fresh) == server.workers()
            os.kill(hub, signal.SIGKILL)
            # Each worker re-registers its memberships when it reconnects; a group_send through
            # each worker's new connection proves it has (the replay precedes the request on
            # that connection). Messages sent before a worker reconnects may miss its members.
            for pid, connection in fresh.items():
                await _broadcast_reaches_all({pid: connection}, f"reconnected {pid}")
            await _broadcast_reaches_all(fresh, "hub gone")
