"""Django settings for the runworker test: in-memory layer, the worker_app application."""

SECRET_KEY = "framework-tests"
INSTALLED_APPS = ["headrace"]
CHANNEL_LAYERS = {"default": {"BACKEND": "headrace.layers.InMemoryChannelLayer"}}
ASGI_APPLICATION = "tests.framework.worker_app.application"
USE_TZ = True
