"""The public history and presence suite on the Redis layer: one host, three shards (groups
and their members on different servers) and a Cluster."""

from __future__ import annotations

from typing import Any

import pytest

from headrace.layers.base import BaseChannelLayer
from headrace.layers.redis import RedisChannelLayer
from headrace.testing.history import HistoryPresenceConformance
from tests.layers_redis.conftest import HOST_SETUPS, hosts_of_setup, unique_prefix


class TestRedisHistoryPresence(HistoryPresenceConformance):
    shares_state_between_instances = True
    hosts: list[Any]

    @pytest.fixture(autouse=True, params=HOST_SETUPS)
    def _hosts(self, request: pytest.FixtureRequest) -> None:
        self.hosts = hosts_of_setup(request)

    async def make_layer(self, **config: Any) -> BaseChannelLayer:
        if not hasattr(self, "prefix"):
            self.prefix = unique_prefix()
        return RedisChannelLayer(hosts=self.hosts, prefix=self.prefix, **config)
