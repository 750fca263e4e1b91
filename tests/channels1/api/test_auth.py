"""headrace.auth's Channels-1 decorators: users from the HTTP and the channel session."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore

from headrace.auth import transfer_user
from headrace.routing import route
from headrace.test import ChannelTestCase, HttpClient, WSClient, apply_routes
from tests.channels1.api import consumers
from tests.channels1.api.consumers import channel_routing


def make_user(username: str, password: str = "secret-pass") -> Any:
    return get_user_model().objects.create_user(username=username, password=password)


@apply_routes(channel_routing)
class UserFromHttpTests(ChannelTestCase):
    def test_login_carries_over_to_the_channel_session(self) -> None:
        make_user("alice")
        client = WSClient()
        self.assertTrue(client.login(username="alice", password="secret-pass"))
        client.send_and_consume("websocket.connect", path="/user/")
        # Messages after the connect have no cookies: the channel session has the user.
        client.send("websocket.receive", {"headers": []}, text="who", path="/user/")
        client.consume("websocket.receive")
        self.assertEqual(client.receive(json=False), "alice")

    def test_connect_joins_the_users_group(self) -> None:
        user = make_user("bob")
        client = WSClient()
        client.force_login(user)
        client.send_and_consume("websocket.connect", path="/user/")
        from headrace import Group

        Group("user-bob").send({"text": "for bob"})
        self.assertEqual(client.receive(json=False), "for bob")

    def test_wrong_password_does_not_log_in(self) -> None:
        make_user("carol")
        client = WSClient()
        self.assertFalse(client.login(username="carol", password="wrong"))
        client.send_and_consume("websocket.connect", path="/user/")
        client.send_and_consume("websocket.receive", text="who", path="/user/")
        self.assertEqual(client.receive(json=False), "anonymous")

    def test_http_session_user(self) -> None:
        make_user("dave")
        client = HttpClient()
        with apply_routes([route("http.poll", consumers.http_user_view)]):
            client.send_and_consume("http.poll", path="/")
            self.assertEqual(client.receive(json=False), "anonymous|False")
            client.login(username="dave", password="secret-pass")
            client.send_and_consume("http.poll", path="/")
            self.assertEqual(client.receive(json=False), "dave|True")

    def test_channel_and_http_session_user_from_http(self) -> None:
        make_user("erin")
        client = HttpClient()
        client.login(username="erin", password="secret-pass")
        with apply_routes([route("websocket.connect", consumers.both_with_user)]):
            client.send_and_consume("websocket.connect", path="/")
            self.assertEqual(client.receive(json=False), "erin")

    def test_a_password_change_logs_the_channel_session_out(self) -> None:
        user = make_user("frank")
        client = WSClient()
        client.force_login(user)
        client.send_and_consume("websocket.connect", path="/user/")
        user.set_password("changed")
        user.save()
        client.send("websocket.receive", {"headers": []}, text="who", path="/user/")
        client.consume("websocket.receive")
        self.assertEqual(client.receive(json=False), "anonymous")


class TransferUserTests(ChannelTestCase):
    def test_transfer_user_copies_the_login_keys_only(self) -> None:
        source = SessionStore()
        source.update(
            {"_auth_user_id": "7", "_auth_user_backend": "b", "_auth_user_hash": "h", "x": 1}
        )
        target = SessionStore()
        transfer_user(source, target)
        self.assertEqual(
            dict(target.items()),
            {"_auth_user_id": "7", "_auth_user_backend": "b", "_auth_user_hash": "h"},
        )
