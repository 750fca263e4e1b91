"""The interface server's target in :class:`headrace.test.ChannelLiveServerTestCase`:
``python -m headrace ... headrace.test.live_target:channel_layer`` (in a child process)."""

import django

from headrace.asgi import get_channel_layer
from headrace.test.live import apply_live_settings

_values = apply_live_settings()
django.setup()
channel_layer = get_channel_layer(_values["ALIAS"])
