"""WebSocket over HTTP/1.1 end to end: a real headrace server, real clients and raw frames."""

from __future__ import annotations

import asyncio
import gc
import io
import ssl
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
import trustme
import websockets
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from headrace.server.accesslog import AccessLogger
from headrace.server.streams.websocket import WebSocketClosed
from headrace.server.wires.http11 import HTTP11Handler
from tests.server.helpers import serve as serve_on_port
from tests.websocket._support import (
    TIMEOUT,
    RawClient,
    client_frame,
    echo_app,
    serve,
    upgrade_request,
)

pytestmark = pytest.mark.timeout(60)


def _url(port: int, path: str = "/") -> str:
    return f"ws://127.0.0.1:{port}{path}"


async def _until(predicate: Any, what: str) -> None:
    """Wait (bounded) for a condition that has no event to await."""
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


# -- echo and messages ----------------------------------------------------------------------


async def test_echo_text_binary_and_empty_messages() -> None:
    async with serve(echo_app) as (port, _), connect(_url(port)) as ws:
        for message in ["héllo", b"\x00\x01\xff", "", b"", "x" * 70_000, b"y" * 70_000]:
            await ws.send(message)
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == message


async def test_upgrade_offering_a_list_of_protocols_gets_the_websocket() -> None:
    # RFC 9110 §7.8: "Upgrade: foo, websocket" offers both; the server picks the one it speaks.
    async with serve(echo_app) as (port, _):
        request = upgrade_request(port).replace(b"Upgrade: websocket", b"Upgrade: foo/2, WebSocket")
        client = await RawClient.connect(port, request)
        assert client.status == 101
        client.send(client_frame(0x1, b"listed"))
        assert await client.read_frame() == (0x81, b"listed")  # FIN + text
        await client.close()


async def test_scope_contents() -> None:
    scopes: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scopes.append(dict(scope))
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close"})

    async with serve(app, root_path="/root") as (port, _):
        url = _url(port, "/chat/r%C3%A9?x=1&y=2")
        ws = await connect(url, subprotocols=["a", "b"])
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        await ws.close()
    scope = scopes[0]
    assert scope["type"] == "websocket"
    assert scope["scheme"] == "ws"
    assert scope["http_version"] == "1.1"
    assert scope["path"] == "/chat/ré"
    assert scope["raw_path"] == b"/chat/r%C3%A9"
    assert scope["query_string"] == b"x=1&y=2"
    assert scope["root_path"] == "/root"
    assert scope["subprotocols"] == ["a", "b"]
    assert scope["client"][0] == "127.0.0.1"
    assert scope["server"] == ("127.0.0.1", port)
    assert "websocket.http.response" in scope["extensions"]
    assert isinstance(scope["state"], dict)
    assert (b"sec-websocket-version", b"13") in scope["headers"]


async def test_accept_with_subprotocol_and_headers() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send(
            {
                "type": "websocket.accept",
                "subprotocol": "b",
                "headers": [(b"x-extra", b"yes")],
            }
        )
        await receive()

    async with serve(app) as (port, _), connect(_url(port), subprotocols=["a", "b"]) as ws:
        assert ws.subprotocol == "b"
        assert ws.response.headers["x-extra"] == "yes"


async def test_close_code_and_reason_both_ways() -> None:
    disconnects: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        message = await receive()
        if message.get("text") == "close me":
            await send({"type": "websocket.close", "code": 4321, "reason": "as asked"})
        disconnects.append(await receive())

    async with serve(app) as (port, _):
        async with connect(_url(port)) as ws:
            await ws.send("close me")
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert (ws.close_code, ws.close_reason) == (4321, "as asked")
        async with connect(_url(port)) as ws:
            await ws.send("hello")
            await ws.close(4000, "client says bye")
        await _until(lambda: len(disconnects) == 2, "the second disconnect")
    assert disconnects[1] == {
        "type": "websocket.disconnect",
        "code": 4000,
        "reason": "client says bye",
    }


