"""Headless Chromium against a real headrace server: text, 70,000-byte binary, clean close, deflate.

Required: the test FAILS when Chromium, node or playwright-core are missing
(``scripts/install-test-deps`` installs them). The page script, ``browser_ws.js``, lives next to
this file, so the test needs nothing outside the repository.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.browser import browser_env, require_browser_tools
from tests.websocket._support import echo_app, serve

SCRIPT = Path(__file__).with_name("browser_ws.js")


async def page_and_echo_app(scope: Any, receive: Any, send: Any) -> None:
    """HTTP: echo the request body (the script POSTs); WebSocket: echo every message."""
    if scope["type"] == "websocket":
        await echo_app(scope, receive, send)
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": body or b"page"})


@pytest.mark.timeout(90)
async def test_chromium_echo_with_deflate() -> None:
    node = require_browser_tools()
    async with serve(page_and_echo_app) as (port, _):
        process = await asyncio.create_subprocess_exec(
            node,
            str(SCRIPT),
            f"http://127.0.0.1:{port}/",
            f"ws://127.0.0.1:{port}/",
            env=browser_env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), 75)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    text = output.decode(errors="replace")
    assert process.returncode == 0, text
    report = json.loads(text.strip().splitlines()[-1])
    assert "error" not in report, report
    assert report["pageStatus"] == 200
    assert report["fetchStatus"] == 200
    assert report["fetchBody"] == "posted-from-chromium"
    assert report["wsOpened"] is True
    assert report["wsTextOk"] is True
    assert report["wsBinaryOk"] is True
    assert report["wsCloseCode"] == 1000
    assert report["wsCloseClean"] is True
    assert "permessage-deflate" in report["wsExtensions"]
