"""A Channels-1 project's ``asgi.py`` without Django: ``CHANNEL_LAYERS`` given to the layer
manager, ``channel_layer`` the ASGI-1 view. The test server runs
``headrace tests.interface.project_asgi:channel_layer``, as a site runs
``headrace my_project.asgi:channel_layer``."""

from __future__ import annotations

from typing import Any

from headrace.asgi import get_channel_layer
from headrace.layers import channel_layers as backends
from tests.interface.support import REDIS, spec_from_environment


def layer_settings(spec: dict[str, Any]) -> dict[str, Any]:
    """``CHANNEL_LAYERS`` for a test spec, as a settings module would write it."""
    capacity = spec.get("channel_capacity", {})
    if spec["kind"] == "ipc":
        backend = "headrace.layers.ipc.IPCChannelLayer"
        config: dict[str, Any] = {"path": spec["path"], "channel_capacity": capacity}
    else:
        backend = "headrace.layers.redis.RedisChannelLayer"
        config = {"hosts": [REDIS], "prefix": spec["prefix"], "channel_capacity": capacity}
    return {"default": {"BACKEND": backend, "CONFIG": config, "ROUTING": []}}


backends.configure(layer_settings(spec_from_environment()))
channel_layer = get_channel_layer()
