"""Every request behaviour over every wire, from one set of cases (see :mod:`tests.streams.wires`).

Each test runs once per wire it applies to; the wire names the test id: ``[h1]``, ``[h2c]``,
``[h2-tls]`` for HTTP, ``[ws-h1]``, ``[ws-h2]`` for WebSocket. A case that holds on every wire
(bad application headers, limits, errors, disconnects, back-pressure) is parametrised over all
five; trailers are HTTP/2-only (HTTP/1.1 trailers need chunked framing and a ``TE: trailers``
peer, which headrace does not offer); WebSocket cases run over both WebSocket wires.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from headrace._types import Message, Receive, Scope, Send
from headrace.server.streams.errors import server_answer
from tests.streams.wires import (
    ALL_WIRES,
    HTTP_WIRES,
    WAIT,
    WEBSOCKET_WIRES,
    Closed,
    HTTPWire,
    Reply,
    TLSMaterial,
    WebSocketWire,
    Wire,
    running,
    wire_id,
)

pytestmark = pytest.mark.timeout(60)

BAD_VALUE = b"a\x01b"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSMaterial]:
    yield TLSMaterial.create(Path(tmp_path_factory.mktemp("streams-tls")))


def over(wires: list[Any]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("wire", wires, ids=wire_id)


async def read_body(receive: Receive) -> bytes:
    body: bytes = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return body
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def respond(send: Send, status: int, body: bytes, headers: Any = ()) -> None:
    await send({"type": "http.response.start", "status": status, "headers": list(headers)})
    await send({"type": "http.response.body", "body": body})


async def answer(scope: Scope, receive: Receive, send: Send, headers: Any = ()) -> None:
    """Accept a WebSocket (with ``headers``) or answer an HTTP request 200 (with them)."""
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept", "headers": list(headers)})
        while (await receive())["type"] != "websocket.disconnect":
            pass
        return
    await read_body(receive)
    await respond(send, 200, b"ok", headers)


def server_made(reply: Reply, status: int) -> bool:
    """Whether ``reply`` is the server's own plain-text answer ``status`` (the same on every
    wire: status, ``content-type`` and body)."""
    return (
        reply.status == status
        and reply.header(b"content-type") == b"text/plain; charset=utf-8"
        and reply.body == server_answer(status).body
    )


def accepted(wire: Wire, reply: Reply) -> bool:
    return reply.status == (200 if wire.http_version == "2" or wire in HTTP_WIRES else 101)


# ---------------------------------------------------------------------- bad application headers


@pytest.mark.parametrize(
    ("bad_header", "marker"),
    [
        ((b"x-injected", BAD_VALUE), BAD_VALUE),
        ((b"bad name", b"value"), b"bad name"),
        ((b"x-split", b"one\r\nx-evil: two"), b"x-evil"),
    ],
    ids=["control-char-in-value", "space-in-name", "crlf-in-value"],
)
@over(ALL_WIRES)
async def test_bad_application_header_never_reaches_the_wire(
    wire: Wire, bad_header: tuple[bytes, bytes], marker: bytes, tls: TLSMaterial
) -> None:
    """A header the application sends that is not a valid field gets a 500 (or, once the
    response is on its way, a reset), and no byte of it reaches the client."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await answer(scope, receive, send, [(b"x-fine", b"1"), bad_header])

    async with running(app, tls) as server:
        reply = await wire.head(server, "/")
        after = await wire.head(server, "/")  # the server is still serving
    assert reply.status in (0, 500) or reply.reset, reply
    assert not reply.carries(marker), reply
    assert all(name != bad_header[0] for name, _ in reply.headers), reply
    assert after.status in (0, 500) or after.reset


# ---------------------------------------------------------------------- limits


@over(HTTP_WIRES)
async def test_body_over_the_limit_gets_413(wire: HTTPWire, tls: TLSMaterial) -> None:
    seen: list[bytes] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(await read_body(receive))
        await respond(send, 200, b"ok")

    async with running(app, tls, max_request_body_size=1000) as server:
        small = await wire.request(server, "/", "POST", body=b"s" * 1000)
        large = await wire.request(server, "/", "POST", body=b"L" * 50_000)
    assert small.status == 200
    assert server_made(large, 413), large
    assert b"s" * 1000 in seen
    assert all(len(body) <= 1000 for body in seen)


