"""The IPC channel layer: groups and channels shared by the processes of one host, no server.

``CHANNEL_LAYERS = {"default": {"BACKEND": "headrace.layers.ipc.IPCChannelLayer"}}`` is all it
takes. See :mod:`headrace.layers.ipc.layer` (the client) and :mod:`headrace.layers.ipc.hub`
(the shared state, elected among the processes or run with ``python -m headrace.layers.ipc``).
"""

from __future__ import annotations

from headrace.layers.ipc.hub import HubHost, HubState, serve_hub
from headrace.layers.ipc.layer import IPCChannelLayer, default_path

__all__ = ["HubHost", "HubState", "IPCChannelLayer", "default_path", "serve_hub"]
