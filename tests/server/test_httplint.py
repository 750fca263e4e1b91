"""Real responses of ours, linted by httplint (the REDbot engine): no BAD findings.

Each case sends one raw request over a socket, reads the response bytes off the wire, and
feeds them to ``httplint.HttpResponseLinter`` together with the request (so HEAD/304 rules
apply). Findings of level BAD fail the test; the failure message lists every note.
"""

from __future__ import annotations

import asyncio

import pytest
from httplint import HttpRequestLinter, HttpResponseLinter
from httplint.note import levels

from headrace._types import Receive, Scope, Send
from tests.server.helpers import WAIT, open_raw, read_chunked, serve


async def lint_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    while (await receive()).get("more_body"):
        pass
    if path == "/boom":
        raise RuntimeError("boom")  # -> 500 from the server
    if path == "/not-modified":
        headers = [(b"etag", b'"v1"'), (b"cache-control", b"max-age=60")]
        await send({"type": "http.response.start", "status": 304, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return
    text = [(b"content-type", b"text/plain; charset=utf-8")]
    await send({"type": "http.response.start", "status": 200, "headers": text})
    if path == "/chunked":
        for part in (b"hello ", b"chunked ", b"world\n"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    else:
        await send({"type": "http.response.body", "body": b"Hello, world!"})


async def wire_response(port: int, request: bytes, head_only: bool) -> tuple[bytes, bytes]:
    """(head, decoded body) of one response, read off a raw socket."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        lowered = head.lower()
        if head_only or head.split(b" ")[1] in (b"204", b"304"):
            return head, b""
        if b"transfer-encoding: chunked" in lowered:
            return head, await read_chunked(reader)
        length = int(lowered.split(b"content-length: ")[1].split(b"\r\n")[0])
        return head, await asyncio.wait_for(reader.readexactly(length), WAIT)
    finally:
        writer.close()


def lint(method: bytes, target: bytes, head: bytes, body: bytes) -> list[str]:
    """Every httplint note as ``LEVEL: summary`` for one exchange."""
    request = HttpRequestLinter()
    request.process_request_topline(method, b"http://127.0.0.1" + target, b"1.1")
    request.process_headers([(b"Host", b"127.0.0.1")])
    request.finish_content(True)
    response = HttpResponseLinter()
    response.request = request  # type: ignore[assignment]
    response.is_head_response = method == b"HEAD"
    lines = head[:-4].split(b"\r\n")
    version, status, phrase = lines[0].split(b" ", 2)
    response.process_response_topline(version.split(b"/")[1], status, phrase)
    response.process_headers([tuple(line.split(b": ", 1)) for line in lines[1:]])  # type: ignore[misc]
    response.feed_content(body)
    response.finish_content(True)
    return [f"{note.level.name}: {note.summary}" for note in response.notes]


CASES = {
    "plaintext": (b"GET", b"/"),
    "chunked": (b"GET", b"/chunked"),
    "head": (b"HEAD", b"/"),
    "304": (b"GET", b"/not-modified"),
    "500": (b"GET", b"/boom"),
}


@pytest.mark.parametrize(("method", "target"), CASES.values(), ids=list(CASES))
async def test_response_has_no_bad_lint(method: bytes, target: bytes) -> None:
    async with serve(lint_app) as server:
        port = int(server.addresses[0][1])
        request = method + b" " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        head, body = await wire_response(port, request, head_only=method == b"HEAD")
    notes = lint(method, target, head, body)
    assert not [note for note in notes if note.startswith(levels.BAD.name)], notes


async def test_413_rejection_has_no_bad_lint() -> None:
    async with serve(lint_app, max_request_body_size=10) as server:
        reader, writer = await open_raw(server)
        writer.write(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n")
        raw = await asyncio.wait_for(reader.read(), WAIT)
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    notes = lint(b"POST", b"/", head + b"\r\n\r\n", body)
    assert not [note for note in notes if note.startswith(levels.BAD.name)], notes
