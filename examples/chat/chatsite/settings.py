"""Settings of the headrace chat example (the Channels tutorial's chat, served by headrace).

Defaults make a fresh checkout run with no services: SQLite next to this file and the
in-memory channel layer (one process). Environment variables change them:

* ``CHAT_DEBUG`` (``1``/``0``, default ``1``), ``CHAT_SECRET_KEY``, ``CHAT_ALLOWED_HOSTS``
  (comma-separated, default the loopback names);
* ``CHAT_DB_PATH``: the SQLite file (default ``db.sqlite3`` in the project folder);
* ``CHAT_REDIS_URL``: use the Redis layer instead (for several server processes);
* ``CHAT_AUTO_MIGRATE`` (``1``/``0``, default ``1``): apply migrations when the ASGI
  application is loaded, so ``headrace chatsite.asgi:application`` works on first run.
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = os.environ.get("CHAT_DEBUG", "1") == "1"
SECRET_KEY = os.environ.get("CHAT_SECRET_KEY", "chat-example-insecure-key-change-me")
ALLOWED_HOSTS = os.environ.get("CHAT_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")
AUTO_MIGRATE = os.environ.get("CHAT_AUTO_MIGRATE", "1") == "1"

INSTALLED_APPS = [
    "headrace",  # before staticfiles: its runserver serves ASGI_APPLICATION through headrace
    "chat",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "chatsite.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

ASGI_APPLICATION = "chatsite.asgi.application"

_redis_url = os.environ.get("CHAT_REDIS_URL")
# Each room's group keeps its last 200 messages for 10 minutes (a client that reconnects gets
# what it missed) and knows who is online (presence, with join/leave events).
_ROOM_FEATURES = {
    "history": {"chat.*": {"size": 200, "ttl": 600}},
    "presence": {"chat.*": {"ttl": 30, "events": True}},
}
if _redis_url:
    from headrace.layers.redis import RedisChannelLayer

    _config: dict[str, object] = {"hosts": [_redis_url]}
    # Until the Redis layer has history and presence, the chat runs without them there.
    _config.update((k, v) for k, v in _ROOM_FEATURES.items() if k in RedisChannelLayer.extensions)
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "headrace.layers.redis.RedisChannelLayer", "CONFIG": _config}
    }
else:
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "headrace.layers.InMemoryChannelLayer", "CONFIG": _ROOM_FEATURES}
    }

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("CHAT_DB_PATH", str(BASE_DIR / "db.sqlite3")),
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/chat/"
LOGOUT_REDIRECT_URL = "/chat/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
