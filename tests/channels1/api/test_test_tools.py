"""headrace.test itself: the captive layers, get_next_message, the clients, apply_routes."""

from __future__ import annotations

from typing import Any

from headrace import Channel, Group
from headrace.asgi import channel_layers
from headrace.exceptions import DenyConnection
from headrace.routing import route
from headrace.test import ChannelTestCase, Client, HttpClient, WSClient, apply_routes
from tests.channels1.api import consumers
from tests.channels1.api.consumers import channel_routing


def deny(message: Any) -> None:
    raise DenyConnection()


class CaptiveLayerTests(ChannelTestCase):
    test_channel_aliases = ["default", "second"]

    def test_manual_square_example(self) -> None:
        Channel("input").send({"value": 33})
        consumers.square(self.get_next_message("input", require=True))
        result = self.get_next_message("result", require=True)
        self.assertEqual(result["value"], 1089)

    def test_groups_and_a_fresh_layer_per_test_1(self) -> None:
        Group("test-group").add("test-channel")
        Group("test-group").send({"value": 42})
        self.assertEqual(self.get_next_message("test-channel", require=True)["value"], 42)
        Channel("leftover").send({"n": 1})

    def test_groups_and_a_fresh_layer_per_test_2(self) -> None:
        self.assertIsNone(self.get_next_message("leftover"))

    def test_require_fails_the_test_with_the_channel_name(self) -> None:
        with self.assertRaisesRegex(AssertionError, "'empty'"):
            self.get_next_message("empty", require=True, timeout=0.01)

    def test_a_second_alias_is_captive_too(self) -> None:
        Channel("there", alias="second").send({"n": 2})
        self.assertIsNone(self.get_next_message("there"))
        self.assertEqual(self.get_next_message("there", alias="second", require=True)["n"], 2)
        client = Client(alias="second")
        client.send("there", {"n": 3})
        self.assertEqual(client.get_next_message("there", require=True)["n"], 3)

    def test_the_layer_is_swapped_back_afterwards(self) -> None:
        captive = channel_layers["default"]
        self.restore_channel_layers()
        self.assertIsNot(channel_layers.wrappers.get("default"), captive)
        self.setup_channel_layers()


@apply_routes(channel_routing)
class ClientTests(ChannelTestCase):
    def test_send_and_consume_routes_like_the_worker(self) -> None:
        client = Client()
        client.send_and_consume("input", {"value": 4})
        self.assertEqual(self.get_next_message("result", require=True)["value"], 16)

    def test_no_message_and_no_route_fail_clearly(self) -> None:
        client = Client()
        with self.assertRaisesRegex(AssertionError, "'nothing-here'"):
            client.consume("nothing-here")
        self.assertIsNone(client.consume("nothing-here", fail_on_none=False))
        client.send("unrouted", {"a": 1})
        with self.assertRaisesRegex(AssertionError, "No route"):
            client.consume("unrouted")

    def test_deny_connection_closes(self) -> None:
        client = WSClient()
        with apply_routes([route("websocket.connect", deny)]):
            client.send("websocket.connect", path="/")
            with self.assertRaisesRegex(AssertionError, "rejected"):
                client.consume("websocket.connect")

    def test_unrouted_http_request_goes_to_the_django_views(self) -> None:
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.create_user(username="viewer", password="pw-123456")
        client = HttpClient()
        client.force_login(user)
        client.headers["Host"] = "testserver"
        client.send_and_consume("http.request", {"method": "GET"}, path="/whoami/")
        reply = client.receive()
        self.assertEqual(reply["status"], 200)
        self.assertEqual(reply["content"], b"viewer |")

    def test_apply_routes_restores_the_routing(self) -> None:
        client = Client()
        with apply_routes([route("input", lambda m: m.reply_channel.send({"text": "inner"}))]):
            client.send_and_consume("input", {"value": 2})
        self.assertEqual(client.receive(), {"text": "inner"})
        client.send_and_consume("input", {"value": 2})
        self.assertEqual(self.get_next_message("result", require=True)["value"], 4)

    def test_cookies_headers_and_query_string(self) -> None:
        seen: list[dict[str, Any]] = []
        client = HttpClient()
        client.set_cookie("flavour", "oat meal")
        client.headers["X-Thing"] = "1"
        with apply_routes([route("peek", lambda m: seen.append(m.content))]):
            client.send_and_consume("peek", path="/p/?a=1")
        headers = dict(seen[0]["headers"])
        self.assertEqual(headers[b"x-thing"], b"1")
        self.assertEqual(headers[b"cookie"], b"flavour=oat%20meal")
        self.assertEqual(seen[0]["path"], "/p/")
        self.assertEqual(seen[0]["query_string"], b"a=1")
        self.assertEqual(client.cookies, {"flavour": "oat meal"})

    def test_receive_json_or_text(self) -> None:
        client = WSClient()
        Channel(client.reply_channel).send({"text": '{"a": 1}'})
        Channel(client.reply_channel).send({"text": '{"a": 1}'})
        Channel(client.reply_channel).send({"close": True})
        self.assertEqual(client.receive(), {"a": 1})
        self.assertEqual(client.receive(json=False), '{"a": 1}')
        self.assertEqual(client.receive(), {"close": True})
        self.assertIsNone(client.receive())
