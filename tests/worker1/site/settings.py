"""A Channels-1 style Django project: ROUTING on the layer, views served by workers.

The backend and its prefix come from the environment, so each test gets its own layer:
``WORKER1_BACKEND`` (``ipc``, ``redis`` or ``inmemory``) and ``WORKER1_PREFIX``.
"""

import os

SECRET_KEY = "tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
INSTALLED_APPS = ["headrace"]
MIDDLEWARE = ["tests.worker1.site.middleware.stamp"]
ROOT_URLCONF = "tests.worker1.site.urls"
DATABASES: dict[str, dict[str, str]] = {}
ASGI_APPLICATION = "tests.worker1.site.asgi.application"
LOGGING_CONFIG = None
DATA_UPLOAD_MAX_MEMORY_SIZE = 8 * 1024 * 1024

_BACKEND = os.environ.get("WORKER1_BACKEND", "inmemory")
_PREFIX = os.environ.get("WORKER1_PREFIX", "worker1")

if _BACKEND == "ipc":
    _LAYER = {"BACKEND": "headrace.layers.ipc.IPCChannelLayer", "CONFIG": {"prefix": _PREFIX}}
elif _BACKEND == "redis":
    _LAYER = {
        "BACKEND": "headrace.layers.redis.RedisChannelLayer",
        "CONFIG": {"hosts": [("127.0.0.1", 6379)], "prefix": _PREFIX},
    }
else:
    _LAYER = {"BACKEND": "headrace.layers.InMemoryChannelLayer"}

if os.environ.get("WORKER1_DEBUG") == "1":  # runworker then serves static files too
    DEBUG = True
    INSTALLED_APPS = ["headrace", "django.contrib.staticfiles"]
    STATIC_URL = "/static/"
    STATICFILES_DIRS = [os.path.join(os.path.dirname(__file__), "static")]

CHANNEL_LAYERS = {"default": {**_LAYER, "ROUTING": "tests.worker1.site.routing.channel_routing"}}
