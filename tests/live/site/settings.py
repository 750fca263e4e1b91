"""The Django project of tests/live: cards bound to sockets, served by the real server.

Each test run gets its own SQLite file (``LIVE_DB``) and layer prefix (``LIVE_PREFIX``);
``LIVE_LAYER`` picks ``redis`` (default) or ``ipc``. With ``LIVE_PG_DB`` set, the database is
that PostgreSQL database on 127.0.0.1:5432 (user postgres) instead of the SQLite file.
With ``LIVE_ROUTING=1`` the layer has a ``ROUTING`` (the 1.x side: the inbound 1.x binding
through runworker); ``LIVE_ROUTING=demux`` routes through the 1.x demultiplexer instead.
"""

import os

SECRET_KEY = "tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
INSTALLED_APPS = [
    "headrace",
    "headrace.delay",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.staticfiles",
    "tests.live.cards",
]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "tests.live.site.urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("LIVE_DB", "/tmp/headrace-live-default.sqlite3"),
        "OPTIONS": {"timeout": 20},
    }
}
if os.environ.get("LIVE_PG_DB"):
    DATABASES["default"] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ["LIVE_PG_DB"],
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": "5432",
    }
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
STATIC_URL = "/static/"
STATIC_ROOT = os.environ.get("LIVE_STATIC_ROOT")

_PREFIX = os.environ.get("LIVE_PREFIX", "live")
if os.environ.get("LIVE_LAYER", "redis") == "ipc":
    _LAYER = {
        "BACKEND": "headrace.layers.ipc.IPCChannelLayer",
        "CONFIG": {"prefix": _PREFIX, "channel_capacity": {"delayed.full": 1}},
    }
else:
    _LAYER = {
        "BACKEND": "headrace.layers.redis.RedisChannelLayer",
        "CONFIG": {
            "hosts": [("127.0.0.1", 6379)],
            "prefix": _PREFIX,
            "channel_capacity": {"delayed.full": 1},
        },
    }
CHANNEL_LAYERS = {"default": _LAYER}
_ROUTINGS = {"1": "channel_routing", "demux": "demux_routing"}
if os.environ.get("LIVE_ROUTING") in _ROUTINGS:  # the Channels-1 side (runworker, interface)
    CHANNEL_LAYERS["default"]["ROUTING"] = (
        "tests.live.site.routing." + _ROUTINGS[os.environ["LIVE_ROUTING"]]
    )
ASGI_APPLICATION = "tests.live.site.asgi.application"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"headrace": {"handlers": ["stderr"], "level": "INFO"}},
}
