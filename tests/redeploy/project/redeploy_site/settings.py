"""Layer from the environment: ``REDEPLOY_LAYER`` is ``redis`` (``REDEPLOY_REDIS`` URL and
``REDEPLOY_PREFIX``) or ``ipc`` (``REDEPLOY_IPC_PATH``, the hub's socket)."""

from __future__ import annotations

import os
from typing import Any

SECRET_KEY = "redeploy-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["headrace"]
ROOT_URLCONF = "redeploy_site.urls"
DATABASES: dict[str, Any] = {}
USE_TZ = True

if os.environ["REDEPLOY_LAYER"] == "redis":
    LAYER: dict[str, Any] = {
        "BACKEND": "headrace.layers.redis.RedisChannelLayer",
        "CONFIG": {
            "hosts": [os.environ["REDEPLOY_REDIS"]],
            "prefix": os.environ["REDEPLOY_PREFIX"],
        },
    }
else:
    LAYER = {
        "BACKEND": "headrace.layers.ipc.IPCChannelLayer",
        "CONFIG": {"path": os.environ["REDEPLOY_IPC_PATH"]},
    }
LAYER["ROUTING"] = "redeploy_site.routing.channel_routing"
CHANNEL_LAYERS = {"default": LAYER}
