"""Hypothesis round trips: what a client sends is what the app sees in its scope and body."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from urllib.parse import quote, unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headrace.server.server import Server
from tests.server.helpers import WAIT, scope_app, serve_in_thread

TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=12)
VALUE = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=0, max_size=30
)
SEGMENT = st.text(min_size=0, max_size=8)
METHODS = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with serve_in_thread(scope_app) as running:
        yield running


def roundtrip(port: int, request: bytes) -> dict[str, object]:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK"), head
    result: dict[str, object] = json.loads(body)
    return result


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    method=METHODS,
    segments=st.lists(SEGMENT, min_size=1, max_size=4),
    query=st.lists(st.tuples(TOKEN, VALUE), max_size=3),
    headers=st.lists(st.tuples(TOKEN, VALUE), max_size=6),
    body=st.binary(max_size=300),
    chunked=st.booleans(),
)
def test_request_roundtrip(
    server: Server,
    method: str,
    segments: list[str],
    query: list[tuple[str, str]],
    headers: list[tuple[str, str]],
    body: bytes,
    chunked: bool,
) -> None:
    path = "/" + "/".join(quote(segment, safe="") for segment in segments)
    query_string = "&".join(f"{key}={quote(value, safe='')}" for key, value in query)
    target = path + ("?" + query_string if query_string else "")
    header_lines = "".join(f"x-{name}: {value}\r\n" for name, value in headers)
    if chunked:
        framing = "Transfer-Encoding: chunked\r\n"
        payload = (b"%x\r\n%b\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
    else:
        framing = f"Content-Length: {len(body)}\r\n"
        payload = body
    head = (
        f"{method} {target} HTTP/1.1\r\nHost: h\r\n{header_lines}{framing}Connection: close\r\n\r\n"
    )
    scope = roundtrip(server.addresses[0][1], head.encode("ascii") + payload)
    assert scope["method"] == method
    assert scope["raw_path"] == path
    assert scope["path"] == unquote(path)
    assert scope["query_string"] == query_string
    sent = [[f"x-{name}", value] for name, value in headers]
    received = [pair for pair in scope["headers"] if pair[0].startswith("x-")]  # type: ignore[union-attr]
    assert received == sent
    assert scope["body"] == body.decode("latin-1")
