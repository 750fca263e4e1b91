"""``daphne benchproj.asgi:channel_layer`` / ``headrace benchproj.asgi:channel_layer``."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchproj.settings")

from benchproj.stack import STACK

if STACK == "channels":
    from channels.asgi import get_channel_layer
else:
    from headrace.asgi import get_channel_layer

channel_layer = get_channel_layer()
