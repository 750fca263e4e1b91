"""The public conformance suites on the RabbitMQ layer: the async contract and the ASGI-1 view."""

from __future__ import annotations

from typing import Any

import pytest

from headrace.layers.base import BaseChannelLayer
from headrace.layers.rabbitmq import RabbitMQChannelLayer
from headrace.testing.asgi_layers import AsgiLayerConformance
from headrace.testing.layers import ChannelLayerConformance


class TestRabbitMQConformance(ChannelLayerConformance):
    shares_state_between_instances = True
    expiry_seconds = 0.5
    expiry_grace = 0.5

    @pytest.fixture(autouse=True)
    def _broker(self, rabbitmq_url: str, rabbitmq_prefix: str) -> None:
        self.url = rabbitmq_url
        self.prefix = rabbitmq_prefix

    async def make_layer(self, **config: Any) -> BaseChannelLayer:
        return RabbitMQChannelLayer(url=self.url, prefix=self.prefix, **config)


class TestRabbitMQAsgiConformance(AsgiLayerConformance):
    """The Channels-1 (ASGI draft) view over the RabbitMQ layer."""

    shares_state_between_instances = True

    @pytest.fixture(autouse=True)
    def _broker(self, rabbitmq_url: str, rabbitmq_prefix: str) -> None:
        self.url = rabbitmq_url
        self.prefix = rabbitmq_prefix

    def make_backend(self, **config: Any) -> BaseChannelLayer:
        return RabbitMQChannelLayer(url=self.url, prefix=self.prefix, **config)
