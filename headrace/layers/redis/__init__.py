"""Redis channel layers: :class:`RedisChannelLayer` (queues, sharded, durable until expiry)
and :class:`RedisPubSubChannelLayer` (pub/sub, lowest latency, no persistence).

Both accept channels_redis' configuration shapes; see docs/layers.md for every option.
"""

from __future__ import annotations

from headrace.layers.redis.core import RedisChannelLayer
from headrace.layers.redis.pubsub import RedisPubSubChannelLayer
from headrace.layers.redis.serializers import MessageSerializer

__all__ = ["MessageSerializer", "RedisChannelLayer", "RedisPubSubChannelLayer"]
