"""The public history and presence suite on the Redis layer: one host, three shards (groups
and their members on different servers) and a Cluster."""

from __future__ import annotations

from typing import Any

import pytest

from headrace.layers.base import BaseChannelLayer
from headrace.layers.redis import RedisChannelLayer
from headrace.testing.history import HistoryPresenceConformance
from tests.layers_redis.conftest import unique_prefix
from tests.layers_redis.servers import Cluster, RedisProcess


class RedisHistoryConformance(HistoryPresenceConformance):
    shares_state_between_instances = True
    hosts: list[Any]

    async def make_layer(self, **config: Any) -> BaseChannelLayer:
        if not hasattr(self, "prefix"):
            self.prefix = unique_prefix()
        return RedisChannelLayer(hosts=self.hosts, prefix=self.prefix, **config)


class TestHistorySingleHost(RedisHistoryConformance):
    @pytest.fixture(autouse=True)
    def _hosts(self, system_redis: tuple[str, int]) -> None:
        self.hosts = [system_redis]


class TestHistoryThreeShards(RedisHistoryConformance):
    @pytest.fixture(autouse=True)
    def _hosts(self, shard_servers: list[RedisProcess]) -> None:
        self.hosts = [server.url for server in shard_servers]


class TestHistoryCluster(RedisHistoryConformance):
    @pytest.fixture(autouse=True)
    def _hosts(self, cluster: Cluster) -> None:
        self.hosts = [{"cluster": True, "address": cluster.nodes[0].url}]