@over(ALL_WIRES)
async def test_request_headers_over_the_limit_get_431(wire: Wire, tls: TLSMaterial) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await answer(scope, receive, send)

    async with running(app, tls, max_request_header_size=4096) as server:
        small = await wire.head(server, "/", [(b"x-small", b"s" * 1000)])
        large = await wire.head(server, "/", [(b"x-large", b"L" * 8000)])
    assert accepted(wire, small), small
    assert server_made(large, 431), large


@over(ALL_WIRES)
async def test_concurrency_limit_answers_503(wire: Wire, tls: TLSMaterial) -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/hold":
            entered.set()
            await release.wait()
        await answer(scope, receive, send)

    async with running(app, tls, limit_concurrency=1) as server:
        held = asyncio.create_task(wire.head(server, "/hold"))
        await asyncio.wait_for(entered.wait(), WAIT)
        refused = await wire.head(server, "/")
        release.set()
        first = await asyncio.wait_for(held, WAIT)
        again = await wire.head(server, "/")
    assert server_made(refused, 503), refused
    assert accepted(wire, first), first
    assert accepted(wire, again), again


# ---------------------------------------------------------------------- errors and disconnects


@over(HTTP_WIRES)
async def test_response_not_started_within_http_timeout_is_503(
    wire: HTTPWire, tls: TLSMaterial
) -> None:
    never = asyncio.Event()
    cancelled = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await read_body(receive)
        try:
            await never.wait()  # never answers
        finally:
            cancelled.set()

    async with running(app, tls, http_timeout=0.5) as server:
        reply = await wire.request(server, "/")
        await asyncio.wait_for(cancelled.wait(), WAIT)
    assert server_made(reply, 503), reply


@over(ALL_WIRES)
async def test_exception_before_the_response_is_500(wire: Wire, tls: TLSMaterial) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("the application broke")

    async with running(app, tls) as server:
        reply = await wire.head(server, "/")
    assert server_made(reply, 500), reply
    assert b"the application broke" not in reply.body
    assert b"Traceback" not in reply.body


@over(HTTP_WIRES)
async def test_exception_after_the_response_started_aborts_it(
    wire: HTTPWire, tls: TLSMaterial
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await read_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("broke mid-body")

    async with running(app, tls) as server:
        reply = await wire.request(server, "/")
    assert reply.status == 200
    assert reply.reset, reply  # never presented as a complete response


@over(HTTP_WIRES)
async def test_client_disconnect_reaches_the_app(wire: HTTPWire, tls: TLSMaterial) -> None:
    entered = asyncio.Event()
    after_body: list[Message] = []
    done = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] != "/wait":
            await answer(scope, receive, send)
            return
        await read_body(receive)
        entered.set()
        after_body.append(await receive())
        done.set()

    async with running(app, tls) as server:
        await wire.abandon(server, "/wait", entered)
        await asyncio.wait_for(done.wait(), WAIT)
    assert after_body == [{"type": "http.disconnect"}]


@over(WEBSOCKET_WIRES)
async def test_websocket_client_disconnect_reaches_the_app(
    wire: WebSocketWire, tls: TLSMaterial
) -> None:
    events: list[Message] = []
    done = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        events.append(await receive())
        done.set()

    async with running(app, tls) as server, wire.session(server, "/") as session:
        await session.abort()
        await asyncio.wait_for(done.wait(), WAIT)
    assert events[0]["type"] == "websocket.disconnect"
    assert events[0]["code"] == 1006


# ---------------------------------------------------------------------- HTTP extensions


@over([wire for wire in HTTP_WIRES if wire.http_version == "2"])
async def test_trailers(wire: HTTPWire, tls: TLSMaterial) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert "http.response.trailers" in scope["extensions"]
        await read_body(receive)
        start = {"type": "http.response.start", "status": 200, "headers": [], "trailers": True}
        await send(start)
        await send({"type": "http.response.body", "body": b"payload"})
        trailers = [(b"x-checksum", b"abc123")]
        await send({"type": "http.response.trailers", "headers": trailers, "more_trailers": False})

    async with running(app, tls) as server:
        reply = await wire.request(server, "/")
    assert reply.status == 200
    assert reply.body == b"payload"
    assert reply.trailers == [(b"x-checksum", b"abc123")]


