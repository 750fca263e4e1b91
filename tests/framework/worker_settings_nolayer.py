"""Django settings with no channel layer: runworker must refuse to start."""

SECRET_KEY = "framework-tests"
INSTALLED_APPS = ["headrace"]
ASGI_APPLICATION = "tests.framework.worker_app.application"
USE_TZ = True
