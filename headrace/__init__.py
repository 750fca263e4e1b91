"""headrace: an ASGI server and a Channels-compatible realtime framework."""

__version__ = "0.1.0"

DEFAULT_CHANNEL_LAYER = "default"
