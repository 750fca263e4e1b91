"""Headless Chromium against a real headrace server: text, 70,000-byte binary, clean close, deflate.

Required: the test FAILS when Chromium, node or playwright-core are missing
(``scripts/install-test-deps`` installs them). The page script is the shared tool
``../shared/tools/browser/browser_ws.js`` next to the repository's clone, wherever that is
(resolved from this file, not the working directory); ``HEADRACE_BROWSER_WS_JS`` overrides it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.websocket._support import echo_app, serve

ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = ROOT / ".test-tools" / "node_modules"
SCRIPT = Path(
    os.environ.get(
        "HEADRACE_BROWSER_WS_JS",
        str(ROOT.parent / "shared" / "tools" / "browser" / "browser_ws.js"),
    )
)


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


def _tools() -> tuple[str, str]:
    node = shutil.which("node")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    missing = [
        name
        for name, present in (
            ("node", node),
            ("chromium", chromium),
            (
                "playwright-core (run scripts/install-test-deps)",
                (NODE_MODULES / "playwright-core").is_dir(),
            ),
            (f"browser script {SCRIPT}", SCRIPT.is_file()),
        )
        if not present
    ]
    if missing:
        pytest.fail("browser test tools missing: " + ", ".join(missing))
    assert node is not None and chromium is not None
    return node, chromium


@pytest.mark.timeout(90)
async def test_chromium_echo_with_deflate() -> None:
    node, chromium = _tools()
    async with serve(page_and_echo_app) as (port, _):
        process = await asyncio.create_subprocess_exec(
            node,
            str(SCRIPT),
            f"ws://127.0.0.1:{port}/",
            f"http://127.0.0.1:{port}/",
            env={**os.environ, "NODE_PATH": str(NODE_MODULES), "CHROMIUM": chromium},
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
    assert "ws: text echo ok" in text
    assert "ws: binary 70000B echo ok" in text
    assert "close code=1000 wasClean=true" in text
    assert 'extensions="permessage-deflate' in text
    assert "RESULT: PASS" in text
