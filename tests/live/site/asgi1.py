"""The 1.x ``asgi.py``: ``python -m headrace tests.live.site.asgi1:channel_layer`` serves it."""

import os

from headrace.asgi import get_channel_layer

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.live.site.settings")
channel_layer = get_channel_layer()
