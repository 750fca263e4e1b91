"""A Channels-1 deployment for the recovery tests: interface server and workers over IPC
(``RECOVERY_IPC_PREFIX``), rooms with history and presence."""

from __future__ import annotations

import os

from tests.recovery.features import FEATURES

SECRET_KEY = "recovery-1x-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
INSTALLED_APPS = ["headrace", "django.contrib.contenttypes", "django.contrib.auth"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
USE_TZ = True
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "headrace.layers.ipc.IPCChannelLayer",
        "CONFIG": {"prefix": os.environ.get("RECOVERY_IPC_PREFIX", "recovery1x"), **FEATURES},
        "ROUTING": "tests.recovery.site1.routing.channel_routing",
    }
}
