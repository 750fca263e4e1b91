"""The view consumer in a real ``runworker`` process: ``http.request`` messages served by the
project's Django views and middleware, answered in the Channels-1 ``http.response`` format."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest

from headrace.asgi import AsgiChannelLayer
from tests.worker1.conftest import WorkerProcess, receive

StartWorker = Callable[..., WorkerProcess]
CHUNK = 512 * 1024


def request(view: AsgiChannelLayer, path: str, **overrides: Any) -> str:
    """Send one ``http.request``; return its reply channel."""
    reply = view.new_channel("http.response!")
    message: dict[str, Any] = {
        "reply_channel": reply,
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "query_string": b"",
        "root_path": "",
        "headers": [[b"host", b"testserver"]],
        "body": b"",
        "client": ["10.1.2.3", 50000],
        "server": ["127.0.0.1", 8000],
    }
    message.update(overrides)
    view.send("http.request", message)
    return reply


def response(view: AsgiChannelLayer, reply: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The first reply message and every chunk after it, up to ``more_content`` False."""
    first = receive(view, reply)
    chunks = []
    more = first.get("more_content", False)
    while more:
        chunk = receive(view, reply)
        chunks.append(chunk)
        more = chunk.get("more_content", False)
    return first, chunks


def headers_of(message: dict[str, Any]) -> dict[bytes, list[bytes]]:
    found: dict[bytes, list[bytes]] = {}
    for name, value in message["headers"]:
        found.setdefault(name.lower(), []).append(value)
    return found


@pytest.fixture
def worker(start_worker: StartWorker) -> WorkerProcess:
    return start_worker("--only-channels", "http.*", "--threads", "2")


def test_get_runs_the_view_and_middleware(view: AsgiChannelLayer, worker: WorkerProcess) -> None:
    reply = request(
        view,
        "/app/hello/",
        root_path="/app",
        query_string=b"name=d%C3%A9j%C3%A0",
        scheme="https",
        headers=[
            [b"host", b"example.com"],
            [b"user-agent", b"pytest"],
            [b"cookie", b"flavour=mint"],
        ],
    )
    first, chunks = response(view, reply)
    assert chunks == []
    assert first["status"] == 200
    assert first["more_content"] is False
    headers = headers_of(first)
    assert headers[b"content-type"] == [b"application/json"]
    assert headers[b"x-stamped"] == [b"yes"]
    assert headers[b"set-cookie"] == [b"seen=1; Path=/"]
    assert json.loads(first["content"]) == {
        "method": "GET",
        "path": "/app/hello/",
        "path_info": "/hello/",
        "script_name": "/app",
        "name": "déjà",
        "agent": "pytest",
        "remote": "10.1.2.3",
        "server": "example.com",
        "secure": True,
        "cookie": "mint",
        "pid": worker.pid,
    }


def test_post_with_a_large_body_read_from_the_body_channel(
    view: AsgiChannelLayer, worker: WorkerProcess
) -> None:
    body = bytes(range(256)) * (3 * 1024 * 4)  # 3 MiB: three times the message limit
    body_channel = view.new_channel("http.request.body?")
    reply = request(
        view,
        "/upload/",
        method="POST",
        headers=[
            [b"host", b"testserver"],
            [b"content-type", b"application/octet-stream"],
            [b"content-length", str(len(body)).encode()],
        ],
        body=body[:CHUNK],
        body_channel=body_channel,
    )
    rest = body[CHUNK:]
    for start in range(0, len(rest), CHUNK):
        piece = rest[start : start + CHUNK]
        view.send(
            body_channel,
            {"content": piece, "more_content": start + CHUNK < len(rest), "closed": False},
        )
    first, _ = response(view, reply)
    assert first["status"] == 200
    assert json.loads(first["content"]) == {
        "length": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "field": None,
    }


def test_form_post(view: AsgiChannelLayer, worker: WorkerProcess) -> None:
    reply = request(
        view,
        "/upload/",
        method="POST",
        headers=[
            [b"host", b"testserver"],
            [b"content-type", b"application/x-www-form-urlencoded"],
        ],
        body=b"field=hello+world",
    )
    first, _ = response(view, reply)
    assert json.loads(first["content"])["field"] == "hello world"


