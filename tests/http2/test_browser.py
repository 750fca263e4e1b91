"""Headless Chromium over TLS: h2 for the page and fetch(), and a WebSocket echo.

Required test: it fails (never skips) when Chromium or playwright-core is missing.
"""

from __future__ import annotations

import json
from pathlib import Path

import trustme

from headrace._types import Receive, Scope, Send
from headrace.server.endpoints import TLSFiles
from tests.browser import browser_env, require_browser_tools

from .support import run_process, serve

SCRIPT = Path(__file__).with_name("browser_h2.js")
PAGE = b"<!doctype html><title>headrace h2</title><p>hello</p>"
WEBSOCKET_VERSIONS: list[str] = []


async def site(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        WEBSOCKET_VERSIONS.append(scope["http_version"])
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send(
                {
                    "type": "websocket.send",
                    **{
                        k: v for k, v in message.items() if k in ("text", "bytes") and v is not None
                    },
                }
            )
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/data":
        headers = [(b"content-type", b"text/plain")]
    else:
        body = PAGE
        headers = [(b"content-type", b"text/html; charset=utf-8")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def test_chromium_negotiates_h2_and_websocket_echo_works(tmp_path: Path) -> None:
    node, environment = require_browser_tools(), browser_env()
    authority = trustme.CA()
    leaf = authority.issue_cert("localhost", "127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    async with serve(site, tls=TLSFiles(str(cert), str(key))) as (port, _):
        status, out, err = await run_process(
            node, str(SCRIPT), f"https://localhost:{port}/", limit=90, env=environment
        )
    assert status == 0, err.decode()
    report = json.loads(out.decode().strip().splitlines()[-1])
    assert "error" not in report, report
    assert report["pageStatus"] == 200
    assert report["pageProtocol"] == "h2"
    assert report["fetchStatus"] == 200
    assert report["fetchBody"] == "ping-body"
    assert report["fetchProtocol"] == "h2"
    assert report["wsOpened"] is True
    assert report["wsTextOk"] is True
    assert report["wsBinaryOk"] is True
    assert "permessage-deflate" in report["wsExtensions"]
    # Chromium opens WebSockets over its HTTP/2 connection when the server allows RFC 8441.
    assert WEBSOCKET_VERSIONS == ["2"]
