"""ASGI entry point of the test Django project (settings from DJANGO_SETTINGS_MODULE)."""

import django

from tests.workers.apps import pid_app

django.setup()

application = pid_app
