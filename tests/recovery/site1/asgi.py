"""``headrace tests.recovery.site1.asgi:channel_layer``: the interface server of the site."""

import os

import django

from headrace.asgi import get_channel_layer

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.recovery.site1.settings")
django.setup()
channel_layer = get_channel_layer()
