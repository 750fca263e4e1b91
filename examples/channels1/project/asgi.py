"""The 1.x ``asgi.py``: ``headrace examples.channels1.project.asgi:channel_layer`` serves it."""

import os

import django

from headrace.asgi import get_channel_layer

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.channels1.project.settings")
django.setup()
channel_layer = get_channel_layer()
