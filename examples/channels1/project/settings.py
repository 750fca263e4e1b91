"""Settings of the Channels-1 example: a 1.1-style project (``ROUTING`` on the layer).

Environment knobs (the tests set them; none is needed to try the example):

* ``EXAMPLE_LAYER``: ``inmemory`` (default, for ``runserver``), ``ipc:<prefix>`` or
  ``redis:<prefix>`` (interface server and workers in separate processes);
* ``EXAMPLE_DB``: the SQLite file (default ``db.sqlite3`` beside this package);
* ``EXAMPLE_CHANNEL_SESSIONS``: the folder of the channel sessions (file engine);
* ``EXAMPLE_ROUTING``: another routing (the tests add a few consumers of their own).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "channels1-example-not-secret"
DEBUG = os.environ.get("EXAMPLE_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]
USE_TZ = True
ROOT_URLCONF = "examples.channels1.project.urls"
INSTALLED_APPS = [
    "headrace",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "examples.channels1.chat",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
            ]
        },
    }
]
_DB = os.environ.get("EXAMPLE_DB", str(BASE_DIR / "db.sqlite3"))
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": _DB,
        "OPTIONS": {"timeout": 20},
        "TEST": {"NAME": _DB + ".test"},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGIN_URL = "/login/"

# Channel sessions live as long as a connection; the file engine keeps them out of the
# database (CHANNEL_SESSION_ENGINE), HTTP sessions stay in the database.
CHANNEL_SESSION_ENGINE = "django.contrib.sessions.backends.file"
SESSION_FILE_PATH = os.environ.get(
    "EXAMPLE_CHANNEL_SESSIONS", os.path.join(tempfile.gettempdir(), "channels1-example-sessions")
)
os.makedirs(SESSION_FILE_PATH, exist_ok=True)

_KIND, _, _PREFIX = os.environ.get("EXAMPLE_LAYER", "inmemory").partition(":")
if _KIND == "ipc":
    _LAYER = {"BACKEND": "headrace.layers.ipc.IPCChannelLayer", "CONFIG": {"prefix": _PREFIX}}
elif _KIND == "redis":
    _LAYER = {
        "BACKEND": "headrace.layers.redis.RedisChannelLayer",
        "CONFIG": {"hosts": [("127.0.0.1", 6379)], "prefix": _PREFIX},
    }
else:
    _LAYER = {"BACKEND": "headrace.layers.InMemoryChannelLayer"}
_ROUTING = os.environ.get("EXAMPLE_ROUTING", "examples.channels1.project.routing.channel_routing")
CHANNEL_LAYERS = {"default": {**_LAYER, "ROUTING": _ROUTING}}
