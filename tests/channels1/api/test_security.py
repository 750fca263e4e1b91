"""headrace.security.websockets: allowed_hosts_only and allowed_origins on connect consumers."""

from __future__ import annotations

from typing import Any

from django.test import override_settings

from headrace.routing import route
from headrace.security.websockets import (
    AllowedHostsOnlyOriginValidator,
    BaseOriginValidator,
    allowed_hosts_only,
    allowed_origins,
)
from headrace.test import ChannelTestCase, WSClient, apply_routes


@allowed_hosts_only
def hosts_connect(message: Any) -> None:
    message.reply_channel.send({"accept": True})


@allowed_origins(["https://good.example", ".trusted.org"])
def origins_connect(message: Any) -> None:
    message.reply_channel.send({"accept": True})


def connect_with(origin: str | None) -> Any:
    client = WSClient()
    if origin is not None:
        client.headers["Origin"] = origin
    client.send_and_consume("websocket.connect", path="/", check_accept=False)
    return client.receive()


@override_settings(ALLOWED_HOSTS=["example.com", ".sub.test"], DEBUG=False)
class AllowedHostsOnlyTests(ChannelTestCase):
    @apply_routes([route("websocket.connect", hosts_connect)])
    def test_hosts(self) -> None:
        self.assertEqual(connect_with("http://example.com"), {"accept": True})
        self.assertEqual(connect_with("https://a.sub.test:8443"), {"accept": True})
        self.assertEqual(connect_with("http://evil.com"), {"close": True})
        self.assertEqual(connect_with(None), {"close": True})
        self.assertEqual(connect_with("not a url"), {"close": True})

    def test_it_is_the_class_based_validator(self) -> None:
        self.assertIs(allowed_hosts_only, AllowedHostsOnlyOriginValidator)
        self.assertTrue(issubclass(allowed_hosts_only, BaseOriginValidator))
        self.assertEqual(hosts_connect.__name__, "hosts_connect")


class AllowedOriginsTests(ChannelTestCase):
    @apply_routes([route("websocket.connect", origins_connect)])
    def test_origins(self) -> None:
        self.assertEqual(connect_with("https://good.example"), {"accept": True})
        self.assertEqual(connect_with("http://good.example"), {"close": True})
        self.assertEqual(connect_with("https://x.trusted.org"), {"accept": True})
        self.assertEqual(connect_with("https://other.org"), {"close": True})

    def test_one_string_is_refused(self) -> None:
        with self.assertRaises(TypeError):
            allowed_origins("https://good.example")

    def test_custom_validator_on_a_method(self) -> None:
        class OnlyFoo(BaseOriginValidator):
            def validate_origin(self, message: Any, origin: Any) -> bool:
                return origin is not None and origin.hostname == "foo"

        class Holder:
            @OnlyFoo
            def connect(self, message: Any) -> None:
                message.reply_channel.send({"accept": True})

        holder = Holder()
        with apply_routes([route("websocket.connect", holder.connect)]):
            self.assertEqual(connect_with("http://foo"), {"accept": True})
            self.assertEqual(connect_with("http://bar"), {"close": True})
