"""``WebsocketCommunicator`` under its Channels module path, ``channels.testing.websocket``.

The implementation is in :mod:`headrace.testing.communicators`.
"""

from __future__ import annotations

from headrace.testing.communicators import WebsocketCommunicator

__all__ = ["WebsocketCommunicator"]
