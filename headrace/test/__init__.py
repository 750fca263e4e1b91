"""Channels-1 test tools (``channels.test`` of 1.x): ``ChannelTestCase``, the clients,
``apply_routes`` and ``ChannelLiveServerTestCase``. The modern ``channels.testing``
equivalents are :mod:`headrace.testing`."""

from headrace.test.base import ChannelTestCase, ChannelTestCaseMixin, apply_routes
from headrace.test.http import Client, HttpClient, WSClient
from headrace.test.live import ChannelLiveServerTestCase

__all__ = [
    "ChannelLiveServerTestCase",
    "ChannelTestCase",
    "ChannelTestCaseMixin",
    "Client",
    "HttpClient",
    "WSClient",
    "apply_routes",
]
