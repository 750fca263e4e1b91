"""Names shared by the whole package, in a module that imports nothing (any module may use it)."""

DEFAULT_CHANNEL_LAYER = "default"
"""The alias of the channel layer used when none is named (``CHANNEL_LAYERS["default"]``)."""
