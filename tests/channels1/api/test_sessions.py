"""headrace.sessions' Channels-1 decorators, driven through ChannelTestCase and the clients."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from headrace import Channel
from headrace.sessions import (
    channel_session,
    enforce_ordering,
    http_session,
    session_for_reply_channel,
)
from headrace.test import ChannelTestCase, Client, HttpClient, WSClient, apply_routes
from tests.channels1.api import consumers
from tests.channels1.api.consumers import channel_routing


@apply_routes(channel_routing)
class ChannelSessionTests(ChannelTestCase):
    def test_channel_session_persists_per_reply_channel(self) -> None:
        client = WSClient()
        client.send_and_consume("websocket.connect", path="/room/lobby/")
        client.send_and_consume("websocket.receive", text="hi", path="/room/lobby/")
        self.assertEqual(client.receive(json=False), "lobby")
        other = WSClient()
        other.send("websocket.receive", text="hi", path="/room/x/")
        other.consume("websocket.receive")
        self.assertEqual(other.receive(json=False), "<none>")

    def test_session_key_follows_the_1x_rule(self) -> None:
        client = WSClient()
        client.send_and_consume("websocket.connect", path="/room/kitchen/")
        digest = hashlib.sha1(client.reply_channel.encode("utf-8")).hexdigest()
        session = session_for_reply_channel(client.reply_channel)
        self.assertEqual(session.session_key, "chn" + digest[:29])
        self.assertEqual(session["room"], "kitchen")

    def test_message_without_reply_channel_is_refused(self) -> None:
        Channel("no-reply").send({"path": "/"})
        message = self.get_next_message("no-reply", require=True)
        with self.assertRaisesRegex(ValueError, "No reply_channel"):
            channel_session(lambda m: None)(message)

    @override_settings(CHANNEL_SESSION_ENGINE="django.contrib.sessions.backends.cache")
    def test_channel_session_engine_setting_is_used(self) -> None:
        from django.contrib.sessions.backends.cache import SessionStore

        client = WSClient()
        client.send_and_consume("websocket.connect", path="/room/cached/")
        session = session_for_reply_channel(client.reply_channel)
        self.assertIsInstance(session, SessionStore)
        self.assertEqual(session["room"], "cached")

    @override_settings(CHANNEL_SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies")
    def test_signed_cookie_engine_is_refused(self) -> None:
        with self.assertRaisesRegex(ImproperlyConfigured, "signed-cookie"):
            session_for_reply_channel("websocket.send!abc")

    @override_settings(CHANNEL_SESSION_ENGINE="no.such.engine")
    def test_unknown_engine_names_the_setting(self) -> None:
        with self.assertRaisesRegex(ImproperlyConfigured, "CHANNEL_SESSION_ENGINE"):
            session_for_reply_channel("websocket.send!abc")


@apply_routes(channel_routing)
class HttpSessionTests(ChannelTestCase):
    def _capture(self, client: HttpClient, **send: Any) -> Any:
        seen: list[Any] = []

        @http_session
        def consumer(message: Any) -> None:
            seen.append(message.http_session)

        client.send("http-session", **send)
        consumer(self.get_next_message("http-session", require=True))
        return seen[0]

    def test_session_from_the_cookie(self) -> None:
        client = HttpClient()
        client.session["colour"] = "green"
        client.session.save()
        session = self._capture(client, path="/")
        self.assertEqual(session["colour"], "green")

    def test_session_from_the_session_key_parameter(self) -> None:
        owner = HttpClient()
        owner.session["colour"] = "blue"
        owner.session.save()
        stranger = Client()
        stranger.send(
            "http-session",
            {"path": "/", "query_string": f"session_key={owner.session.session_key}".encode()},
        )
        seen: list[Any] = []
        http_session(lambda m: seen.append(m.http_session))(
            self.get_next_message("http-session", require=True)
        )
        self.assertEqual(seen[0]["colour"], "blue")

    def test_no_cookie_means_none(self) -> None:
        self.assertIsNone(self._capture(HttpClient(), path="/"))

    def test_message_that_is_not_http_is_refused(self) -> None:
        Client().send("plain", {"value": 1})
        with self.assertRaisesRegex(ValueError, "HTTP or WebSocket message"):
            http_session(lambda m: None)(self.get_next_message("plain", require=True))

    def test_channel_and_http_session_keeps_the_http_session_for_later_messages(self) -> None:
        client = HttpClient()
        client.session["colour"] = "red"
        client.session.save()
        with apply_routes([consumers.route("websocket.receive", consumers.both_sessions)]):
            client.send_and_consume("websocket.receive", text="1", path="/")
            self.assertEqual(client.receive(json=False), "red")
            # Later messages carry no cookies: the channel session remembers the key.
            client.send("websocket.receive", {"headers": []}, text="2", path="/")
            client.consume("websocket.receive")
            self.assertEqual(client.receive(json=False), "red")


@apply_routes(channel_routing)
class EnforceOrderingTests(ChannelTestCase):
    def test_out_of_order_messages_wait_for_their_turn(self) -> None:
        client = HttpClient()
        client.send("websocket.receive", {"order": 2}, text="b", path="/ordered/")
        client.send("websocket.receive", {"order": 3}, text="c", path="/ordered/")
        client.send("websocket.receive", {"order": 1}, text="a", path="/ordered/")
        for _ in range(3):
            client.consume("websocket.receive")
        # 2 and 3 were parked; 1 (the first after the connect) ran and put them back.
        self.assertEqual(client.receive(json=False), "a")
        client.consume("websocket.receive")
        client.consume("websocket.receive")
        self.assertEqual(client.receive(json=False), "a,b")
        self.assertEqual(client.receive(json=False), "a,b,c")
        self.assertIsNone(client.receive())

    def test_the_manuals_manual_orders(self) -> None:
        client = HttpClient()
        for order, text in ((0, "1"), (2, "2"), (1, "3")):
            client.send("websocket.receive", {"order": order}, text=text, path="/ordered/")
        for _ in range(4):
            client.consume("websocket.receive")
        replies = [client.receive(json=False) for _ in range(3)]
        self.assertEqual(replies, ["1", "1,3", "1,3,2"])

    def test_a_receive_waits_for_order_zero_on_the_connect_channel(self) -> None:
        client = HttpClient()
        with apply_routes([consumers.route("websocket.connect", consumers.ordered_echo)]):
            client.send("websocket.connect", {"order": 1}, text="late", path="/")
            client.consume("websocket.connect", check_accept=False)
            self.assertIsNone(client.receive())
            client.send("websocket.connect", {"order": 0}, text="first", path="/")
            client.consume("websocket.connect", check_accept=False)
            client.consume("websocket.connect", check_accept=False)
        self.assertEqual(client.receive(json=False), "first")
        self.assertEqual(client.receive(json=False), "first,late")

    def test_ordered_client_numbers_the_messages(self) -> None:
        client = HttpClient(ordered=True)
        for text in ("x", "y", "z"):
            client.send_and_consume("websocket.receive", text=text, path="/ordered/")
        self.assertEqual([client.receive(json=False) for _ in range(3)], ["x", "x,y", "x,y,z"])
        with self.assertRaisesRegex(ValueError, "order"):
            client.send("websocket.receive", {"order": 7}, text="w", path="/ordered/")

    def test_a_message_without_order_is_refused(self) -> None:
        client = HttpClient()
        client.send("websocket.receive", text="no order", path="/ordered/")
        with self.assertRaisesRegex(ValueError, "'order'"):
            client.consume("websocket.receive")


def test_slight_ordering_is_refused() -> None:
    with pytest.raises(ValueError, match="slight"):
        enforce_ordering(lambda message: None, slight=True)
    with pytest.raises(ValueError, match="slight"):
        enforce_ordering(slight=True)
    assert callable(enforce_ordering()(lambda message: None))


@apply_routes(channel_routing)
class ConsumeLaterTests(ChannelTestCase):
    def test_consume_later_requeues_and_discards_the_held_sends(self) -> None:
        consumers.ATTEMPTS.clear()
        client = Client()
        client.send_and_consume("later", {"n": 1})
        self.assertIsNone(client.receive())
        client.consume("later")
        self.assertEqual(consumers.ATTEMPTS, [0, 1])
        self.assertEqual(client.receive(), {"text": "held, then discarded"})
        self.assertEqual(client.receive(), {"text": "done after 1"})

    def test_a_message_put_back_too_often_is_dropped(self) -> None:
        client = Client()
        client.send("never", {"n": 1})
        for _ in range(10):
            client.consume("never")
        message = self.get_next_message("never", require=True)
        self.assertEqual(message["__retries__"], 10)
        Channel("never").send(message.content)
        with self.assertLogs("headrace.worker", "WARNING") as logs:
            client.consume("never")
        self.assertIn("later 10 times", logs.output[0])
        self.assertIsNone(self.get_next_message("never"))
