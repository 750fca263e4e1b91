"""The metrics app served by ``tests/ipc/test_statistics.py``: an IPC layer at ``$HR_STATS_IPC``."""

from __future__ import annotations

import os

from headrace.layers.ipc import IPCChannelLayer
from headrace.layers.metrics import metrics_app

app = metrics_app(
    "default", layer=IPCChannelLayer(path=os.environ["HR_STATS_IPC"]), channels=["stats.fixed"]
)
