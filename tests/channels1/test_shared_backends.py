"""A view over a shared backend (the settings' case): closing the view releases only what the
backend holds on the view's loop; modern code on other loops keeps working; an in-memory
backend used from two loops at once loses nothing."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from headrace.asgi import AsgiChannelLayer
from headrace.layers import InMemoryChannelLayer
from headrace.layers.base import BaseChannelLayer
from headrace.layers.ipc import IPCChannelLayer
from headrace.layers.redis import RedisChannelLayer
from tests.conftest import require_service
from tests.layers_redis.conftest import SYSTEM_REDIS, close_and_drop, unique_prefix


def roundtrip_on_a_new_loop(backend: BaseChannelLayer, channel: str) -> Any:
    async def scenario() -> Any:
        await backend.send(channel, {"modern": True})
        return await asyncio.wait_for(backend.receive(channel), 10)

    return asyncio.run(scenario())


def use_then_close(backend: BaseChannelLayer) -> asyncio.AbstractEventLoop:
    view = AsgiChannelLayer(lambda: backend)
    assert not view.owns_backend
    view.send("shared.view", {"n": 1})
    assert view.receive(["shared.view"], block=True) == ("shared.view", {"n": 1})
    runner = view._runner
    assert runner is not None
    view.close()
    assert runner.loop.is_closed()
    return runner.loop


def test_redis_backend_survives_a_view_closing() -> None:
    require_service("redis", *SYSTEM_REDIS)
    prefix = unique_prefix()
    backend = RedisChannelLayer(hosts=[SYSTEM_REDIS], prefix=prefix)
    view_loop = use_then_close(backend)
    assert backend._loops[view_loop].closed  # the view's connections went with its loop
    assert roundtrip_on_a_new_loop(backend, "shared.modern") == {"modern": True}
    asyncio.run(close_and_drop(SYSTEM_REDIS, prefix, backend))


def test_ipc_backend_survives_a_view_closing(hub_path: str) -> None:
    backend = IPCChannelLayer(path=hub_path)
    view_loop = use_then_close(backend)
    assert view_loop not in backend._links  # the view's hub link closed with its loop
    assert roundtrip_on_a_new_loop(backend, "shared.modern") == {"modern": True}


def test_in_memory_backend_shared_by_two_loops_loses_nothing() -> None:
    """runserver's case: the interface server's loop and the view's loop use one in-memory
    backend from two threads. Every message sent from one arrives at the other, once, in order,
    while channels are created and dropped as idle all the time."""
    backend = InMemoryChannelLayer(capacity=10_000)
    view = AsgiChannelLayer(backend)
    total = 3000

    async def receive_all() -> list[int]:
        got = []
        for _ in range(total):
            message = await asyncio.wait_for(backend.receive("busy.channel"), 10)
            got.append(message["n"])
        return got

    results: list[list[int]] = []
    receiver = threading.Thread(target=lambda: results.append(asyncio.run(receive_all())))
    receiver.start()
    try:
        for index in range(total):
            view.send("busy.channel", {"n": index})
        receiver.join(60)
        assert results == [list(range(total))]
    finally:
        view.close()
