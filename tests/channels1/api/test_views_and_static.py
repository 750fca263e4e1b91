"""StaticFilesConsumer, AsgiRequest's body-channel errors, response kinds, name_that_thing."""

from __future__ import annotations

import json
from typing import Any

from django.http import (
    FileResponse,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.test import override_settings
from django.urls import path

from headrace import Channel, exceptions, handler
from headrace.asgi import get_channel_layer
from headrace.channel import recorded_sends
from headrace.handler import AsgiHandler, AsgiRequest, ViewConsumer
from headrace.message import Message
from headrace.routing import route
from headrace.staticfiles import StaticFilesConsumer
from headrace.test import ChannelTestCase, HttpClient, apply_routes
from headrace.utils import name_that_thing


class QuickRequest(AsgiRequest):
    body_receive_timeout = 0.3


class QuickHandler(AsgiHandler):
    request_class = QuickRequest


class QuickViewConsumer(ViewConsumer):
    handler_class = QuickHandler


def replies(client: HttpClient) -> list[dict[str, Any]]:
    found = []
    while (reply := client.receive(json=False)) is not None:
        found.append(reply)
    return found


def get(client: HttpClient, path: str, **content: Any) -> None:
    client.headers["Host"] = "testserver"
    client.send_and_consume("http.request", {"method": "GET", **content}, path=path)


class StaticFilesTests(ChannelTestCase):
    @apply_routes([route("http.request", StaticFilesConsumer())])
    def test_static_files_and_views(self) -> None:
        client = HttpClient()
        get(client, "/static/hello.txt")
        served = replies(client)
        self.assertEqual(served[0]["status"], 200)
        body = b"".join(r.get("content", b"") for r in served)
        with open("tests/django/static/hello.txt", "rb") as source:
            self.assertEqual(body, source.read())
        get(client, "/static/missing.txt")
        self.assertEqual(replies(client)[0]["status"], 404)
        get(client, "/whoami/")
        answer = replies(client)
        self.assertEqual((answer[0]["status"], answer[0]["content"]), (200, b"anonymous |"))

    @override_settings(STATIC_URL="https://cdn.example/static/")
    def test_a_static_url_on_another_host_is_not_served(self) -> None:
        with apply_routes([route("http.request", StaticFilesConsumer())]):
            client = HttpClient()
            get(client, "/static/hello.txt")
        self.assertEqual(replies(client)[0]["status"], 404)


class BodyChannelTests(ChannelTestCase):
    def test_exceptions_are_the_headrace_ones(self) -> None:
        self.assertIs(handler.RequestAborted, exceptions.RequestAborted)
        self.assertIs(handler.RequestTimeout, exceptions.RequestTimeout)
        self.assertTrue(issubclass(exceptions.RequestTimeout, exceptions.RequestAborted))

    @apply_routes([route("http.request", QuickViewConsumer())])
    def test_a_stalled_body_gets_408(self) -> None:
        client = HttpClient()
        get(client, "/whoami/", body=b"part", body_channel="http.request.body?stall")
        answer = replies(client)
        self.assertEqual(answer[0]["status"], 408)

    @apply_routes([route("http.request", QuickViewConsumer())])
    def test_a_client_that_left_gets_no_answer(self) -> None:
        client = HttpClient()
        Channel("http.request.body?gone").send({"content": b"", "closed": True})
        get(client, "/whoami/", body=b"part", body_channel="http.request.body?gone")
        self.assertEqual(replies(client), [])

    @apply_routes([route("http.request", QuickViewConsumer())])
    def test_a_body_in_chunks_is_read(self) -> None:
        client = HttpClient()
        Channel("http.request.body?ok").send({"content": b"-two", "more_content": True})
        Channel("http.request.body?ok").send({"content": b"-three", "more_content": False})
        get(client, "/whoami/", body=b"one", body_channel="http.request.body?ok")
        self.assertEqual(replies(client)[0]["status"], 200)


def streamed(request: Any) -> StreamingHttpResponse:
    return StreamingHttpResponse(iter([b"one;", b"two;"]))


urlpatterns = [path("streamed/", streamed)]


class ViewReplyTests(ChannelTestCase):
    """A response whole in one message is held with the consumer's sends; a streamed one is not."""

    def serve(self, url: str) -> tuple[int, list[dict[str, Any]]]:
        """Run the view consumer inside a worker's record; (sends held, reply messages)."""
        layer = get_channel_layer()
        reply = layer.new_channel("http.response!")
        content = {"reply_channel": reply, "method": "GET", "path": url, "headers": []}
        with recorded_sends() as held:
            ViewConsumer()(Message(content, "http.request", layer))
        count = len(held)
        self.assertEqual(held.send_all(), [])
        found = []
        while (message := layer.receive([reply])[1]) is not None:
            found.append(message)
        return count, found

    def test_a_whole_response_goes_with_the_held_sends(self) -> None:
        held, found = self.serve("/whoami/")
        self.assertEqual(held, 1)
        self.assertEqual(len(found), 1)
        self.assertEqual(set(found[0]), {"status", "headers", "content", "more_content"})
        self.assertEqual((found[0]["status"], found[0]["content"]), (200, b"anonymous |"))
        self.assertIs(found[0]["more_content"], False)

    @override_settings(ROOT_URLCONF=__name__)
    def test_a_streamed_response_is_sent_as_it_comes(self) -> None:
        held, found = self.serve("/streamed/")
        self.assertEqual(held, 0)
        self.assertEqual(found[0]["status"], 200)
        self.assertEqual(b"".join(m["content"] for m in found), b"one;two;")
        self.assertEqual([m["more_content"] for m in found][-1], False)


class ResponseKindTests(ChannelTestCase):
    def encode(self, response: Any) -> list[dict[str, Any]]:
        return list(AsgiHandler.encode_response(response))

    def test_every_kind_of_response(self) -> None:
        big = b"x" * (AsgiHandler.chunk_size * 2 + 10)
        plain = self.encode(HttpResponse(big))
        self.assertEqual([len(m["content"]) for m in plain], [524288, 524288, 10])
        self.assertEqual([m["more_content"] for m in plain], [True, True, False])
        redirect = self.encode(HttpResponseRedirect("/there/"))
        self.assertEqual(redirect[0]["status"], 302)
        self.assertIn([b"Location", b"/there/"], redirect[0]["headers"])
        as_json = self.encode(JsonResponse({"a": 1}))
        self.assertEqual(json.loads(as_json[0]["content"]), {"a": 1})
        streaming = self.encode(StreamingHttpResponse(iter([b"a", b"", b"b"])))
        self.assertEqual(b"".join(m["content"] for m in streaming), b"ab")
        self.assertFalse(streaming[-1]["more_content"])
        with open("tests/django/static/hello.txt", "rb") as source:
            served = self.encode(FileResponse(source))
        self.assertEqual(served[0]["status"], 200)
        with_cookie = HttpResponse("c")
        with_cookie.set_cookie("flavour", "oat", samesite="Strict")
        cookies = [v for n, v in self.encode(with_cookie)[0]["headers"] if n == b"Set-Cookie"]
        self.assertEqual(cookies, [b"flavour=oat; Path=/; SameSite=Strict"])


class Named:
    def method(self) -> None:
        pass

    @classmethod
    def factory(cls) -> None:
        pass


def a_function() -> None:
    pass


def test_name_that_thing() -> None:
    here = __name__
    assert name_that_thing(a_function) == f"{here}.a_function"
    assert name_that_thing(Named) == f"{here}.Named"
    assert name_that_thing(Named()) == f"{here}.Named"
    assert name_that_thing(Named().method) == f"{here}.Named.method"
    assert name_that_thing(Named.factory) == f"{here}.Named.factory"
    assert name_that_thing(len) == "builtins.len"
