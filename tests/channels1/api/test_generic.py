"""The Channels-1 generic consumers through WSClient and ChannelTestCase."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model

from headrace import Channel, Group
from headrace.generic import BaseConsumer
from headrace.generic.websockets import (
    JsonWebsocketConsumer,
    SendNotAvailableOnDemultiplexer,
    WebsocketConsumer,
    WebsocketDemultiplexer,
    WebsocketMultiplexer,
)
from headrace.routing import Router
from headrace.test import ChannelTestCase, Client, WSClient, apply_routes
from tests.channels1.api import consumers
from tests.channels1.api.consumers import channel_routing


@apply_routes(channel_routing)
class BaseConsumerTests(ChannelTestCase):
    def test_method_mapping_dispatches_by_channel_with_kwargs(self) -> None:
        client = Client()
        client.send_and_consume("mapped.a", {"path": "/mapped/abc/"})
        self.assertEqual(client.receive(), {"text": "a [('slug', 'abc')]"})
        client.send_and_consume("mapped.b", {"path": "/mapped/x/"})
        self.assertEqual(client.receive(), {"text": "b True"})

    def test_channel_names_come_from_the_mapping(self) -> None:
        self.assertEqual(consumers.Mapped.channel_names(), {"mapped.a", "mapped.b"})
        router = Router([consumers.Mapped.as_route()])
        self.assertEqual(router.channels, {"mapped.a", "mapped.b"})

    def test_channel_session_flag(self) -> None:
        client = Client()
        with apply_routes([consumers.SessionMapped.as_route()]):
            for expected in ("1", "2"):
                client.send_and_consume("counted", {})
                self.assertEqual(client.receive(), {"text": expected})

    def test_as_route_attrs_make_a_configured_subclass(self) -> None:
        routes = [
            consumers.Prefixed.as_route(path=r"^/one/", attrs={"group": "one"}),
            consumers.Prefixed.as_route(path=r"^/two/", attrs={"group": "two", "prefix": "pub"}),
        ]
        with apply_routes(routes):
            first, second = WSClient(), WSClient()
            first.send_and_consume("websocket.connect", path="/one/")
            second.send_and_consume("websocket.connect", path="/two/")
        Group("pre-one").send({"text": "1"})
        Group("pub-two").send({"text": "2"})
        self.assertEqual(first.receive(json=False), "1")
        self.assertEqual(second.receive(json=False), "2")
        self.assertIsNone(first.receive())
        with pytest.raises(TypeError, match="attrs"):
            consumers.Prefixed.as_route(attrs=["group"])  # type: ignore[arg-type]

    def test_a_channel_missing_from_the_mapping_is_named(self) -> None:
        Channel("elsewhere").send({"reply_channel": "test.reply!x"})
        message = self.get_next_message("elsewhere", require=True)
        with pytest.raises(ValueError, match="'elsewhere'"):
            consumers.Mapped(message)


@apply_routes(channel_routing)
class WebsocketConsumerTests(ChannelTestCase):
    def test_connect_accepts_and_joins_groups(self) -> None:
        client = WSClient()
        client.send_and_consume("websocket.connect", path="/echo/t")
        WebsocketConsumer.group_send("echoes", text="to all")
        self.assertEqual(client.receive(json=False), "to all")
        client.send_and_consume("websocket.disconnect", {"code": 1000}, path="/echo/t")
        WebsocketConsumer.group_send("echoes", text="gone")
        self.assertIsNone(client.receive())

    def test_receive_send_path_and_kwargs(self) -> None:
        client = WSClient()
        client.send_and_consume("websocket.receive", text="hello", path="/echo/abc")
        self.assertEqual(client.receive(json=False), "/echo/abc:hello:[('tag', 'abc')]")
        client.send_and_consume("websocket.receive", {"bytes": b"\x00\x01"}, path="/echo/")
        self.assertEqual(client.receive(), {"bytes": b"\x00\x01"})

    def test_close_with_a_code(self) -> None:
        client = WSClient()
        client.send_and_consume("websocket.receive", text="close", path="/echo/")
        self.assertEqual(client.receive(), {"close": 4001})

    def test_send_needs_something(self) -> None:
        Client().send("websocket.receive", {"path": "/echo/", "text": "x"})
        message = self.get_next_message("websocket.receive", require=True)
        consumer = consumers.Echo(message)
        with pytest.raises(ValueError, match="text or bytes"):
            consumer.send()

    def test_json_consumer_with_http_user(self) -> None:
        user = get_user_model().objects.create_user(username="gina", password="pw-1234567")
        with apply_routes([consumers.HttpUserEcho.as_route()]):
            client = WSClient()
            client.force_login(user)
            client.send_and_consume("websocket.connect", path="/")
            client.send("websocket.receive", {"headers": []}, text={"n": [1, 2]}, path="/")
            client.consume("websocket.receive")
        self.assertEqual(client.receive(), {"user": "gina", "got": {"n": [1, 2]}})

    def test_json_consumer_refuses_bad_json_and_binary_frames(self) -> None:
        with apply_routes([consumers.HttpUserEcho.as_route()]):
            client = WSClient()
            client.send("websocket.receive", text="{not json", path="/")
            with pytest.raises(ValueError, match="not JSON"):
                client.consume("websocket.receive")
            client.send("websocket.receive", {"bytes": b"x"}, path="/")
            with pytest.raises(ValueError, match="binary"):
                client.consume("websocket.receive")

    def test_json_group_send(self) -> None:
        client = WSClient()
        client.join_group("jsons")
        JsonWebsocketConsumer.group_send("jsons", {"a": 1}, close=True)
        self.assertEqual(client.receive(json=False), json.dumps({"a": 1}))

    def test_strict_ordering(self) -> None:
        with apply_routes([consumers.Ordered.as_route()]):
            client = WSClient()
            client.send("websocket.receive", {"order": 2}, text="second", path="/")
            client.send("websocket.receive", {"order": 1}, text="first", path="/")
            client.consume("websocket.receive")
            client.consume("websocket.receive")
            client.consume("websocket.receive")
        self.assertEqual(client.receive(json=False), "#1:first")
        self.assertEqual(client.receive(json=False), "#2:second")

    def test_slight_ordering_flag_is_refused(self) -> None:
        class Slight(WebsocketConsumer):
            slight_ordering = True

        Client().send("websocket.receive", {"path": "/", "text": "x"})
        with pytest.raises(ValueError, match="slight_ordering"):
            Slight(self.get_next_message("websocket.receive", require=True))

    def test_the_manuals_rooms_example(self) -> None:
        user = get_user_model().objects.create_user(username="test", password="123456")
        client = WSClient()
        client.login(username="test", password="123456")
        client.send_and_consume("websocket.connect", path="/rooms/")
        self.assertIsNone(client.receive())
        Group(consumers.Rooms.groups[0]).send({"text": "ok"}, immediately=True)
        self.assertEqual(client.receive(json=False), "ok")
        client.session["rooms"] = ["test", "1"]
        client.session.save()
        client.send_and_consume("websocket.receive", text={"message": "hey"}, path="/rooms/")
        self.assertEqual(client.receive(), {"rooms": ["test", "1"]})
        received = self.get_next_message("rooms_receive", require=True)
        self.assertEqual(received.content, {"user": user.id, "message": "hey"})
        self.assertIsNone(client.receive())


@apply_routes(channel_routing)
class DemultiplexerTests(ChannelTestCase):
    def test_connect_receive_disconnect_per_stream(self) -> None:
        client = WSClient()
        client.send_and_consume("websocket.connect", path="/multi/")
        hellos = [client.receive(), client.receive()]
        self.assertEqual(sorted(h["stream"] for h in hellos), ["echo", "other"])
        self.assertEqual(hellos[0]["payload"], {"status": "I just connected!"})
        client.send_and_consume(
            "websocket.receive", text={"stream": "echo", "payload": {"x": 1}}, path="/multi/"
        )
        self.assertEqual(
            client.receive(), {"stream": "echo", "payload": {"original_message": {"x": 1}}}
        )
        client.send_and_consume("websocket.disconnect", {"code": 1000}, path="/multi/")
        closed = {self.get_next_message("stream-closed", require=True)["stream"] for _ in "ab"}
        self.assertEqual(closed, {"echo", "other"})

    def test_bad_frames_raise_the_1x_errors(self) -> None:
        client = WSClient()
        for frame, error in (
            ({"payload": {}}, "no stream/payload key"),
            ({"stream": "echo"}, "no stream/payload key"),
            ({"stream": "echo", "payload": [1]}, "payload is not a dict"),
            ({"stream": "nope", "payload": {}}, "not mapped"),
        ):
            client.send("websocket.receive", text=frame, path="/multi/")
            with pytest.raises(ValueError, match=error):
                client.consume("websocket.receive")
        self.assertIsNone(client.receive())

    def test_demultiplexer_cannot_send(self) -> None:
        Client().send("websocket.receive", {"path": "/", "text": "{}"})
        message = self.get_next_message("websocket.receive", require=True)
        with pytest.raises(SendNotAvailableOnDemultiplexer):
            WebsocketDemultiplexer.group_send("g", "s", {})
        demux = WebsocketDemultiplexer.__new__(WebsocketDemultiplexer)
        demux.message = message
        with pytest.raises(SendNotAvailableOnDemultiplexer):
            demux.send({"a": 1})

    def test_multiplexer_encode_and_group_send(self) -> None:
        self.assertEqual(
            WebsocketDemultiplexer.encode("s", {"a": 1}),
            {"text": json.dumps({"stream": "s", "payload": {"a": 1}})},
        )
        client = WSClient()
        client.join_group("streams")
        WebsocketMultiplexer.group_send("streams", "s", {"b": 2}, close=True)
        reply = client.receive(json=False)
        self.assertEqual(json.loads(reply), {"stream": "s", "payload": {"b": 2}})


def test_base_consumer_is_importable_from_headrace_generic() -> None:
    assert issubclass(WebsocketConsumer, BaseConsumer)
