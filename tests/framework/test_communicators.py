"""The testing communicators themselves: scopes, timeouts, crash reporting, light import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from headrace._types import Receive, Scope, Send
from headrace.testing import ApplicationCommunicator, HttpCommunicator, WebsocketCommunicator


async def scope_reporter(scope: Scope, receive: Receive, send: Send) -> None:
    event = await receive()
    if scope["type"] == "websocket":
        await send({"type": "websocket.accept", "headers": [[b"x-a", b"1"]]})
        await send({"type": "websocket.send", "text": repr(sorted(scope.items()))})
        await receive()
        return
    assert event["type"] == "http.request"
    await send({"type": "http.response.start", "status": 204})
    await send({"type": "http.response.body", "body": repr(sorted(scope.items())).encode()})


async def silent(scope: Scope, receive: Receive, send: Send) -> None:
    while True:
        await receive()


async def crashes(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    raise RuntimeError("boom")


async def test_websocket_scope_and_options() -> None:
    communicator = WebsocketCommunicator(
        scope_reporter,
        "/chat/r%C3%BCm/?q=1",
        headers=[(b"origin", b"http://x")],
        subprotocols=["a", "b"],
        spec_version="2.3",
    )
    assert await communicator.connect() == (True, None)
    assert communicator.response_headers == [[b"x-a", b"1"]]  # as the application sent it
    scope = dict(communicator.scope)
    assert scope["path"] == "/chat/rüm/"
    assert scope["query_string"] == b"q=1"
    assert scope["subprotocols"] == ["a", "b"]
    assert scope["spec_version"] == "2.3"
    assert scope["headers"] == [(b"origin", b"http://x")]
    assert "'spec_version', '2.3'" in str(await communicator.receive_from())
    await communicator.disconnect()


async def test_http_scope_and_response_without_headers() -> None:
    communicator = HttpCommunicator(scope_reporter, "post", "/p?x=y", body=b"b")
    response = await communicator.get_response()
    assert response["status"] == 204
    assert response["headers"] == []
    assert b"'method', 'POST'" in response["body"]
    assert b"'query_string', b'x=y'" in response["body"]


async def test_receive_output_times_out_and_cancels() -> None:
    communicator = ApplicationCommunicator(silent, {"type": "test"})
    await communicator.send_input({"type": "anything"})
    with pytest.raises(TimeoutError):
        await communicator.receive_output(timeout=0.05)
    assert communicator.future.cancelled()


async def test_receive_nothing() -> None:
    communicator = ApplicationCommunicator(silent, {"type": "test"})
    assert await communicator.receive_nothing(timeout=0.05)
    await communicator.output_queue.put({"type": "pending"})
    assert not await communicator.receive_nothing()
    communicator.stop()


async def test_crash_is_reported_not_timed_out() -> None:
    communicator = ApplicationCommunicator(crashes, {"type": "test"})
    await communicator.send_input({"type": "go"})
    with pytest.raises(RuntimeError, match="boom"):
        await communicator.receive_output(timeout=30)


def test_send_to_argument_checks() -> None:
    communicator = WebsocketCommunicator(silent, "/")
    with pytest.raises(TypeError, match="Expected str"):
        WebsocketCommunicator(silent, b"/")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="body must be bytes"):
        HttpCommunicator(silent, "GET", "/", body="text")  # type: ignore[arg-type]
    assert communicator.scope["type"] == "websocket"


async def test_send_to_needs_exactly_one_payload() -> None:
    communicator = WebsocketCommunicator(silent, "/")
    with pytest.raises(ValueError, match="exactly one"):
        await communicator.send_to()
    with pytest.raises(ValueError, match="exactly one"):
        await communicator.send_to(text_data="a", bytes_data=b"b")
    communicator.stop()


def test_importing_testing_does_not_load_django_live_server() -> None:
    code = (
        "import sys, headrace.testing, headrace.generic.websocket, headrace.routing\n"
        "heavy = [m for m in ('django.test', 'django.test.testcases', 'django.db') "
        "if m in sys.modules]\n"
        "print(heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert result.stdout.strip() == "[]"


def test_live_server_case_is_exported_lazily() -> None:
    import headrace.testing

    assert headrace.testing.ChannelsLiveServerTestCase.__module__ == "headrace.testing.live"
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = headrace.testing.Nope
