"""HTTP/2 through the real server: h2-library client, curl and nghttp, over cleartext h2c."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from pathlib import Path

import pytest
import trustme
from h2.errors import ErrorCodes
from hyperframe.frame import PingFrame, SettingsFrame

from headrace._types import Receive, Scope, Send
from headrace.server.endpoints import TLSFiles
from headrace.server.protocols.chunked import ChunkedBody
from headrace.server.protocols.http2 import PREFACE
from headrace.server.wires.http2 import HTTP2Handler

from .support import INITIAL_WINDOW_SIZE, h2_client, run_process, serve


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Echo: reports method/path/version, digests the body, answers /big/N with N bytes."""
    assert scope["type"] == "http"
    path = scope["path"]
    if path.startswith("/big/"):
        size = int(path.removeprefix("/big/"))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        chunk = b"x" * 65536
        sent = 0
        while sent < size:
            part = chunk[: size - sent]
            sent += len(part)
            await send({"type": "http.response.body", "body": part, "more_body": sent < size})
        return
    digest = hashlib.sha256()
    length = 0
    while True:
        message = await receive()
        body = message.get("body", b"")
        digest.update(body)
        length += len(body)
        if not message.get("more_body"):
            break
    host = dict(scope["headers"]).get(b"host", b"").decode()
    fields = [scope["method"], path, scope["query_string"].decode(), scope["http_version"]]
    fields += [scope["scheme"], str(length), digest.hexdigest(), host]
    text = "|".join(fields)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": text.encode()})


async def test_get_with_h2_client_has_http2_scope() -> None:
    async with serve(echo_app) as (port, _), h2_client(port) as client:
        response = await client.request("/p%20q?a=1")
    assert response.status == 200
    method, path, query, version, scheme, length, _, host = response.body.decode().split("|")
    assert (method, path, query, version, scheme, length) == (
        "GET",
        "/p q",
        "a=1",
        "2",
        "http",
        "0",
    )
    assert host == "localhost"
    assert response.header(b"connection") is None  # connection-specific fields never sent
    assert response.header(b"server") == b"headrace"


async def test_one_mebibyte_upload_through_flow_control() -> None:
    body = bytes(range(256)) * 4096
    async with serve(echo_app) as (port, _), h2_client(port) as client:
        response = await client.request("/upload", "POST", body=body)
    fields = response.body.decode().split("|")
    assert fields[5] == str(len(body))
    assert fields[6] == hashlib.sha256(body).hexdigest()


async def test_eight_mebibyte_download_through_small_client_window() -> None:
    size = 8 * 1024 * 1024
    settings = {INITIAL_WINDOW_SIZE: 16384}
    async with serve(echo_app) as (port, _), h2_client(port, settings=settings) as client:
        response = await client.request(f"/big/{size}")
    assert response.status == 200
    assert len(response.body) == size


async def test_hundred_concurrent_streams() -> None:
    async with serve(echo_app) as (port, _), h2_client(port) as client:
        ids = [client.start(f"/s/{index}") for index in range(100)]
        responses = await asyncio.gather(*(client.response(sid) for sid in ids))
    paths = sorted(r.body.decode().split("|")[1] for r in responses)
    assert paths == sorted(f"/s/{index}" for index in range(100))
    assert all(r.status == 200 for r in responses)


async def test_window_reopens_only_as_the_app_reads() -> None:
    release = asyncio.Event()
    consumed: list[int] = []

    async def slow_reader(scope: Scope, receive: Receive, send: Send) -> None:
        await release.wait()
        total = 0
        while True:
            message = await receive()
            total += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        consumed.append(total)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    window = 32768
    async with (
        serve(slow_reader, http2_initial_window_size=window) as (port, _),
        h2_client(port) as client,
    ):
        stream_id = client.start("/", "POST", end_stream=False)
        sending = asyncio.create_task(client.send_body(stream_id, b"y" * (3 * window)))
        await asyncio.sleep(0)
        for _ in range(50):
            if client.conn.local_flow_control_window(stream_id) == 0:
                break
            await asyncio.sleep(0.02)
        # The app has read nothing: the stream window stays shut.
        assert client.conn.local_flow_control_window(stream_id) == 0
        assert not sending.done()
        release.set()
        await asyncio.wait_for(sending, 10)
        response = await client.response(stream_id)
    assert response.status == 204
    assert consumed == [3 * window]


