"""Settings shared by both stacks; the layer and the app switch on ``DECOUPLED_STACK``.

``DECOUPLED_REDIS`` (a ``redis://`` URL) and ``DECOUPLED_PREFIX`` choose the Redis server and
key prefix, so the two stacks never read each other's channels. ``DECOUPLED_LAYER=ipc`` puts
the headrace side on its IPC layer instead (one host, no Redis).
"""

import os

from benchproj.stack import LAYER_BACKENDS, STACK

SECRET_KEY = "decoupled-benchmark-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "benchproj.urls"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", STACK]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
DATABASES = {}
LOGGING_CONFIG = None

REDIS_URL = os.environ.get("DECOUPLED_REDIS", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("DECOUPLED_PREFIX", "decoupled-" + STACK)

if os.environ.get("DECOUPLED_LAYER") == "ipc":
    LAYER = {"BACKEND": "headrace.layers.ipc.IPCChannelLayer", "CONFIG": {"prefix": PREFIX}}
else:
    LAYER = {
        "BACKEND": LAYER_BACKENDS[STACK],
        "CONFIG": {"hosts": [REDIS_URL], "prefix": PREFIX + ":", "capacity": 1000},
    }
LAYER["ROUTING"] = "benchproj.routing.channel_routing"
CHANNEL_LAYERS = {"default": LAYER}
