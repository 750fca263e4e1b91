"""What the 1.x worker relies on from the Redis layer: a receive it gives up (all its threads
busy) leaves later messages to other processes instead of buffering them in this one."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid

from headrace.layers.redis import RedisChannelLayer
from tests.conftest import require_service
from tests.worker1.conftest import drop_redis_keys


async def test_a_given_up_receive_leaves_the_next_message_in_redis() -> None:
    require_service("redis", "127.0.0.1", 6379)
    prefix = f"w1-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    busy = RedisChannelLayer(hosts=[("127.0.0.1", 6379)], prefix=prefix)
    other = RedisChannelLayer(hosts=[("127.0.0.1", 6379)], prefix=prefix)
    try:
        await busy.send("handback.warm", {"type": "warm"})
        assert await busy.receive("handback.warm") == {"type": "warm"}
        given_up = asyncio.ensure_future(busy.receive("handback.jobs"))
        await asyncio.sleep(0.2)  # lets its blocking pop reach Redis (the case under test)
        given_up.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await given_up
        await busy.send("handback.jobs", {"type": "job", "n": 1})
        async with asyncio.timeout(15):
            assert await other.receive("handback.jobs") == {"type": "job", "n": 1}
    finally:
        await busy.close()
        await other.close()
        drop_redis_keys(prefix)
