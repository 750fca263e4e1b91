"""A framework application (no Django) that configures the per-process in-memory layer:
``--workers 2`` must warn that its groups stay inside each worker."""

from __future__ import annotations

from headrace.layers import channel_layers
from tests.workers.apps import pid_app

channel_layers.configure({"default": {"BACKEND": "headrace.layers.InMemoryChannelLayer"}})

application = pid_app
