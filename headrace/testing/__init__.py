"""Test helpers: communicators for driving applications, and (lazily) the live-server case.

``ChannelsLiveServerTestCase`` lives in ``headrace.testing.live`` and needs Django's live-server
machinery; it is imported only when first accessed, so ``import headrace.testing`` stays light.
The layer conformance suite is ``headrace.testing.layers``, the history and presence suite is
``headrace.testing.history``, and the Channels-1 (ASGI-1) view's suite is
``headrace.testing.asgi_layers`` (all import pytest).
"""

from __future__ import annotations

import importlib
from typing import Any

from headrace.testing.communicators import (
    ApplicationCommunicator,
    HttpCommunicator,
    WebsocketCommunicator,
)

__all__ = [
    "ApplicationCommunicator",
    "ChannelsLiveServerTestCase",
    "HttpCommunicator",
    "WebsocketCommunicator",
]

_LAZY = {"ChannelsLiveServerTestCase": "headrace.testing.live"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'headrace.testing' has no attribute {name!r}")
