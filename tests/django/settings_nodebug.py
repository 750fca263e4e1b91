"""The test settings with DEBUG off (static files need runserver --insecure)."""

from tests.django.settings import *  # noqa: F403

DEBUG = False
