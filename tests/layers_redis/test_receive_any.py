"""RedisChannelLayer.receive_any: one blocking pop over several normal channels (the 1.x worker's
receive), taking one message per call and leaving the rest in Redis. The public suite
(headrace.testing.receive_any), then channels on several shards."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from headrace.layers.base import BaseChannelLayer
from headrace.layers.redis import RedisChannelLayer
from headrace.testing.receive_any import ReceiveAnyConformance
from tests.layers_redis.conftest import close_and_drop, unique_prefix
from tests.layers_redis.servers import RedisProcess

TIMEOUT = 10


class TestRedisReceiveAny(ReceiveAnyConformance):
    """The public receive_any suite on the system Redis; process-local channels are left to
    ``receive`` (``receive_any`` answers None for them)."""

    takes_process_local = False

    @pytest.fixture(autouse=True)
    def _store(self, system_redis: tuple[str, int]) -> None:
        self.address = system_redis
        self.prefix = unique_prefix()

    async def make_layer(self, **config: Any) -> BaseChannelLayer:
        return RedisChannelLayer(hosts=[self.address], prefix=self.prefix, **config)

    async def dispose(self, layers: Sequence[BaseChannelLayer]) -> None:
        await close_and_drop(self.address, self.prefix, *layers)


async def test_channels_on_two_shards_are_left_to_receive(
    shard_servers: list[RedisProcess],
) -> None:
    layer = RedisChannelLayer(
        hosts=[server.url for server in shard_servers[:2]], prefix=unique_prefix()
    )
    try:
        names = [f"spread-{index}" for index in range(20)]
        shards = {layer.shard_of(name) for name in names}
        assert len(shards) == 2
        same = [name for name in names if layer.shard_of(name) == layer.shard_of(names[0])]
        assert await layer.receive_any(names) is None
        await layer.send(same[-1], {"type": "here"})
        answer = await asyncio.wait_for(layer.receive_any(same), TIMEOUT)
        assert answer == (same[-1], {"type": "here"})
    finally:
        await layer.flush()
        await layer.close()
