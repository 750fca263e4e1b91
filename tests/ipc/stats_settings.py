"""Django settings for ``manage.py layerstats`` in ``tests/ipc/test_statistics.py``."""

from __future__ import annotations

import os

SECRET_KEY = "ipc-statistics-tests"
INSTALLED_APPS = ["headrace"]
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "headrace.layers.ipc.IPCChannelLayer",
        "CONFIG": {"path": os.environ["HR_STATS_IPC"], "capacity": 2},
    },
    "plain": {"BACKEND": "tests.ipc.stats_settings.NoStatisticsLayer"},
}
USE_TZ = True


class NoStatisticsLayer:
    """A backend without the statistics extension (what a third-party layer may be)."""

    extensions = ["groups"]

    async def close(self) -> None:
        """Nothing to release."""
