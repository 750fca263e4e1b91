"""headrace: an ASGI server and a Channels-compatible realtime framework.

The Channels-1 names (``Channel``, ``Group``, ``channel_layers``) are imported on first use, so
``import headrace`` (the server does it) loads no framework code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from headrace.constants import DEFAULT_CHANNEL_LAYER

if TYPE_CHECKING:
    from headrace.asgi import channel_layers
    from headrace.channel import Channel, Group

__all__ = ["DEFAULT_CHANNEL_LAYER", "Channel", "Group", "__version__", "channel_layers"]

_LAZY = {
    "Channel": "headrace.channel",
    "Group": "headrace.channel",
    "channel_layers": "headrace.asgi",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'headrace' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
