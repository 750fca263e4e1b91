"""``HttpCommunicator`` under its Channels module path, ``channels.testing.http``.

The implementation is in :mod:`headrace.testing.communicators`.
"""

from __future__ import annotations

from headrace.testing.communicators import HttpCommunicator

__all__ = ["HttpCommunicator"]