@over(HTTP_WIRES)
async def test_early_hints(wire: HTTPWire, tls: TLSMaterial) -> None:
    offered: list[bool] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await read_body(receive)
        offered.append("http.response.early_hint" in scope.get("extensions", {}))
        if offered[-1]:
            links = [b"</style.css>; rel=preload; as=style", b" </app.js>; rel=preload "]
            await send({"type": "http.response.early_hint", "links": links})
        await respond(send, 200, b"page")

    async with running(app, tls) as server:
        reply = await wire.request(server, "/")
    assert offered == [True], f"{wire.name} does not offer http.response.early_hint"
    assert [status for status, _ in reply.informational] == [103]
    links = [value for name, value in reply.informational[0][1] if name == b"link"]
    assert links == [b"</style.css>; rel=preload; as=style", b"</app.js>; rel=preload"]
    assert reply.status == 200
    assert reply.body == b"page"


@over(HTTP_WIRES)
@pytest.mark.parametrize(
    "link",
    [b"</a>\r\nx-injected: y", b"</a>\x01", b"", "</a>"],
    ids=["crlf", "ctl", "empty", "str"],
)
async def test_bad_early_hint_link_gets_500_and_no_103(
    wire: HTTPWire, link: Any, tls: TLSMaterial
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await read_body(receive)
        await send({"type": "http.response.early_hint", "links": [b"</fine>", link]})
        await respond(send, 200, b"page")

    async with running(app, tls) as server:
        reply = await wire.request(server, "/")
    assert reply.informational == []
    assert reply.status == 500
    assert not reply.carries(b"x-injected")


async def test_early_hints_are_dropped_for_an_http10_client(tls: TLSMaterial) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await read_body(receive)
        await send({"type": "http.response.early_hint", "links": [b"</style.css>; rel=preload"]})
        await respond(send, 200, b"page")

    async with running(app, tls) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.plain_port)
        writer.write(b"GET / HTTP/1.0\r\n\r\n")
        raw = await asyncio.wait_for(reader.read(), WAIT)
        writer.close()
    assert raw.startswith(b"HTTP/1.0 200 OK\r\n"), raw
    assert b"103" not in raw.split(b"\r\n\r\n")[0]
    assert raw.endswith(b"\r\n\r\npage")


# ---------------------------------------------------------------------- back-pressure

CHUNK = 128 * 1024
TOTAL = 32 * 1024 * 1024
BUFFER_BOUND = TOTAL // 2


async def progress_stalls(progress: dict[str, int], finished: asyncio.Event) -> None:
    """Wait until the app is inside a ``send`` that has not returned and its progress has
    stopped moving (or the app finished, which the caller then reports)."""
    last, steady = -1, 0
    while steady < 10 and not finished.is_set():
        await asyncio.sleep(0.05)
        current = progress["sent"]
        steady = steady + 1 if current == last and progress["sending"] else 0
        last = current


