"""Channels-1 routing: route(), route_class(), include() and Router."""

from __future__ import annotations

from typing import Any

import pytest

from headrace.asgi import AsgiChannelLayer
from headrace.message import Message
from headrace.routing import Router, include, route, route_class
from tests.channels1 import routing_module


def consumer_a(message: Message, **kwargs: Any) -> None:
    """A consumer the tests only route to."""


def consumer_b(message: Message, **kwargs: Any) -> None:
    """Another consumer the tests only route to."""


class ChatConsumer:
    """The smallest class-based consumer route_class() accepts."""

    def __init__(self, message: Message, **kwargs: Any) -> None:
        self.message, self.kwargs = message, kwargs

    @classmethod
    def channel_names(cls) -> set[str]:
        return {"websocket.connect", "websocket.receive"}


def message_on(view: AsgiChannelLayer, channel: str, **content: Any) -> Message:
    return Message(content, channel, view)


def test_route_filters_and_kwargs(view: AsgiChannelLayer) -> None:
    router = Router(
        [
            route("http.request", consumer_a, path=r"^/room/(?P<name>\w+)/$", method="^GET$"),
            route("http.request", consumer_b, path="/other"),
            route("websocket.connect", consumer_a),
        ]
    )
    assert router.channels == {"http.request", "websocket.connect"}
    found = router.match(message_on(view, "http.request", path="/room/lobby/", method="GET"))
    assert found == (consumer_a, {"name": "lobby"})
    assert (
        router.match(message_on(view, "http.request", path="/room/lobby/", method="POST")) is None
    )
    # "^" is optional, and filters match from the start only
    assert router.match(message_on(view, "http.request", path="/other/x"))[0] is consumer_b  # type: ignore[index]
    assert router.match(message_on(view, "http.request", path="/x/other")) is None
    assert router.match(message_on(view, "http.request", method="GET")) is None  # no path key
    assert router.match(message_on(view, "websocket.connect", path="/anything")) == (consumer_a, {})
    assert router.match(message_on(view, "websocket.receive", path="/")) is None


def test_include_strips_prefixes_and_nests(view: AsgiChannelLayer) -> None:
    inner = [route("websocket.receive", consumer_a, path=r"^/(?P<room>[a-z]+)/$")]
    router = Router(
        [
            include(
                [
                    include(inner, path=r"^/rooms"),
                    route("websocket.receive", consumer_b, path="^/$"),
                ],
                path=r"^/(?P<site>[a-z]+)",
            )
        ]
    )
    assert router.channels == {"websocket.receive"}
    found = router.match(message_on(view, "websocket.receive", path="/main/rooms/lobby/"))
    assert found == (consumer_a, {"site": "main", "room": "lobby"})
    assert router.match(message_on(view, "websocket.receive", path="/main/")) == (
        consumer_b,
        {"site": "main"},
    )
    assert router.match(message_on(view, "websocket.receive", path="/main/rooms/9/")) is None


def test_dotted_paths_and_dict_routing(view: AsgiChannelLayer) -> None:
    router = Router("tests.channels1.routing_module.channel_routing")
    chat = router.match(message_on(view, "websocket.receive", path="/chat/lobby/"))
    assert chat == (routing_module.chat_consumer, {"room": "lobby"})
    other = router.match(message_on(view, "websocket.receive", path="/elsewhere"))
    assert other == (routing_module.other_consumer, {})
    legacy = Router(
        {
            "thumbnails": consumer_a,
            "websocket.connect": "tests.channels1.routing_module.chat_consumer",
        }
    )
    assert legacy.channels == {"thumbnails", "websocket.connect"}
    assert legacy.match(message_on(view, "thumbnails")) == (consumer_a, {})


def test_route_class(view: AsgiChannelLayer) -> None:
    router = Router([route_class(ChatConsumer, path=r"^/chat/(?P<room>\w+)$")])
    assert router.channels == {"websocket.connect", "websocket.receive"}
    found = router.match(message_on(view, "websocket.connect", path="/chat/a1"))
    assert found is not None
    consumer, kwargs = found
    instance = consumer(message_on(view, "websocket.connect"), **kwargs)
    assert isinstance(instance, ChatConsumer) and instance.kwargs == {"room": "a1"}


def test_bytes_values_are_filtered_as_latin_1(view: AsgiChannelLayer) -> None:
    router = Router([route("http.request", consumer_a, query_string=r"^a=(?P<a>\d+)")])
    assert router.match(message_on(view, "http.request", query_string=b"a=12")) == (
        consumer_a,
        {"a": "12"},
    )


def test_add_route_matches_last(view: AsgiChannelLayer) -> None:
    router = Router([route("http.request", consumer_a, path="^/api/")])
    router.add_route(route("http.request", consumer_b))
    assert router.match(message_on(view, "http.request", path="/api/x"))[0] is consumer_a  # type: ignore[index]
    assert router.match(message_on(view, "http.request", path="/page"))[0] is consumer_b  # type: ignore[index]


def test_bad_routes_raise_clear_errors() -> None:
    with pytest.raises(TypeError, match="regular expression string"):
        route("http.request", consumer_a, path=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a valid regex"):
        route("http.request", consumer_a, path="^/(unclosed")
    with pytest.raises(ValueError, match="normal channel name"):
        route("http.response!abc", consumer_a)
    with pytest.raises(TypeError, match="must be callable"):
        route("http.request", 42)  # type: ignore[arg-type]
    with pytest.raises(ImportError, match="cannot import consumer"):
        route("http.request", "tests.channels1.routing_module.missing")
    with pytest.raises(TypeError, match="routing entry 1"):
        Router([route("a", consumer_a), object()])
    with pytest.raises(TypeError, match="must be a list"):
        Router(42)
    with pytest.raises(ImportError, match="cannot import routing"):
        Router("tests.channels1.no_such_module.routing")
    with pytest.raises(TypeError, match="channel_names"):
        route_class(consumer_a)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="regular expression string"):
        include([], path=None)  # type: ignore[arg-type]
