"""Generic consumers.

The modern (Channels 4) ones live in :mod:`headrace.generic.websocket` and
:mod:`headrace.generic.http`; the Channels-1 ones are :class:`BaseConsumer` (here) and
:mod:`headrace.generic.websockets` (plural, as in Channels 1.x)."""

from headrace.generic.base import BaseConsumer

__all__ = ["BaseConsumer"]