@pytest.mark.parametrize("code", [1006, 1015, 999, 2000, 5000])
async def test_close_codes_that_must_not_be_sent_are_an_app_error(code: int) -> None:
    """RFC 6455 §7.4: 1006/1015 and unregistered codes never reach the wire; the app gets
    a ValueError, and since it does not handle it, the client sees 1011."""
    errors: list[BaseException] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        try:
            await send({"type": "websocket.close", "code": code})
        except ValueError as exc:
            errors.append(exc)
            raise

    async with serve(app) as (port, _):
        client = await RawClient.connect(port)
        assert await client.read_close() == (1011, "")
        await client.close()
    assert len(errors) == 1


async def test_close_code_1005_from_the_app_sends_an_empty_close_frame() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1005})
        await receive()

    async with serve(app) as (port, _):
        client = await RawClient.connect(port)
        assert await client.read_frame() == (0x88, b"")
        await client.close()


async def test_send_after_disconnect_raises_oserror() -> None:
    outcome: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        assert (await receive())["type"] == "websocket.disconnect"
        try:
            await send({"type": "websocket.send", "text": "too late"})
        except OSError as exc:
            outcome.set_result(exc)
        else:
            outcome.set_result(None)

    async with serve(app) as (port, _):
        async with connect(_url(port)):
            pass
        assert isinstance(await asyncio.wait_for(outcome, TIMEOUT), WebSocketClosed)


# -- handshake ------------------------------------------------------------------------------


def _without(request: bytes, header: bytes) -> bytes:
    return b"\r\n".join(line for line in request.split(b"\r\n") if not line.startswith(header))


async def _app_never_called(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("an invalid handshake reached the app")


@pytest.mark.parametrize(
    ("request_factory", "status"),
    [
        (lambda port: upgrade_request(port, version="8"), 426),
        (lambda port: upgrade_request(port, key="not-base64!"), 400),
        (lambda port: upgrade_request(port, key="c2hvcnQ="), 400),
        (lambda port: upgrade_request(port, extra=[("Sec-WebSocket-Protocol", "a\x01b")]), 400),
        (lambda port: upgrade_request(port, extra=[("X-Evil", "a\x7fb")]), 400),
        (lambda port: upgrade_request(port).replace(b"HTTP/1.1", b"HTTP/1.0", 1), 400),
        (lambda port: upgrade_request(port, extra=[("Sec-WebSocket-Key", "x" * 24)]), 400),
        (lambda port: _without(upgrade_request(port), b"Sec-WebSocket-Key"), 400),
        (lambda port: _without(upgrade_request(port), b"Sec-WebSocket-Version"), 426),
    ],
    ids=[
        "version-8",
        "key-not-base64",
        "key-short",
        "control-byte",
        "del-byte",
        "http-1.0",
        "two-keys",
        "no-key",
        "no-version",
    ],
)
async def test_invalid_handshakes_get_4xx(request_factory: Any, status: int) -> None:
    async with serve(_app_never_called) as (port, _):
        client = await RawClient.connect(port, request_factory(port))
        assert client.status == status
        if status == 426:
            assert b"sec-websocket-version: 13" in client.response_head.lower()
        await client.close()


async def test_denial_response_extension() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 401,
                "headers": [(b"www-authenticate", b"Bearer")],
            }
        )
        await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"entry"})

    async with serve(app) as (port, _):
        with pytest.raises(InvalidStatus) as caught:
            async with connect(_url(port)):
                pass
    response = caught.value.response
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.body == b"no entry"


async def test_close_before_accept_is_403() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.close"})

    async with serve(app) as (port, _):
        with pytest.raises(InvalidStatus) as caught:
            async with connect(_url(port)):
                pass
    assert caught.value.response.status_code == 403