async def test_app_failure_mid_response_resets_stream() -> None:
    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("boom")

    async with serve(failing) as (port, _), h2_client(port) as client:
        response = await client.request("/")
    assert response.reset_code == ErrorCodes.INTERNAL_ERROR


async def test_app_failure_before_response_is_500() -> None:
    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    async with serve(failing) as (port, _), h2_client(port) as client:
        response = await client.request("/")
    assert response.status == 500


async def test_trailers_and_early_hints_extensions() -> None:
    seen: list[dict[str, object]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["extensions"])
        await send({"type": "http.response.early_hint", "links": [b"</s.css>; rel=preload"]})
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"data", "more_body": False})
        await send(
            {
                "type": "http.response.trailers",
                "headers": [(b"x-sum", b"42")],
                "more_trailers": False,
            }
        )

    async with serve(app) as (port, _), h2_client(port) as client:
        response = await client.request("/")
    assert "http.response.trailers" in seen[0]
    assert "http.response.early_hint" in seen[0]
    assert "tls" not in seen[0]
    assert dict(response.informational[0])[b":status"] == b"103"
    assert dict(response.informational[0])[b"link"] == b"</s.css>; rel=preload"
    assert bytes(response.body) == b"data"
    assert response.trailers == [(b"x-sum", b"42")]


async def test_head_response_has_no_body() -> None:
    async with serve(echo_app) as (port, _), h2_client(port) as client:
        response = await client.request("/", "HEAD")
    assert response.status == 200
    assert bytes(response.body) == b""


async def test_request_trailers_are_ignored() -> None:
    async with serve(echo_app) as (port, _), h2_client(port) as client:
        stream_id = client.start("/t", "POST", end_stream=False)
        await client.send_body(stream_id, b"abc", end_stream=False)
        client.conn.send_headers(stream_id, [(b"x-trailer", b"1")], end_stream=True)
        client.flush()
        response = await client.response(stream_id)
    assert response.body.decode().split("|")[5] == "3"


async def test_ping_is_answered() -> None:
    async with serve(echo_app) as (port, _), h2_client(port) as client:
        client.conn.ping(b"abcdefgh")
        client.flush()
        await asyncio.wait_for(client.ping_acked.wait(), 10)
    assert client.ping_acks == 1


async def test_malformed_request_is_reset_and_connection_survives() -> None:
    async with serve(echo_app) as (port, _), h2_client(port) as client:
        client.conn.config.validate_outbound_headers = False
        client.conn.config.normalize_outbound_headers = False
        bad = client.start("/", headers=[(b"Bad", b"x")])
        also_bad = client.start("/", headers=[(b"te", b"gzip")])
        assert (await client.response(bad)).reset_code == ErrorCodes.PROTOCOL_ERROR
        assert (await client.response(also_bad)).reset_code == ErrorCodes.PROTOCOL_ERROR
        good = await client.request("/")
    assert good.status == 200


async def test_protocol_violation_gets_goaway() -> None:
    async with serve(echo_app) as (port, _), h2_client(port) as client:
        client.send_raw(b"\x00\x00\x08\x06\x00\x00\x00\x00\x01" + b"12345678")
        await asyncio.wait_for(client.closed.wait(), 10)
    assert client.goaway is not None
    assert client.goaway.error_code == ErrorCodes.PROTOCOL_ERROR


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    """(type, payload) of each complete frame in ``data``."""
    frames = []
    while len(data) >= 9:
        length = int.from_bytes(data[:3], "big")
        if len(data) < 9 + length:
            break
        frames.append((data[3], data[9 : 9 + length]))
        data = data[9 + length :]
    return frames


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "h2-tls"])
async def test_goaway_is_read_by_a_peer_still_sending_not_destroyed_by_a_reset(
    tls: bool, tmp_path: Path
) -> None:
    """After its last frame the server drains input before closing (lingering close).

    The peer sends a protocol violation followed by a megabyte it wrote before it could see
    the GOAWAY. Closing with those bytes unread would make the kernel reset the connection,
    and a reset discards the GOAWAY on the peer's side (h2spec reports such resets).
    """
    tls_files, client_context = _tls_material(tmp_path) if tls else (None, None)
    ping_on_a_stream = b"\x00\x00\x08\x06\x00\x00\x00\x00\x01" + b"12345678"
    more = b"".join(PingFrame(0, opaque_data=b"%08d" % n).serialize() for n in range(60_000))
    async with serve(echo_app, tls=tls_files) as (port, _):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context, server_hostname="localhost" if tls else None
        )
        writer.write(PREFACE + SettingsFrame(0).serialize() + ping_on_a_stream + more)
        received = b""
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), 10)
            if not chunk:
                break
            received += chunk
        writer.close()
    goaways = [payload for kind, payload in _frames(received) if kind == 0x7]
    assert goaways, "no GOAWAY before the close"
    assert int.from_bytes(goaways[-1][4:8], "big") == ErrorCodes.PROTOCOL_ERROR


