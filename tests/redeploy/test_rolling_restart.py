"""Workers stopped under traffic: every message is answered exactly once.

WebSocket clients keep sending numbered messages through a real interface server while the
workers are replaced one at a time (a new one starts, an old one gets SIGTERM and must exit 0),
and then all stopped at once and restarted, over Redis and over IPC. A message is never lost
(each is answered within ``WAIT``) and never answered twice (each answer names the message it
answers, in order, and nothing arrives after the last). This is the moment the layers' receive
cancellation matters: a worker that stops has a receive out for the channel everyone sends to.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.redeploy.support import WAIT, Deployment

pytestmark = pytest.mark.timeout(240)

SOCKETS = 4
ROLLING_ROUNDS = 3
QUIET_CHECK = 1.0


async def chatter(socket: ClientConnection, name: str, stop: asyncio.Event) -> list[str]:
    """Send numbered messages, one in flight, until ``stop``; return the ones answered.
    A message not answered within WAIT, or answered with the wrong text, fails the test."""
    answered: list[str] = []
    number = 0
    while not stop.is_set():
        text = f"{name}-{number}"
        await socket.send(text)
        try:
            reply = await asyncio.wait_for(socket.recv(), WAIT)
        except TimeoutError:
            raise AssertionError(f"{text!r} was never answered (after {answered[-1:]})") from None
        assert reply == f"v1:{text}", f"{text!r} was answered with {reply!r}"
        answered.append(text)
        number += 1
        await asyncio.sleep(0.005)
    return answered


async def nothing_more(socket: ClientConnection) -> None:
    """No late second answer is waiting on ``socket``."""
    with contextlib.suppress(TimeoutError):
        extra = await asyncio.wait_for(socket.recv(), QUIET_CHECK)
        raise AssertionError(f"an answer arrived twice: {extra!r}")


async def restart_workers(deployment: Deployment) -> int:
    """Rolling restarts, then a stop-all-and-start; returns how many workers were stopped."""
    stopped = 0
    for _ in range(ROLLING_ROUNDS):
        for worker in deployment.workers():
            await asyncio.to_thread(deployment.start_worker)
            await asyncio.to_thread(deployment.stop_worker, worker)
            stopped += 1
    count = len(deployment.workers())
    await asyncio.to_thread(deployment.stop_workers)
    for _ in range(count):
        await asyncio.to_thread(deployment.start_worker)
    return stopped + count


async def test_workers_stopped_under_traffic_lose_no_message(deployment: Deployment) -> None:
    port = await asyncio.to_thread(deployment.start_interface)
    for _ in range(2):
        await asyncio.to_thread(deployment.start_worker)
    url = f"ws://127.0.0.1:{port}/chat/"
    try:
        async with contextlib.AsyncExitStack() as stack:
            sockets = [
                await stack.enter_async_context(connect(url, open_timeout=WAIT))
                for _ in range(SOCKETS)
            ]
            stop = asyncio.Event()
            talking = [
                asyncio.create_task(chatter(socket, f"s{index}", stop))
                for index, socket in enumerate(sockets)
            ]
            stopped = await restart_workers(deployment)
            await asyncio.sleep(0.5)  # some traffic for the last workers too
            stop.set()
            results = await asyncio.gather(*talking)
            for socket in sockets:
                await nothing_more(socket)
        assert stopped == 2 * ROLLING_ROUNDS + 2
        for index, answered in enumerate(results):
            assert answered == [f"s{index}-{n}" for n in range(len(answered))]
            assert answered, f"socket {index} got no answer at all"
        deployment.check_alive()
    except BaseException:
        print(deployment.logs())
        raise
