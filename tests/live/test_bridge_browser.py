"""The JavaScript client in headless Chromium against ``manage.py runserver`` (static files from
the headrace app), through the demultiplexer and the binding, surviving a server restart.

Needs node, Chromium and playwright-core (scripts/install-test-deps): without them the test
FAILS, it never skips.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.browser import browser_env, require_browser_tools
from tests.conftest import free_port
from tests.django.processes import REPO, ServerProcess
from tests.live._site import Site

SCRIPT = Path(__file__).with_name("bridge_e2e.js")


def runserver(site: Site, port: int) -> ServerProcess:
    argv = ["-m", "django", "runserver", "--noreload", "--insecure", f"127.0.0.1:{port}"]
    server = ServerProcess(argv, port, env=site.env)
    try:
        server.wait_listening()
    except BaseException:
        server.stop()
        raise
    return server


@pytest.mark.timeout(120)
def test_bridge_in_chromium_survives_a_server_restart(tmp_path: Path) -> None:
    node = require_browser_tools()
    site = Site(tmp_path)
    site.migrate()
    port = free_port()
    server = runserver(site, port)
    browser = subprocess.Popen(
        [node, str(SCRIPT), f"http://127.0.0.1:{port}", str(tmp_path / "profile")],
        env=browser_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert browser.stdin is not None and browser.stdout is not None
    output: list[str] = []
    try:
        for line in browser.stdout:
            output.append(line)
            if line.strip() == "STOP":
                server.stop()
                browser.stdin.write("STOPPED\n")
            elif line.strip() == "START":
                server = runserver(site, port)
                browser.stdin.write("STARTED\n")
            else:
                continue
            browser.stdin.flush()
        browser.wait(30)
    finally:
        if browser.poll() is None:
            browser.kill()
            browser.wait()
        server.stop()
    report = json.loads(output[-1])
    assert "error" not in report, report
    host = f"127.0.0.1:{port}"
    assert report["urls"] == [
        f"ws://{host}/",
        f"ws://{host}/ws/x/",
        "wss://example.com/ws/",
        "ws://elsewhere:1/y",
    ]
    assert report["echo"] == [
        {"payload": {"n": 1}, "stream": "echo"},
        {"payload": {"queued": 1}, "stream": "echo"},
        {"payload": {"queued": 2}, "stream": "echo"},
    ]
    ack = next(p for p in report["cards"] if "request_id" in p)
    change = next(p for p in report["cards"] if "request_id" not in p)
    assert ack["errors"] == [] and ack["pk"] == change["pk"]
    assert change["data"]["title"] == "from chromium"
    assert report["queuedWhileDown"] == 2 and report["queueAfter"] == 0
    assert report["events"][:2] == ["open", "close"]
    assert "reconnect" in report["events"]
    assert report["delays"] and all(0 < delay <= 1000 for delay in report["delays"])
    assert report["moduleEcho"] == {"payload": {"module": True}, "stream": "echo"}
    assert report["other"] == []
    assert report["refusals"] == {
        "queueFull": "WebSocketBridge: 2 frames already queued while disconnected",
        "unknownEvent": 'WebSocketBridge: unknown event "opened" '
        "(one of open, close, reconnecting, reconnect, error, message, recovery, presence)",
        "queued": 2,
    }


def test_collectstatic_ships_both_faces_of_the_client(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.manage("collectstatic", "--noinput", "--verbosity", "0")
    source = REPO / "headrace" / "static" / "headrace" / "js"
    for name in ("websocketbridge.js", "websocketbridge.mjs"):
        collected = tmp_path / "static" / "headrace" / "js" / name
        assert collected.read_bytes() == (source / name).read_bytes()
