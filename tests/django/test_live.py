"""ChannelsLiveServerTestCase: HTTP, static files and WebSocket against a child-process server."""

from __future__ import annotations

import json
import socket

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from headrace.testing import ChannelsLiveServerTestCase


class LiveServerTests(ChannelsLiveServerTestCase):
    def hello(self, origin: str, cookie: str | None = None) -> dict[str, str]:
        headers = {"Cookie": cookie} if cookie else None
        with connect(
            self.live_server_ws_url + "/ws/",
            origin=origin,  # type: ignore[arg-type]
            additional_headers=headers,
            open_timeout=10,
        ) as socket:
            payload: dict[str, str] = json.loads(socket.recv(timeout=10))
            return payload

    def test_urls_name_the_live_server(self) -> None:
        assert self.live_server_url.startswith("http://localhost:")
        assert self.live_server_ws_url == self.live_server_url.replace("http://", "ws://")

    def test_localhost_is_served_on_every_loopback_family(self) -> None:
        families = {listener.family for listener in self._listeners}
        assert socket.AF_INET in families
        addresses = ["127.0.0.1"] + (["[::1]"] if socket.AF_INET6 in families else [])
        for address in addresses:
            page = httpx.get(
                f"http://{address}:{self._port}/whoami/",
                headers={"Host": f"localhost:{self._port}"},
                timeout=10,
            )
            assert page.text.startswith("anonymous"), address

    def test_http_and_static_files(self) -> None:
        with httpx.Client(base_url=self.live_server_url, timeout=10) as client:
            assert client.get("/whoami/").text.startswith("anonymous")
            assert client.get("/static/hello.txt").text == "headrace static file\n"

    def test_websocket_sees_data_created_by_the_test(self) -> None:
        get_user_model().objects.create_user(username="live-alice", password="live-pass")
        with httpx.Client(base_url=self.live_server_url, timeout=10) as client:
            login = client.post("/login/", data={"username": "live-alice", "password": "live-pass"})
            assert login.status_code == 200
            session = client.cookies["sessionid"]
        hello = self.hello(self.live_server_url, cookie=f"sessionid={session}")
        assert hello["user"] == "live-alice"

    def test_foreign_origin_is_refused(self) -> None:
        with pytest.raises(InvalidStatus) as refused:
            self.hello("http://evil.test")
        assert refused.value.response.status_code == 403


def test_in_memory_sqlite_is_a_clear_error() -> None:
    class InMemoryDatabaseCase(ChannelsLiveServerTestCase):
        pass

    settings_dict = connections["default"].settings_dict
    saved = settings_dict["NAME"]
    settings_dict["NAME"] = ":memory:"
    try:
        with pytest.raises(ImproperlyConfigured, match="in-memory SQLite"):
            InMemoryDatabaseCase.setUpClass()
    finally:
        settings_dict["NAME"] = saved