async def test_app_error_before_accept_is_500_and_after_accept_is_1011(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        if scope["path"] == "/late":
            await send({"type": "websocket.accept"})
            await receive()
        raise RuntimeError("boom")

    async with serve(app) as (port, _):
        with pytest.raises(InvalidStatus) as caught:
            async with connect(_url(port, "/early")):
                pass
        assert caught.value.response.status_code == 500
        async with connect(_url(port, "/late")) as ws:
            await ws.send("trigger")
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert ws.close_code == 1011
    assert "boom" in caplog.text


@pytest.mark.parametrize(
    "message",
    [
        {"type": "websocket.accept", "headers": [(b"x-evil", b"a\x01b")]},
        {"type": "websocket.accept", "headers": [(b"x evil", b"v")]},
        {"type": "websocket.accept", "subprotocol": "a\x01b"},
        {"type": "websocket.http.response.start", "status": 401, "headers": [(b"x", b"a\x7f")]},
    ],
    ids=["accept value", "accept name", "subprotocol", "denial value"],
)
async def test_bad_app_header_on_the_handshake_is_500_and_never_sent(
    message: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send(message)

    async with serve(app) as (port, _):
        with pytest.raises(InvalidStatus) as caught:
            async with connect(_url(port)):
                pass
    response = caught.value.response
    assert response.status_code == 500
    assert "x-evil" not in response.headers and "x" not in response.headers
    assert "Exception inside WebSocket application" in caplog.text


async def test_app_error_during_a_denial_completes_the_denial_it_started(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.http.response.start", "status": 401, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b"part", "more_body": True})
        raise RuntimeError("denial interrupted")

    async with serve(app) as (port, _):
        with pytest.raises(InvalidStatus) as caught:
            async with connect(_url(port)):
                pass
    assert caught.value.response.status_code == 401
    assert caught.value.response.body == b"part"
    assert "denial interrupted" in caplog.text


async def test_app_returning_before_accept_is_403_and_after_accept_closes_1000() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        if scope["path"] == "/accepted":
            await send({"type": "websocket.accept"})

    async with serve(app) as (port, _):
        with pytest.raises(InvalidStatus) as caught:
            async with connect(_url(port, "/plain")):
                pass
        assert caught.value.response.status_code == 403
        async with connect(_url(port, "/accepted")) as ws:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert ws.close_code == 1000


# -- limits ---------------------------------------------------------------------------------


async def test_oversized_message_refused_on_its_header_without_buffering() -> None:
    """CVE-2026-44545: only the header of a 1 TiB frame is sent; the server answers 1009 at once."""
    async with serve(echo_app, websocket_max_message_size=1024) as (port, _):
        client = await RawClient.connect(port)
        assert client.status == 101
        client.send(struct.pack("!BBQ", 0x82, 0xFF, 1 << 40) + b"mask")
        assert (await client.read_close())[0] == 1009
        await client.close()


async def test_frame_and_message_limits_and_zero_for_unlimited() -> None:
    async with serve(echo_app, websocket_max_frame_size=100, websocket_max_message_size=0) as (
        port,
        _,
    ):
        async with connect(_url(port), max_size=None, compression=None) as ws:
            await ws.send([b"a" * 100, b"b" * 100, b"c" * 100])  # fragments within the frame limit
            assert (
                await asyncio.wait_for(ws.recv(), TIMEOUT) == b"a" * 100 + b"b" * 100 + b"c" * 100
            )
            await ws.send(b"z" * 101)
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert ws.close_code == 1009


async def test_protocol_error_over_the_wire_closes_1002() -> None:
    async with serve(echo_app) as (port, _):
        client = await RawClient.connect(port)
        client.send(b"\x81\x02hi")  # unmasked client frame
        assert (await client.read_close())[0] == 1002
        await client.read_eof()
        await client.close()


async def test_ping_is_answered_with_pong_between_fragments() -> None:
    async with serve(echo_app) as (port, _):
        client = await RawClient.connect(port)
        client.send(
            client_frame(1, b"Hel", fin=False)
            + client_frame(9, b"are you there")
            + client_frame(0, b"lo")
        )
        assert await client.read_frame() == (0x8A, b"are you there")
        assert await client.read_frame() == (0x81, b"Hello")
        client.send(client_frame(8, struct.pack("!H", 1000)))
        assert await client.read_close() == (1000, "")
        assert await client.read_eof() == b""
        await client.close()


# -- permessage-deflate ---------------------------------------------------------------------


async def test_permessage_deflate_negotiated_and_used() -> None:
    async with serve(echo_app) as (port, _):
        async with connect(_url(port)) as ws:
            assert "permessage-deflate" in ws.response.headers["sec-websocket-extensions"]
            for message in ["compress me " * 500, b"\x00" * 100_000, "short"]:
                await ws.send(message)
                assert await asyncio.wait_for(ws.recv(), TIMEOUT) == message
        raw = await RawClient.connect(
            port, upgrade_request(port, extra=[("Sec-WebSocket-Extensions", "permessage-deflate")])
        )
        compressor = zlib.compressobj(wbits=-15)
        payload = compressor.compress(b"spam " * 100) + compressor.flush(zlib.Z_SYNC_FLUSH)
        raw.send(client_frame(1, payload[:-4], rsv=0x40))
        first, body = await raw.read_frame()
        assert first == 0xC1  # FIN + RSV1 + text: the echo is compressed
        assert (
            zlib.decompressobj(wbits=-15).decompress(body + b"\x00\x00\xff\xff") == b"spam " * 100
        )
        await raw.close()


async def test_garbled_deflate_offer_is_declined_not_an_error() -> None:
    """Fuzzing finding: a superscript digit in window bits made the accept raise (HTTP 500)."""
    offer = 'permessage-deflate; client_max_window_bits="\u00b9"'
    async with serve(echo_app) as (port, _):
        client = await RawClient.connect(
            port, upgrade_request(port, extra=[("Sec-WebSocket-Extensions", offer)])
        )
        assert client.status == 101
        assert b"sec-websocket-extensions" not in client.response_head.lower()
        client.send(client_frame(1, b"plain"))
        assert await client.read_frame() == (0x81, b"plain")
        await client.close()


async def test_permessage_deflate_can_be_disabled() -> None:
    async with serve(echo_app, ws_per_message_deflate=False) as (port, _):
        ws = await connect(_url(port))
        assert "sec-websocket-extensions" not in ws.response.headers
        await ws.send("x" * 1000)
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "x" * 1000
        await ws.close()


async def test_decompressed_size_limit_over_the_wire() -> None:
    async with serve(echo_app, websocket_max_message_size=10_000) as (port, _):
        async with connect(_url(port), max_size=None) as ws:
            await ws.send(b"\x00" * 5_000_000)  # compresses to a few KiB
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert ws.close_code == 1009


# -- keepalive and timeouts -----------------------------------------------------------------


async def test_keepalive_ping_sent_and_pong_keeps_the_connection() -> None:
    async with serve(echo_app, ping_interval=0.05, ping_timeout=5) as (port, _):
        client = await RawClient.connect(port)
        for _ in range(3):
            first, payload = await client.read_frame()
            assert first == 0x89
            client.send(client_frame(10, payload))
        client.send(client_frame(1, b"still here"))
        while (frame := await client.read_frame())[0] == 0x89:
            client.send(client_frame(10, frame[1]))
        assert frame == (0x81, b"still here")
        await client.close()


async def test_keepalive_drops_a_silent_client() -> None:
    disconnected: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        disconnected.set_result(await receive())

    async with serve(app, ping_interval=0.05, ping_timeout=0.1) as (port, _):
        client = await RawClient.connect(port)
        first, _payload = await client.read_frame()
        assert first == 0x89  # and we never answer
        await client.read_eof()
        message = await asyncio.wait_for(disconnected, TIMEOUT)
        assert message["type"] == "websocket.disconnect"
        await client.close()


async def test_ping_timeout_zero_never_drops_a_silent_client() -> None:
    """``--ping-timeout 0``: pings are sent, but a client that never answers is kept."""
    async with serve(echo_app, ping_interval=0.05, ping_timeout=0) as (port, server):
        client = await RawClient.connect(port)
        first, _payload = await client.read_frame()
        assert first == 0x89  # the keepalive ping, never answered
        await asyncio.sleep(0.5)  # ten ping intervals of silence: the window being tested
        [connection] = list(server.state.connections)
        assert not connection.closed
        client.send(client_frame(1, b"still here"))
        while (frame := await client.read_frame())[0] == 0x89:
            pass
        assert frame == (0x81, b"still here")
        await client.close()


async def test_keepalive_spares_a_client_the_server_stopped_reading() -> None:
    """Regression: while the app is behind and reading is paused, pongs cannot be seen;
    the keepalive must not drop the (healthy) client for that."""
    go = asyncio.Event()

    async def lazy(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await go.wait()
        count = 0
        while (await receive())["type"] == "websocket.receive":
            count += 1
            if count == 100:
                await send({"type": "websocket.send", "text": "got all"})

    options = {"websocket_receive_queue": 4, "ping_interval": 0.05, "ping_timeout": 0.1}
    async with (
        serve(lazy, **options) as (port, server),
        connect(_url(port), ping_interval=None) as ws,
    ):
        for index in range(100):
            await ws.send(str(index))
        [connection] = list(server.state.connections)
        await _until(lambda: connection.reading_paused, "reading to pause")
        await asyncio.sleep(0.5)  # many ping intervals + timeouts while paused
        assert not connection.closed
        go.set()
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "got all"


async def test_wss_scheme_over_tls(tmp_path: Path) -> None:
    authority = trustme.CA()
    cert = authority.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    schemes: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        schemes.append(scope["scheme"])
        await echo_app(scope, receive, send)

    tls = {"ssl_certfile": str(certfile), "ssl_keyfile": str(keyfile)}
    async with serve_on_port(app, **tls) as server:
        port = server.addresses[0][1]
        async with connect(f"wss://127.0.0.1:{port}/", ssl=client_context) as ws:
            await ws.send("secure " * 100)
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "secure " * 100
    assert schemes == ["wss"]


async def test_websocket_timeout_closes_after_the_maximum_lifetime() -> None:
    async with serve(echo_app, websocket_timeout=0.2) as (port, _), connect(_url(port)) as ws:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert ws.close_code == 1000


async def test_connect_timeout_denies_a_slow_app_and_minus_one_waits() -> None:
    release = asyncio.Event()

    async def slow_app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await release.wait()
        await send({"type": "websocket.accept"})
        await receive()

    async with serve(slow_app, websocket_connect_timeout=0.1) as (port, _):
        with pytest.raises(InvalidStatus) as caught:
            async with connect(_url(port)):
                pass
        assert caught.value.response.status_code == 403
        release.set()
    release.clear()
    async with serve(slow_app, websocket_connect_timeout=-1) as (port, _):
        asyncio.get_running_loop().call_later(0.3, release.set)
        async with connect(_url(port), open_timeout=TIMEOUT) as ws:
            assert ws.protocol.state is websockets.protocol.State.OPEN


async def test_application_close_timeout_cancels_a_stuck_app() -> None:
    cancelled = asyncio.Event()

    async def stubborn(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await receive()
        try:
            await asyncio.sleep(60)  # ignores the disconnect
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with serve(stubborn, application_close_timeout=0.1) as (port, _):
        async with connect(_url(port)):
            pass
        await asyncio.wait_for(cancelled.wait(), TIMEOUT)


# -- back-pressure --------------------------------------------------------------------------


async def test_receive_queue_pauses_reading_until_the_app_catches_up() -> None:
    go = asyncio.Event()
    received: list[str] = []

    async def lazy(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await go.wait()
        while (message := await receive())["type"] == "websocket.receive":
            received.append(message["text"])
            if len(received) == 200:
                await send({"type": "websocket.send", "text": "got all"})

    async with serve(lazy, websocket_receive_queue=8) as (port, server):
        ws = await connect(_url(port))
        for index in range(200):
            await ws.send(str(index))
        [connection] = list(server.state.connections)
        await _until(lambda: connection.reading_paused, "reading to pause")
        go.set()
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "got all"
        assert not connection.reading_paused
        await ws.close()
    assert received == [str(index) for index in range(200)]


async def test_send_waits_while_the_client_does_not_read() -> None:
    sent = 0
    done = asyncio.Event()

    async def flood(scope: Any, receive: Any, send: Any) -> None:
        nonlocal sent
        await receive()
        await send({"type": "websocket.accept"})
        for _ in range(400):
            await send({"type": "websocket.send", "bytes": b"x" * 65536})
            sent += 1
        done.set()
        await receive()

    async with serve(flood, ws_per_message_deflate=False) as (port, server):
        client = await RawClient.connect(port)
        [connection] = list(server.state.connections)
        await _until(lambda: connection.write_paused, "the write buffer to fill")
        assert not done.is_set() and sent < 400
        total = 0
        while total < 400:
            first, payload = await client.read_frame()
            assert first == 0x82 and len(payload) == 65536
            total += 1
        await asyncio.wait_for(done.wait(), TIMEOUT)
        await client.close()


# -- shutdown and logging -------------------------------------------------------------------


async def test_graceful_shutdown_closes_1001_and_app_gets_disconnect() -> None:
    got: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message["text"]})
        got.set_result(message)

    async with serve(app) as (port, server), connect(_url(port)) as ws:
        await ws.send("before")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "before"
        server.shutdown()
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert ws.close_code == 1001
        message = await asyncio.wait_for(got, TIMEOUT)
        assert message["type"] == "websocket.disconnect" and message["code"] == 1001


async def test_access_log_lines_in_daphne_style() -> None:
    stream = io.StringIO()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        if scope["path"] == "/no":
            await send({"type": "websocket.close"})
            return
        await send({"type": "websocket.accept"})
        await receive()

    async with serve(app, access_log=AccessLogger(stream)) as (port, _):
        async with connect(_url(port, "/yes")):
            pass
        with pytest.raises(InvalidStatus):
            async with connect(_url(port, "/no")):
                pass
        await _until(lambda: "WSDISCONNECT /yes" in stream.getvalue(), "the disconnect line")
    lines = stream.getvalue()
    for expected in ("WSCONNECTING /yes", "WSCONNECT /yes", "WSDISCONNECT /yes", "WSREJECT /no"):
        assert f'"{expected}" - -' in lines


async def test_trusted_proxy_scheme_becomes_wss() -> None:
    schemes: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        schemes.append(scope["scheme"])
        await receive()
        await send({"type": "websocket.close"})

    async with serve(app, proxy_headers=True) as (port, _):
        forwarded = [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")]
        request = upgrade_request(port, extra=forwarded)
        client = await RawClient.connect(port, request)
        assert client.status == 403
        await client.close()
    assert schemes == ["wss"]


async def test_failed_connection_closes_once_the_client_answers() -> None:
    async with serve(echo_app) as (port, server):
        client = await RawClient.connect(port)
        client.send(client_frame(1, b"\xff"))  # invalid UTF-8
        assert (await client.read_close())[0] == 1007
        [connection] = list(server.state.connections)
        stream: Any = connection.handler
        assert "close" in stream._timers  # the server will close if the client does not
        client.send(client_frame(8, struct.pack("!H", 1007)))
        assert await client.read_eof() == b""
        await client.close()


async def test_accept_headers_with_control_bytes_are_refused() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept", "headers": [(b"x-bad", b"a\r\nSet-Cookie: x=1")]})

    async with serve(app) as (port, _):
        client = await RawClient.connect(port)
        assert client.status == 500
        assert b"set-cookie" not in client.response_head.lower()
        await client.close()


async def test_frames_sent_before_accept_are_kept_and_bounded() -> None:
    accept = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await accept.wait()
        await send({"type": "websocket.accept"})
        texts = []
        while len(texts) < 3:
            texts.append((await receive())["text"])
        await send({"type": "websocket.send", "text": ",".join(texts)})
        await receive()

    async with serve(app, ws_per_message_deflate=False) as (port, server):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(upgrade_request(port) + client_frame(1, b"early"))
        await _until(lambda: server.state.connections, "the server to accept the socket")
        [connection] = list(server.state.connections)
        writer.write(client_frame(1, b"x" * 70_000) + client_frame(1, b"late"))
        await _until(lambda: connection.reading_paused, "reading to pause before accept")
        accept.set()
        client = RawClient(reader, writer)
        client.response_head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert client.status == 101
        assert await client.read_frame() == (0x81, b"early," + b"x" * 70_000 + b",late")
        await client.close()


@pytest.mark.parametrize(
    "request_head",
    [
        "POST / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        "Content-Length: 0\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    ],
    ids=["post", "no-connection-upgrade"],
)
async def test_broken_upgrade_requests_never_reach_the_app(request_head: str) -> None:
    async with serve(_app_never_called) as (port, _):
        client = await RawClient.connect(port, request_head.encode())
        assert client.status == 400
        await client.close()


async def test_upgraded_socket_releases_its_http11_handler() -> None:
    # An idle WebSocket must not keep the HTTP/1.1 handler (parser, pipeline) it came from:
    # its keep-alive timer used to hold it until the timer fired.
    def handlers_of(server: Any) -> list[HTTP11Handler]:
        connections = set(server.state.connections)
        return [
            item
            for item in gc.get_objects()
            if isinstance(item, HTTP11Handler) and item.conn in connections
        ]

    async with serve(echo_app) as (port, server), connect(_url(port)) as ws:
        await ws.send("still open")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "still open"
        gc.collect()
        assert len(server.state.connections) == 1
        assert handlers_of(server) == []
