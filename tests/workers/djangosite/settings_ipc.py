"""The same project with the IPC layer configured: ``--workers 2`` stays quiet."""

from tests.workers.djangosite.settings import *  # noqa: F403

CHANNEL_LAYERS = {"default": {"BACKEND": "headrace.layers.ipc.IPCChannelLayer"}}