def _tls_material(tmp_path: Path) -> tuple[TLSFiles, ssl.SSLContext]:
    authority = trustme.CA()
    leaf = authority.issue_cert("localhost", "127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    leaf.private_key_pem.write_to_path(str(key))
    cert.write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
    context = ssl.create_default_context()
    authority.configure_trust(context)
    context.set_alpn_protocols(["h2"])
    return TLSFiles(certfile=str(cert), keyfile=str(key)), context


async def test_settings_flood_gets_enhance_your_calm() -> None:
    async with serve(echo_app) as (port, _), h2_client(port) as client:
        client.send_raw(b"".join(SettingsFrame(0).serialize() for _ in range(3000)))
        await asyncio.wait_for(client.closed.wait(), 10)
    assert client.goaway is not None
    assert client.goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM


async def test_rapid_reset_gets_enhance_your_calm() -> None:
    async with serve(echo_app) as (port, _), h2_client(port) as client:
        for _ in range(400):
            if client.closed.is_set() or client.goaway is not None:
                break
            stream_id = client.start("/")
            client.conn.reset_stream(stream_id, ErrorCodes.CANCEL)
            client.flush()
            await asyncio.sleep(0)
        await asyncio.wait_for(client.closed.wait(), 10)
    assert client.goaway is not None
    assert client.goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM


async def test_no_http2_refuses_preface() -> None:
    async with serve(echo_app, http2=False) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(PREFACE)
        head = await asyncio.wait_for(reader.read(100), 10)
        writer.close()
    assert head.startswith(b"HTTP/1.1 505")


async def test_curl_prior_knowledge_and_upgrade_with_body() -> None:
    async with serve(echo_app) as (port, _):
        url = f"http://127.0.0.1:{port}/c?x=1"
        status, out, err = await run_process(
            "curl", "-sS", "--http2-prior-knowledge", "-w", " %{http_version}", url
        )
        assert status == 0, err
        assert out.decode().split("|")[3] == "2"
        assert out.decode().endswith(" 2")
        status, out, err = await run_process(
            "curl", "-sS", "--http2", "-d", "hello", "-w", " %{http_version}", url
        )
        assert status == 0, err
        fields = out.decode().split("|")
        assert fields[0] == "POST"
        assert fields[7].startswith(f"127.0.0.1:{port}")  # host survives the upgrade
        assert fields[5] == "5"
        assert fields[6] == hashlib.sha256(b"hello").hexdigest()
        assert out.decode().endswith(" 2")
        chunked = ("curl", "-sS", "--http2", "-H", "Transfer-Encoding: chunked", "-d", "abc")
        status, out, err = await run_process(*chunked, "-w", " %{http_version}", url)
        assert status == 0, err
        assert out.decode().split("|")[5] == "3"
        assert out.decode().endswith(" 2")


async def test_curl_upgrade_without_body_gets_101_at_once() -> None:
    # curl sends a body-less GET with Upgrade: h2c and waits for the 101 before anything else.
    async with serve(echo_app) as (port, _):
        url = f"http://127.0.0.1:{port}/plain-get"
        status, out, err = await run_process(
            "curl", "-sS", "--max-time", "10", "--http2", "-w", " %{http_version}", url
        )
    assert status == 0, err
    assert out.decode().split("|")[0] == "GET"
    assert out.decode().endswith(" 2")


def test_chunked_upgrade_body_decoder() -> None:
    body = ChunkedBody(limit=100)
    assert body.feed(b"3;ext=1\r\nabc\r\n1") is None
    assert body.feed(b"0\r\nxxxxxxxxxxxxxxxx\r\n0\r\nTrailer: x\r\n\r\nPRI *") == b"PRI *"
    assert bytes(body.body) == b"abc" + b"x" * 16
    with pytest.raises(ValueError):
        ChunkedBody(limit=10).feed(b"ff\r\n")
    with pytest.raises(ValueError):
        ChunkedBody(limit=10).feed(b"zz\r\n")


async def test_nghttp_with_tiny_windows(tmp_path: Path) -> None:
    upload = tmp_path / "upload.bin"
    payload = bytes(range(256)) * 1024
    upload.write_bytes(payload)
    async with serve(echo_app) as (port, _):
        url = f"http://127.0.0.1:{port}/big/300000"
        status, out, err = await run_process("nghttp", "-w", "10", "-W", "16", url, limit=60)
        assert status == 0, err
        assert len(out) == 300000
        url = f"http://127.0.0.1:{port}/u"
        argv = ("nghttp", "-w", "10", "-W", "16", "-d", str(upload), url)
        status, out, err = await run_process(*argv, limit=60)
        assert status == 0, err
        fields = out.decode().split("|")
        assert fields[5] == str(len(payload))
        assert fields[6] == hashlib.sha256(payload).hexdigest()


async def test_goaway_during_shutdown_lets_in_flight_stream_finish() -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        started.set()
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"finished"})

    async with serve(slow) as (port, server), h2_client(port) as client:
        stream_id = client.start("/")
        await asyncio.wait_for(started.wait(), 10)
        server.shutdown()
        await asyncio.wait_for(client.goaway_received.wait(), 10)
        assert client.goaway is not None
        assert client.goaway.error_code == ErrorCodes.NO_ERROR
        assert client.goaway.last_stream_id == stream_id
        release.set()
        response = await client.response(stream_id)
        assert bytes(response.body) == b"finished"
        await asyncio.wait_for(client.closed.wait(), 10)


