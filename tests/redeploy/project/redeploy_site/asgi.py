"""``headrace redeploy_site.asgi:channel_layer``: the interface server's target."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "redeploy_site.settings")

from headrace.asgi import get_channel_layer

channel_layer = get_channel_layer()
