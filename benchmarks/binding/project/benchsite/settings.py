"""One Django project, two peers picked by ``BENCH_PEER``: ``headrace`` (ModelBinding +
BindingConsumer on headrace's Redis layer) or ``dcrf`` (djangochannelsrestframework's
``model_observer`` on Channels 4 + channels_redis); ``BENCH_LAYER`` picks each one's Redis
queue layer (``core``) or pub/sub layer (``pubsub``). ``BENCH_DB`` is the SQLite file,
``BENCH_PREFIX`` the Redis key prefix."""

import os

PEER = os.environ.get("BENCH_PEER", "headrace")
SECRET_KEY = "bench-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "items"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("BENCH_DB", "/tmp/bench-binding.sqlite3"),
        "OPTIONS": {"timeout": 30},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
ROOT_URLCONF = "benchsite.urls"
_PREFIX = os.environ.get("BENCH_PREFIX", "bench")
LAYER = os.environ.get("BENCH_LAYER", "core")  # "core" (queues) or "pubsub"
_BACKEND = {
    ("headrace", "core"): "headrace.layers.redis.RedisChannelLayer",
    ("headrace", "pubsub"): "headrace.layers.redis.RedisPubSubChannelLayer",
    ("dcrf", "core"): "channels_redis.core.RedisChannelLayer",
    ("dcrf", "pubsub"): "channels_redis.pubsub.RedisPubSubChannelLayer",
}[PEER, LAYER]
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": _BACKEND,
        "CONFIG": {"hosts": [("127.0.0.1", 6379)], "prefix": _PREFIX, "capacity": 5000},
    }
}
