"""One test per flag behaviour that can run in-process: root path, proxies, names, TLS, shutdown."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from headrace._types import Receive, Scope, Send
from headrace.server.lifespan import LifespanFailure
from headrace.server.server import Server
from headrace.server.wires import http11
from tests.server.helpers import (
    WAIT,
    open_raw,
    read_response,
    read_until_closed,
    scope_app,
    serve,
    text_app,
    url,
)


async def get_scope(server: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        response = await client.get(url(server, "/p"), headers=headers)
    result: dict[str, Any] = response.json()
    return result


async def test_root_path_option() -> None:
    async with serve(scope_app, root_path="/mount") as server:
        scope = await get_scope(server)
    assert scope["root_path"] == "/mount"


async def test_daphne_root_path_header_from_trusted_peer() -> None:
    async with serve(scope_app, root_path="/mount") as server:
        scope = await get_scope(server, {"Daphne-Root-Path": "/from%20proxy"})
    assert scope["root_path"] == "/from proxy"


async def test_daphne_root_path_header_from_untrusted_peer_ignored() -> None:
    async with serve(scope_app, root_path="/mount", forwarded_allow_ips=("10.9.9.9",)) as server:
        scope = await get_scope(server, {"Daphne-Root-Path": "/spoofed"})
    assert scope["root_path"] == "/mount"


PROXY_HEADERS = {
    "X-Forwarded-For": "203.0.113.7, 10.0.0.1",
    "X-Forwarded-Port": "4431",
    "X-Forwarded-Proto": "https",
}


async def test_proxy_headers_from_trusted_peer() -> None:
    async with serve(scope_app, proxy_headers=True) as server:
        scope = await get_scope(server, PROXY_HEADERS)
    assert scope["client"] == ["203.0.113.7", 4431]
    assert scope["scheme"] == "https"


async def test_proxy_headers_from_untrusted_peer_ignored() -> None:
    async with serve(scope_app, proxy_headers=True, forwarded_allow_ips=("10.0.0.0/8",)) as server:
        scope = await get_scope(server, PROXY_HEADERS)
    assert scope["client"][0] == "127.0.0.1"
    assert scope["scheme"] == "http"


async def test_proxy_headers_off_by_default() -> None:
    async with serve(scope_app) as server:
        scope = await get_scope(server, PROXY_HEADERS)
    assert scope["client"][0] == "127.0.0.1"


async def test_proxy_headers_host_and_port_names() -> None:
    options = {
        "proxy_headers": True,
        "proxy_headers_host": "X-Real-IP",
        "forwarded_allow_ips": ("*",),
    }
    async with serve(scope_app, proxy_headers_port="X-Real-Port", **options) as server:
        scope = await get_scope(server, {"X-Real-IP": "198.51.100.2", "X-Real-Port": "99"})
    assert scope["client"] == ["198.51.100.2", 99]


async def test_server_name_option_and_no_server_name() -> None:
    async with serve(text_app, server_name="edge/1") as server, httpx.AsyncClient() as client:
        named = await client.get(url(server))
    async with serve(text_app, server_name="") as server, httpx.AsyncClient() as client:
        anonymous = await client.get(url(server))
    assert named.headers["server"] == "edge/1"
    assert "server" not in anonymous.headers


async def test_tls_with_ssl_certfile(tmp_path: Path) -> None:
    authority = trustme.CA()
    cert = authority.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    async with serve(scope_app, ssl_certfile=str(certfile), ssl_keyfile=str(keyfile)) as server:
        port = server.addresses[0][1]
        async with httpx.AsyncClient(verify=client_context) as client:
            response = await client.get(f"https://127.0.0.1:{port}/secure")
    assert response.json()["scheme"] == "https"


async def test_tls_close_delimited_response_ends_without_lingering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An HTTP/1.0 streamed body ends with the close. TLS cannot half-close, so the server must
    # close at once (nothing is unread) instead of lingering for the client's EOF.
    monkeypatch.setattr(http11, "LINGER_TIMEOUT", 3600.0)  # a linger would outlast WAIT
    authority = trustme.CA()
    cert = authority.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)

    async def streaming(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async with serve(streaming, ssl_certfile=str(certfile), ssl_keyfile=str(keyfile)) as server:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", server.addresses[0][1], ssl=client_context, server_hostname="127.0.0.1"
        )
        writer.write(b"GET / HTTP/1.0\r\n\r\n")
        raw = await read_until_closed(reader)
        writer.close()
    assert raw.startswith(b"HTTP/1.0 200 OK\r\n")
    assert raw.endswith(b"\r\n\r\npart")


# -- lifespan ---------------------------------------------------------------------------------


async def test_lifespan_state_is_copied_into_scopes() -> None:
    events: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                events.append(message["type"])
                if message["type"] == "lifespan.startup":
                    scope["state"]["db"] = "connected"
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        scope["state"]["mutated"] = True  # a copy: does not leak into the next request
        await scope_app(scope, receive, send)

    async with serve(app, lifespan="on") as server:
        first = await get_scope(server)
        second = await get_scope(server)
    assert first["state"] == {"db": "connected", "mutated": True}
    assert second["state"] == {"db": "connected", "mutated": True}
    assert events == ["lifespan.startup", "lifespan.shutdown"]


async def test_lifespan_auto_tolerates_apps_without_it() -> None:
    async def http_only(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        await text_app(scope, receive, send)

    async with serve(http_only, lifespan="auto") as server, httpx.AsyncClient() as client:
        response = await client.get(url(server))
    assert response.text == "hello"


async def test_lifespan_on_fails_when_app_crashes() -> None:
    async def http_only(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("no lifespan here")

    with pytest.raises(LifespanFailure):
        async with serve(http_only, lifespan="on"):
            pass


async def test_lifespan_off_never_calls_app() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])
        await text_app(scope, receive, send)

    async with serve(app, lifespan="off") as server, httpx.AsyncClient() as client:
        await client.get(url(server))
    assert seen == ["http"]


# -- graceful shutdown --------------------------------------------------------------------------


async def test_graceful_shutdown_finishes_in_flight_and_closes_idle() -> None:
    entered = asyncio.Event()
    release = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/slow":
            entered.set()
            await release.wait()
        await text_app(scope, receive, send)

    async with serve(app, timeout_graceful_shutdown=10) as server:
        idle_reader, idle_writer = await open_raw(server)
        idle_writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await read_response(idle_reader))[0] == 200
        busy_reader, busy_writer = await open_raw(server)
        busy_writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(entered.wait(), WAIT)
        server.shutdown()
        assert await read_until_closed(idle_reader) == b""  # idle connection closed at once
        release.set()
        status, headers, body = await read_response(busy_reader)
        assert await read_until_closed(busy_reader) == b""
        idle_writer.close()
        busy_writer.close()
    assert (status, body) == (200, b"hello")
    assert headers[b"connection"] == b"close"


async def wait_for_connections(server: Server, count: int) -> None:
    async def accepted() -> None:
        # The server offers no event for an accepted connection: poll its set, bounded.
        while len(server.state.connections) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.005)

    await asyncio.wait_for(accepted(), WAIT)


async def test_graceful_shutdown_serves_the_first_request_of_a_fresh_connection() -> None:
    # A connection accepted just before shutdown whose request is still on its way (the
    # SIGHUP-reload race) is served once, with Connection: close, instead of being dropped.
    async with serve(text_app, timeout_graceful_shutdown=10) as server:
        reader, writer = await open_raw(server)
        silent_reader, silent_writer = await open_raw(server)
        await wait_for_connections(server, 2)
        server.shutdown()
        await wait_until(lambda: server.state.shutting_down)  # the connections were told
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = await read_response(reader)
        assert await read_until_closed(reader) == b""
        # A fresh connection that never sends anything is closed after the short grace.
        assert await read_until_closed(silent_reader) == b""
        writer.close()
        silent_writer.close()
    assert (status, body) == (200, b"hello")
    assert headers[b"connection"] == b"close"


async def test_graceful_shutdown_serves_a_request_whose_head_is_arriving() -> None:
    # Half a request head on a keep-alive connection is a request in flight: it is completed
    # and served (Connection: close), not cut off by the shutdown.
    async with serve(text_app, timeout_graceful_shutdown=10) as server:
        reader, writer = await open_raw(server)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await read_response(reader))[0] == 200
        writer.write(b"GET /second HTTP/1.1\r\nHo")
        (connection,) = server.state.connections
        await wait_until(lambda: connection.handler.is_idle() is False)
        server.shutdown()
        await wait_until(lambda: server.state.shutting_down)
        writer.write(b"st: x\r\n\r\n")
        status, headers, body = await read_response(reader)
        assert await read_until_closed(reader) == b""
        writer.close()
    assert (status, body) == (200, b"hello")
    assert headers[b"connection"] == b"close"


async def wait_until(condition: Callable[[], bool]) -> None:
    async def poll() -> None:
        # Server internals offer no event for these conditions: poll, bounded.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), WAIT)


async def test_graceful_shutdown_cancels_after_grace() -> None:
    cancelled = asyncio.Event()
    entered = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with serve(app, timeout_graceful_shutdown=0.1) as server:
        reader, writer = await open_raw(server)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(entered.wait(), WAIT)
        server.shutdown()
        assert await read_until_closed(reader) == b""
        writer.close()
    assert cancelled.is_set()


async def test_application_close_timeout_cancels_app_after_disconnect() -> None:
    entered = asyncio.Event()
    cancelled = asyncio.Event()

    async def stubborn(scope: Scope, receive: Receive, send: Send) -> None:
        entered.set()
        try:
            await asyncio.Event().wait()  # ignores http.disconnect
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with serve(stubborn, application_close_timeout=0.1) as server:
        _reader, writer = await open_raw(server)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(entered.wait(), WAIT)
        writer.close()
        await asyncio.wait_for(cancelled.wait(), WAIT)


async def test_graceful_shutdown_keeps_reading_a_body_in_progress() -> None:
    entered = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        entered.set()
        await echo_body(receive, send)

    async with serve(app, timeout_graceful_shutdown=10) as server:
        reader, writer = await open_raw(server)
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345")
        await asyncio.wait_for(entered.wait(), WAIT)
        server.shutdown()
        writer.write(b"67890")
        status, _, body = await read_response(reader)
        writer.close()
    assert (status, body) == (200, b"1234567890")


async def echo_body(receive: Receive, send: Send) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