async def test_no_http2_serves_h2c_upgrade_as_http11() -> None:
    async with serve(echo_app, http2=False) as (port, _):
        url = f"http://127.0.0.1:{port}/plain"
        status, out, err = await run_process(
            "curl", "-sS", "--http2", "-w", "|%{http_version}", url
        )
    assert status == 0, err
    assert out.decode().endswith("|1.1")
    assert out.decode().split("|")[3] == "1.1"


async def test_limits_apply_to_http2_streams() -> None:
    async with (
        serve(echo_app, max_request_body_size=1000) as (port, _),
        h2_client(port) as client,
    ):
        response = await client.request("/upload", "POST", body=b"z" * 5000)
    assert response.status == 413


async def test_declared_body_over_the_limit_is_413_before_the_app_runs() -> None:
    """As over HTTP/1.1: a Content-Length above the limit is answered before any body."""
    calls: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        calls.append(scope["path"])
        await echo_app(scope, receive, send)

    async with (
        serve(app, max_request_body_size=1000) as (port, _),
        h2_client(port) as client,
    ):
        headers = [(b"content-length", b"5000")]
        stream_id = client.start("/upload", "POST", headers, end_stream=False)
        response = await client.response(stream_id)
        small = await client.request("/small", "POST", body=b"z" * 10)
    assert response.status == 413
    assert response.body == b"Content Too Large\n"
    assert small.status == 200
    assert calls == ["/small"]


async def test_idle_connection_is_closed_with_goaway() -> None:
    async with (
        serve(echo_app, timeout_keep_alive=0.3) as (port, _),
        h2_client(port) as client,
    ):
        await client.request("/")
        await asyncio.wait_for(client.closed.wait(), 10)
    assert client.goaway is not None
    assert client.goaway.error_code == ErrorCodes.NO_ERROR


async def test_trusted_proxy_headers_over_http2() -> None:
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    headers = [(b"x-forwarded-for", b"10.1.2.3"), (b"x-forwarded-proto", b"https")]
    async with serve(app, proxy_headers=True) as (port, _), h2_client(port) as client:
        await client.request("/", headers=headers)
    assert seen[0]["client"] == ("10.1.2.3", 0)
    assert seen[0]["scheme"] == "https"


async def test_invalid_response_header_becomes_500() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"x-evil", b"a\r\nset-cookie: x=1")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"never"})

    async with serve(app) as (port, _), h2_client(port) as client:
        response = await client.request("/")
    assert response.status == 500
    assert response.header(b"x-evil") is None


