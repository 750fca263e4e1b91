"""``ApplicationCommunicator`` under its Channels module path, ``channels.testing.application``.

The implementation is in :mod:`headrace.testing.communicators`.
"""

from __future__ import annotations

from headrace.testing.communicators import ApplicationCommunicator

__all__ = ["ApplicationCommunicator"]
