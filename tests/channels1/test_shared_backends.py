"""A view over a shared backend (the settings' case): closing the view releases only what the
backend holds on the view's loop; modern code on other loops keeps working."""

from __future__ import annotations

import asyncio
from typing import Any

from headrace.asgi import AsgiChannelLayer
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
