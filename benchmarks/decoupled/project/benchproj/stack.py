"""Which framework this process runs on, from ``DECOUPLED_STACK`` (``channels`` or ``headrace``)."""

import os

STACK = os.environ.get("DECOUPLED_STACK", "headrace")
if STACK not in ("channels", "headrace"):
    raise RuntimeError(f"DECOUPLED_STACK must be 'channels' or 'headrace', not {STACK!r}")

LAYER_BACKENDS = {
    "channels": "asgi_redis.RedisChannelLayer",
    "headrace": "headrace.layers.redis.RedisChannelLayer",
}
