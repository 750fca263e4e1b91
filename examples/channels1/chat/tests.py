"""The example's own tests, written as the manual's "Testing Consumers" section shows:
``python examples/channels1/manage.py test examples.channels1.chat``."""

from __future__ import annotations

import json

from django.contrib.auth import get_user_model

from headrace import Channel, Group
from headrace.routing import route
from headrace.test import ChannelTestCase, HttpClient, WSClient, apply_routes

from . import consumers
from .models import ChatMessage


class GettingStartedTests(ChannelTestCase):
    def test_echo(self) -> None:
        client = WSClient()
        client.send_and_consume("websocket.receive", text="hello world", path="/echo/")
        self.assertEqual(client.receive(json=False), "hello world")

    def test_group_chat(self) -> None:
        alice, bob = WSClient(), WSClient()
        alice.send_and_consume("websocket.connect", path="/chat/")
        bob.send_and_consume("websocket.connect", path="/chat/")
        alice.send_and_consume("websocket.receive", text="hi", path="/chat/")
        self.assertEqual(alice.receive(json=False), "[user] hi")
        self.assertEqual(bob.receive(json=False), "[user] hi")
        bob.send_and_consume("websocket.disconnect", {"code": 1000}, path="/chat/")
        alice.send_and_consume("websocket.receive", text="alone", path="/chat/")
        self.assertIsNone(bob.receive())


class AuthenticationTests(ChannelTestCase):
    def test_users_meet_by_first_letter(self) -> None:
        users = [
            get_user_model().objects.create_user(name, password="pw-12345")
            for name in ("ann", "abe", "bo")
        ]
        clients = []
        for user in users:
            client = WSClient()
            client.force_login(user)
            client.headers["Origin"] = "http://localhost"
            client.send_and_consume("websocket.connect", path="/letters/")
            clients.append(client)
        clients[0].send("websocket.receive", {"headers": []}, text="hello a", path="/letters/")
        clients[0].consume("websocket.receive")
        self.assertEqual(clients[1].receive(json=False), "ann: hello a")
        self.assertIsNone(clients[2].receive())

    def test_foreign_origin_is_denied(self) -> None:
        client = WSClient()
        client.headers["Origin"] = "http://evil.example"
        client.send("websocket.connect", path="/letters/")
        with self.assertRaisesRegex(AssertionError, "rejected"):
            client.consume("websocket.connect")


class ModelsTests(ChannelTestCase):
    def test_messages_are_saved_then_broadcast(self) -> None:
        client = WSClient()
        client.send_and_consume("websocket.connect", path="/rooms/kitchen/")
        client.send_and_consume("websocket.receive", text="soup", path="/rooms/kitchen/")
        client.consume("chat-messages")
        self.assertEqual(client.receive(), {"room": "kitchen", "message": "soup", "user": ""})
        self.assertEqual(
            list(ChatMessage.objects.values_list("room", "message")), [("kitchen", "soup")]
        )

    def test_a_bot_can_post_from_anywhere(self) -> None:
        watcher = WSClient()
        watcher.join_group("room-bots")
        Channel("chat-messages").send({"room": "bots", "message": "beep"})
        consumers.msg_consumer(self.get_next_message("chat-messages", require=True))
        self.assertEqual(watcher.receive()["message"], "beep")


class OrderingTests(ChannelTestCase):
    def test_enforce_ordering(self) -> None:
        client = HttpClient(ordered=True)
        client.send_and_consume("websocket.connect", path="/ordered/")
        client.send("websocket.receive", text="one", path="/ordered/")
        client.send("websocket.receive", text="two", path="/ordered/")
        client.consume("websocket.receive")
        client.consume("websocket.receive")
        self.assertEqual(client.receive(json=False), "1: one")
        self.assertEqual(client.receive(json=False), "2: two")


class GenericTests(ChannelTestCase):
    def test_echo_server_and_its_group(self) -> None:
        client = WSClient(ordered=True)
        client.send_and_consume("websocket.connect", path="/generic/echo/")
        client.send_and_consume("websocket.receive", text="ping", path="/generic/echo/")
        self.assertEqual(client.receive(json=False), "ping")
        Group("generic").send({"text": "all"})
        self.assertEqual(client.receive(json=False), "all")

    def test_json_with_http_user(self) -> None:
        user = get_user_model().objects.create_user("jo", password="pw-12345")
        client = WSClient()
        client.login(username="jo", password="pw-12345")
        client.send_and_consume("websocket.connect", path="/generic/json/")
        client.send_and_consume("websocket.receive", text={"a": 1}, path="/generic/json/")
        self.assertEqual(client.receive(), {"echo": {"a": 1}, "user": user.username})

    def test_multiplexing(self) -> None:
        client = WSClient()
        client.send_and_consume("websocket.connect", path="/generic/multiplex/")
        self.assertEqual(
            client.receive(), {"stream": "echo", "payload": {"status": "I just connected!"}}
        )
        client.send_and_consume(
            "websocket.receive",
            text={"stream": "other", "payload": {"x": "y"}},
            path="/generic/multiplex/",
        )
        self.assertEqual(
            client.receive(),
            {"stream": "other", "payload": {"length": len(json.dumps({"x": "y"}))}},
        )


class RoutingTests(ChannelTestCase):
    def test_post_poll_goes_to_the_consumer_and_get_to_the_views(self) -> None:
        client = HttpClient()
        client.headers["Host"] = "testserver"
        client.send_and_consume("http.request", {"method": "POST", "body": b"12345"}, path="/poll/")
        self.assertEqual(client.receive()["content"], b"polled 5 bytes")
        client.send_and_consume("http.request", {"method": "GET"}, path="/poll/")
        self.assertEqual(client.receive()["status"], 404)

    def test_apply_routes(self) -> None:
        client = WSClient()
        with apply_routes([route("websocket.connect", consumers.ws_add, path="^/new")]):
            client.send_and_consume("websocket.connect", path="/new")
        self.assertIsNone(client.receive())
