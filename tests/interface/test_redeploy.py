"""The redeploy story: the worker process is killed and a new version started while a
WebSocket stays open on the interface server; what the client sent in the gap, and an HTTP
request made in the gap, are answered by the new worker. Over IPC (a standalone hub) and Redis.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.interface.support import WAIT, InterfaceServer, Site, WorkerProcess, open_websocket
from tests.interface.test_http import assert_no_traceback, unique_path


async def _echo(connection: Any, text: str) -> str:
    await connection.send(text)
    answer: str = await asyncio.wait_for(connection.recv(), WAIT)
    return answer


async def test_sockets_stay_open_across_a_worker_restart(
    site: Site, server: InterfaceServer
) -> None:
    first = site.worker("v1")
    connection = await open_websocket(server.ws_url + unique_path("redeploy"))
    assert await _echo(connection, "one") == "v1:one"

    first.kill()
    await connection.send("in the gap")
    async with httpx.AsyncClient(timeout=WAIT) as client:
        path = unique_path("gap")
        request = asyncio.create_task(client.get(server.url + path))
        second: WorkerProcess = site.worker("v2")
        assert await asyncio.wait_for(connection.recv(), WAIT) == "v2:in the gap"
        response = await request
        assert (response.status_code, response.text) == (200, f"v2:{path}")
    assert await _echo(connection, "two") == "v2:two"
    assert connection.close_code is None  # the same socket all along
    await connection.close()
    second.stop()
    assert_no_traceback(server)
