"""Settings of the headrace live todo example (data binding + multiplexer + JS client).

Defaults need no services: SQLite next to this file and the in-memory layer (one process).
``TODO_DB_PATH`` moves the SQLite file; ``TODO_REDIS_URL`` switches to the Redis layer, so
changes made by other processes (``manage.py shell``, workers, more servers) reach the
browsers too (``TODO_REDIS_PREFIX`` names its keys); ``TODO_DEBUG=0`` turns DEBUG off.
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = os.environ.get("TODO_DEBUG", "1") == "1"
SECRET_KEY = os.environ.get("TODO_SECRET_KEY", "todo-example-insecure-key-change-me")
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]

INSTALLED_APPS = [
    "headrace",  # its runserver serves ASGI_APPLICATION; it also ships the JS client
    "todo",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.staticfiles",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
ROOT_URLCONF = "todosite.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    },
]
ASGI_APPLICATION = "todosite.asgi.application"

_redis_url = os.environ.get("TODO_REDIS_URL")
CHANNEL_LAYERS = {
    "default": (
        {
            "BACKEND": "headrace.layers.redis.RedisChannelLayer",
            "CONFIG": {
                "hosts": [_redis_url],
                "prefix": os.environ.get("TODO_REDIS_PREFIX", "asgi"),
            },
        }
        if _redis_url
        else {"BACKEND": "headrace.layers.InMemoryChannelLayer"}
    )
}
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("TODO_DB_PATH", str(BASE_DIR / "db.sqlite3")),
        "OPTIONS": {"timeout": 20},
    }
}
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
