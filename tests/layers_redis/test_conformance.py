"""The public conformance suites on the Redis layers: the async contract on one host, three
shards, Sentinel and Cluster; the ASGI-1 view on one host and three shards."""

from __future__ import annotations

from typing import Any

import pytest

from headrace.layers.base import BaseChannelLayer
from headrace.layers.redis import RedisChannelLayer, RedisPubSubChannelLayer
from headrace.testing.asgi_layers import AsgiLayerConformance
from headrace.testing.layers import ChannelLayerConformance
from tests.layers_redis.conftest import MASTER_NAME, unique_prefix
from tests.layers_redis.servers import Cluster, RedisProcess, SentinelProcess


class RedisConformance(ChannelLayerConformance):
    shares_state_between_instances = True
    expiry_seconds = 0.4
    expiry_grace = 0.3
    hosts: list[Any]
    layer_class: type[BaseChannelLayer] = RedisChannelLayer

    async def make_layer(self, **config: Any) -> BaseChannelLayer:
        if not hasattr(self, "prefix"):
            self.prefix = unique_prefix()
        return self.layer_class(hosts=self.hosts, prefix=self.prefix, **config)


class TestCoreSingleHost(RedisConformance):
    @pytest.fixture(autouse=True)
    def _hosts(self, system_redis: tuple[str, int]) -> None:
        self.hosts = [system_redis]


class TestCoreThreeShards(RedisConformance):
    @pytest.fixture(autouse=True)
    def _hosts(self, shard_servers: list[RedisProcess]) -> None:
        self.hosts = [server.url for server in shard_servers]


class TestCoreSentinel(RedisConformance):
    @pytest.fixture(autouse=True)
    def _hosts(self, sentinel_setup: tuple[RedisProcess, SentinelProcess]) -> None:
        _, sentinel = sentinel_setup
        self.hosts = [{"master_name": MASTER_NAME, "sentinels": [("127.0.0.1", sentinel.port)]}]


class TestCoreCluster(RedisConformance):
    @pytest.fixture(autouse=True)
    def _hosts(self, cluster: Cluster) -> None:
        self.hosts = [{"cluster": True, "address": cluster.nodes[0].url}]


class TestPubSubSingleHost(TestCoreSingleHost):
    layer_class = RedisPubSubChannelLayer
    local_channels_keep_messages = False


class TestPubSubThreeShards(TestCoreThreeShards):
    layer_class = RedisPubSubChannelLayer
    local_channels_keep_messages = False


class TestPubSubSentinel(TestCoreSentinel):
    layer_class = RedisPubSubChannelLayer
    local_channels_keep_messages = False


class TestPubSubCluster(TestCoreCluster):
    layer_class = RedisPubSubChannelLayer
    local_channels_keep_messages = False


class RedisAsgiConformance(AsgiLayerConformance):
    """The Channels-1 (ASGI draft) view over a Redis layer."""

    shares_state_between_instances = True
    hosts: list[Any]
    layer_class: type[BaseChannelLayer] = RedisChannelLayer

    def make_backend(self, **config: Any) -> BaseChannelLayer:
        if not hasattr(self, "prefix"):
            self.prefix = unique_prefix()
        return self.layer_class(hosts=self.hosts, prefix=self.prefix, **config)


class TestAsgiCoreSingleHost(RedisAsgiConformance):
    @pytest.fixture(autouse=True)
    def _hosts(self, system_redis: tuple[str, int]) -> None:
        self.hosts = [system_redis]


class TestAsgiCoreThreeShards(RedisAsgiConformance):
    @pytest.fixture(autouse=True)
    def _hosts(self, shard_servers: list[RedisProcess]) -> None:
        self.hosts = [server.url for server in shard_servers]


class TestAsgiPubSubSingleHost(TestAsgiCoreSingleHost):
    """Pub/sub's process-local channels exist only while a receive waits on them (a receive
    that gives up drops the channel and its group memberships), so polling one is skipped."""

    layer_class = RedisPubSubChannelLayer
    local_channels_keep_messages = False


class TestAsgiPubSubThreeShards(TestAsgiCoreThreeShards):
    layer_class = RedisPubSubChannelLayer
    local_channels_keep_messages = False
