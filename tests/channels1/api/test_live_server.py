"""ChannelLiveServerTestCase: the interface server and a worker in child processes, over IPC."""

from __future__ import annotations

import os
import uuid

import httpx
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from websockets.sync.client import connect

from headrace.test import ChannelLiveServerTestCase

ROUTING = "tests.channels1.api.consumers.channel_routing"
LAYERS = {
    "default": {
        "BACKEND": "headrace.layers.ipc.IPCChannelLayer",
        "CONFIG": {"prefix": f"c1live-{os.getpid()}-{uuid.uuid4().hex[:6]}"},
        "ROUTING": ROUTING,
    }
}


@override_settings(CHANNEL_LAYERS=LAYERS)
class LiveSiteTests(ChannelLiveServerTestCase):
    workers = 2

    def test_websocket_through_the_interface_server_and_workers(self) -> None:
        with connect(self.live_server_ws_url + "/echo/live", open_timeout=30) as socket:
            socket.send("hello")
            reply = socket.recv(timeout=30)
        self.assertEqual(reply, "/echo/live:hello:[('tag', 'live')]", self.process_logs())

    def test_views_and_static_files(self) -> None:
        with httpx.Client(base_url=self.live_server_url, timeout=30) as client:
            page = client.get("/whoami/")
            static = client.get("/static/hello.txt")
        self.assertEqual((page.status_code, page.text), (200, "anonymous |"))
        self.assertEqual(static.status_code, 200, self.process_logs())
        with open("tests/django/static/hello.txt", "rb") as source:
            self.assertEqual(static.content, source.read())


@override_settings(
    CHANNEL_LAYERS={"default": {"BACKEND": "headrace.layers.InMemoryChannelLayer", "ROUTING": []}}
)
class InMemoryRefused(ChannelLiveServerTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        with pytest.raises(ImproperlyConfigured, match="in-memory channel layer"):
            super().setUpClass()
        cls.refused = True

    @classmethod
    def tearDownClass(cls) -> None:
        pass

    def test_was_refused(self) -> None:
        self.assertTrue(self.refused)