BAD_FIELDS = {
    "control byte in value": (b"x-evil", b"a\x01b"),
    "DEL in value": (b"x-evil", b"a\x7fb"),
    "NUL in value": (b"x-evil", b"a\x00b"),
    "space in name": (b"x evil", b"v"),
    "colon in name": (b"x-evil:", b"v"),
}


@pytest.mark.parametrize("field", BAD_FIELDS.values(), ids=list(BAD_FIELDS))
async def test_response_field_refused_on_http11_is_refused_on_http2(
    field: tuple[bytes, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    """Regression: HTTP/2 sent b"a\\x01b" as is while HTTP/1.1 answered 500 (header injection)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/trailer":
            await send({"type": "http.response.start", "status": 200, "trailers": True})
            await send({"type": "http.response.body", "body": b"partial"})
            await send({"type": "http.response.trailers", "headers": [field]})
            return
        await send({"type": "http.response.start", "status": 200, "headers": [field]})
        await send({"type": "http.response.body", "body": b"never"})

    async with serve(app) as (port, _), h2_client(port) as client:
        head = await client.request("/")
        trailer = await client.request("/trailer")
    assert head.status == 500
    assert head.body == b"Internal Server Error\n"
    assert all(name != field[0].lower() for name, _ in head.headers)
    assert trailer.reset_code == ErrorCodes.INTERNAL_ERROR
    assert all(value != field[1] for _, value in trailer.trailers)
    assert "Exception in ASGI application" in caplog.text


async def test_response_fields_trailers_and_links_are_normalised_or_refused() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/bad-trailer":
            await send({"type": "http.response.start", "status": 200, "trailers": True})
            await send({"type": "http.response.body", "body": b"partial"})
            trailers = [(b"x-bad", b"a\nb")]
            await send({"type": "http.response.trailers", "headers": trailers})
            return
        if scope["path"] == "/bad-link":
            await send({"type": "http.response.early_hint", "links": [b"</a>\r\nx: y"]})
        headers = [(b"X-Padded", b"  v \t")]
        await send(
            {"type": "http.response.start", "status": 200, "headers": headers, "trailers": True}
        )
        await send({"type": "http.response.body", "body": b"ok"})
        trailers = [(b"X-Sum", b" 1"), (b"Connection", b"close")]
        await send({"type": "http.response.trailers", "headers": trailers, "more_trailers": True})
        await send({"type": "http.response.trailers", "headers": [(b"x-more", b"2")]})

    async with serve(app) as (port, _), h2_client(port) as client:
        good = await client.request("/")
        bad_trailer = await client.request("/bad-trailer")
        bad_link = await client.request("/bad-link")
    # h2 (like browsers) rejects upper-case names and values with surrounding whitespace.
    assert good.header(b"x-padded") == b"v"
    assert good.trailers == [(b"x-sum", b"1"), (b"x-more", b"2")]
    assert bad_trailer.reset_code == ErrorCodes.INTERNAL_ERROR
    assert bad_link.status == 500
    assert bad_link.informational == []


async def test_h2c_upgrade_without_http2_settings_is_served_as_http11() -> None:
    async with serve(echo_app) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /no-settings HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n"
            b"Upgrade: h2c\r\n\r\n"
        )
        data = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    # RFC 7540 §3.2.1: no HTTP2-Settings, no upgrade; the request is answered in HTTP/1.1.
    assert data.startswith(b"HTTP/1.1 200"), data[:80]
    assert data.partition(b"\r\n\r\n")[2].split(b"|")[:4] == [b"GET", b"/no-settings", b"", b"1.1"]


async def test_internal_error_in_the_handler_is_goaway_internal_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_scope(*args: object) -> None:
        raise RuntimeError("injected fault")

    # Fault injection: a bug in the handler must not escape into the event loop.
    monkeypatch.setattr(HTTP2Handler, "_http_scope", broken_scope)
    async with serve(echo_app) as (port, _), h2_client(port) as client:
        client.start("/")
        await asyncio.wait_for(client.closed.wait(), 10)
    assert client.goaway is not None
    assert client.goaway.error_code == ErrorCodes.INTERNAL_ERROR
    assert "error while handling HTTP/2 frames" in caplog.text