@over(ALL_WIRES)
async def test_slow_reader_blocks_the_apps_send(wire: Wire, tls: TLSMaterial) -> None:
    progress = {"sent": 0, "sending": 0}
    finished = asyncio.Event()
    chunk = bytes(range(256)) * (CHUNK // 256)

    async def emit(send: Send, message: Message) -> None:
        progress["sending"] = 1
        await send(message)
        progress["sending"] = 0
        progress["sent"] += CHUNK

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            for _ in range(TOTAL // CHUNK):
                await emit(send, {"type": "websocket.send", "bytes": chunk})
            finished.set()
            await send({"type": "websocket.close", "code": 1000})
            return
        await read_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(TOTAL // CHUNK):
            await emit(send, {"type": "http.response.body", "body": chunk, "more_body": True})
        finished.set()
        await send({"type": "http.response.body", "body": b""})

    async with running(app, tls) as server:
        streamed = await wire.stream(server, "/")
        try:
            await asyncio.wait_for(progress_stalls(progress, finished), 30)
            stalled_at = progress["sent"]
            received = await asyncio.wait_for(streamed.read_all(), 30)
        finally:
            await streamed.close()
    assert not finished.is_set() or stalled_at < TOTAL, "the server buffered the whole body"
    assert stalled_at <= BUFFER_BOUND, stalled_at
    assert received == TOTAL  # nothing lost once the reader catches up


# ---------------------------------------------------------------------- WebSocket


@over(WEBSOCKET_WIRES)
async def test_subprotocol_negotiation(wire: WebSocketWire, tls: TLSMaterial) -> None:
    offered: list[list[str]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        offered.append(scope["subprotocols"])
        await send({"type": "websocket.accept", "subprotocol": scope["subprotocols"][-1]})
        while (await receive())["type"] != "websocket.disconnect":
            pass

    async with (
        running(app, tls) as server,
        wire.session(server, "/", ["chat.v1", "chat.v2"]) as session,
    ):
        chosen = session.subprotocol
        await session.close(1000)
    assert offered == [["chat.v1", "chat.v2"]]
    assert chosen == "chat.v2"


@over(WEBSOCKET_WIRES)
async def test_denial_responses(wire: WebSocketWire, tls: TLSMaterial) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        if scope["path"] == "/closed":
            await send({"type": "websocket.close"})
            return
        start = {
            "type": "websocket.http.response.start",
            "status": 401,
            "headers": [(b"content-type", b"text/plain")],
        }
        await send(start)
        await send({"type": "websocket.http.response.body", "body": b"who are you?"})

    async with running(app, tls) as server:
        closed = await wire.denied(server, "/closed")
        custom = await wire.denied(server, "/custom")
    assert closed.status == 403, closed
    assert custom.status == 401, custom
    assert custom.body == b"who are you?"
    assert custom.header(b"content-type") == b"text/plain"


@over(WEBSOCKET_WIRES)
async def test_close_codes_both_ways(wire: WebSocketWire, tls: TLSMaterial) -> None:
    disconnects: list[Message] = []
    done = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] != "websocket.disconnect":
            if message.get("text") == "close me":
                await send({"type": "websocket.close", "code": 4001, "reason": "bye now"})
        disconnects.append(message)
        done.set()

    async with running(app, tls) as server:
        async with wire.session(server, "/") as session:
            await session.send("close me")
            with pytest.raises(Closed) as by_server:
                await session.receive()
        await asyncio.wait_for(done.wait(), WAIT)
        done.clear()
        async with wire.session(server, "/") as session:
            await session.send("hello")  # not a close request: the app waits
            await session.close(4002, "client leaves")
        await asyncio.wait_for(done.wait(), WAIT)
    assert (by_server.value.code, by_server.value.reason) == (4001, "bye now")
    assert disconnects[1]["type"] == "websocket.disconnect"
    assert disconnects[1]["code"] == 4002


@over(WEBSOCKET_WIRES)
async def test_oversize_message_closes_1009(wire: WebSocketWire, tls: TLSMaterial) -> None:
    received: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] != "websocket.disconnect":
            received.append(message)
        received.append(message)

    async with (
        running(app, tls, websocket_max_message_size=1024) as server,
        wire.session(server, "/") as session,
    ):
        await session.send(b"s" * 1024)
        await session.send(b"L" * 5000)
        with pytest.raises(Closed) as closed:
            while True:
                await session.receive()
    assert closed.value.code == 1009
    assert received[0] == {"type": "websocket.receive", "bytes": b"s" * 1024}
    assert all(len(m.get("bytes") or b"") <= 1024 for m in received)


@over(WEBSOCKET_WIRES)
async def test_app_error_after_accept_closes_1011(wire: WebSocketWire, tls: TLSMaterial) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await receive()
        raise RuntimeError("the application broke")

    async with running(app, tls) as server, wire.session(server, "/") as session:
        await session.send("trigger")
        with pytest.raises(Closed) as closed:
            await session.receive()
        again = await wire.head(server, "/")
    assert closed.value.code == 1011
    assert "the application broke" not in closed.value.reason
    assert accepted(wire, again)
