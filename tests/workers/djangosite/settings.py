"""A Django project with no CHANNEL_LAYERS: ``--workers 2`` must warn about it."""

SECRET_KEY = "tests-only"
INSTALLED_APPS: list[str] = []
USE_TZ = True
