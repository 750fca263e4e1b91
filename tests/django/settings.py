"""Django settings for the headrace Django-integration tests.

The database is a SQLite file in a private temporary directory (not in memory: the live
server test case runs the server in a child process that must see the same data).
"""

from __future__ import annotations

import os
import tempfile

_DB_DIR = os.environ.setdefault("HEADRACE_TEST_DB_DIR", tempfile.mkdtemp(prefix="headrace-dj-"))

SECRET_KEY = "headrace-tests-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver", ".example.com"]
USE_TZ = True
ROOT_URLCONF = "tests.django.urls"
ASGI_APPLICATION = "tests.django.asgi_app.application"
INSTALLED_APPS = [
    "headrace",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.staticfiles",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.path.join(_DB_DIR, "db.sqlite3"),
        "TEST": {"NAME": os.path.join(_DB_DIR, "test-db.sqlite3")},
    }
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STATIC_URL = "/static/"
STATICFILES_DIRS = [os.path.join(os.path.dirname(__file__), "static")]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