def test_body_chunks_that_stop_get_408(view: AsgiChannelLayer, worker: WorkerProcess) -> None:
    body_channel = view.new_channel("http.request.body?")
    reply = request(
        view,
        "/slow-upload/",
        method="POST",
        headers=[[b"host", b"testserver"], [b"content-length", b"100"]],
        body=b"x" * 10,
        body_channel=body_channel,
    )
    view.send(body_channel, {"content": b"y" * 10, "more_content": True})
    first, _ = response(view, reply)
    assert first["status"] == 408
    assert b"Request Timeout" in first["content"]
    worker.wait_for_output("Request body timed out")


def test_a_client_gone_mid_upload_gets_no_answer_and_the_worker_goes_on(
    view: AsgiChannelLayer, worker: WorkerProcess
) -> None:
    body_channel = view.new_channel("http.request.body?")
    gone = request(
        view,
        "/upload/",
        method="POST",
        headers=[[b"host", b"testserver"]],
        body=b"partial",
        body_channel=body_channel,
    )
    view.send(body_channel, {"content": b"", "more_content": False, "closed": True})
    after = request(view, "/hello/")
    first, _ = response(view, after)
    assert first["status"] == 200
    assert view.receive([gone], block=False) == (None, None)


def test_streaming_response_is_sent_in_chunks(
    view: AsgiChannelLayer, worker: WorkerProcess
) -> None:
    first, chunks = response(view, request(view, "/stream/"))
    assert first["status"] == 200
    assert headers_of(first)[b"content-type"] == [b"text/plain"]
    assert first["more_content"] is True
    assert "status" not in chunks[0] and "headers" not in chunks[0]
    body = first["content"] + b"".join(chunk["content"] for chunk in chunks)
    assert body == b"part 0;part 1;part 2;"
    assert len(chunks) >= 2


def test_file_response_is_chunked_at_512_kib(view: AsgiChannelLayer, worker: WorkerProcess) -> None:
    first, chunks = response(view, request(view, "/file/"))
    assert first["status"] == 200
    pieces = [first["content"]] + [chunk["content"] for chunk in chunks]
    assert b"".join(pieces) == b"x" * (1300 * 1024)
    assert max(len(piece) for piece in pieces) <= CHUNK
    assert len([piece for piece in pieces if piece]) == 3


def test_404_and_500_and_the_worker_keeps_serving(
    view: AsgiChannelLayer, worker: WorkerProcess
) -> None:
    missing, _ = response(view, request(view, "/nowhere/"))
    assert missing["status"] == 404
    broken, _ = response(view, request(view, "/broken/"))
    assert broken["status"] == 500
    worker.wait_for_output("RuntimeError: this view is broken")
    fine, _ = response(view, request(view, "/hello/"))
    assert fine["status"] == 200


def test_a_bad_request_message_gets_400(view: AsgiChannelLayer, worker: WorkerProcess) -> None:
    reply = view.new_channel("http.response!")
    view.send("http.request", {"reply_channel": reply, "method": "GET"})  # no path
    first, _ = response(view, reply)
    assert first["status"] == 400
    fine, _ = response(view, request(view, "/hello/"))
    assert fine["status"] == 200


@pytest.mark.parametrize("debug", [True, False])
def test_runworker_serves_static_files_under_debug(
    view: AsgiChannelLayer, start_worker: StartWorker, debug: bool
) -> None:
    """With DEBUG and django.contrib.staticfiles, the worker's default http.request consumer
    serves STATIC_URL from the finders (Channels 1.x's rule); views still answer the rest."""
    start_worker("--only-channels", "http.*", WORKER1_DEBUG="1" if debug else "0")
    first, chunks = response(view, request(view, "/static/site.css"))
    if debug:
        assert first["status"] == 200
        body = first.get("content", b"") + b"".join(c.get("content", b"") for c in chunks)
        assert body == b"body { color: teal; }\n"
        assert headers_of(first)[b"content-type"][0].startswith(b"text/css")
        missing, _ = response(view, request(view, "/static/nothing-here.css"))
        assert missing["status"] == 404
    else:
        assert first["status"] == 404  # no static files outside DEBUG: the URLconf answers
    hello, _ = response(view, request(view, "/hello/"))
    assert hello["status"] == 200
