"""The chat example in headless Chromium, served by ``headrace chatsite.asgi:application``.

Needs the system Chromium and playwright-core (scripts/install-test-deps installs both);
without them this test FAILS, it never skips.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.browser import browser_env, require_browser_tools
from tests.django.chat_site import PASSWORD, USERS, create_users, start_chat_server
from tests.django.processes import ServerProcess

SCRIPT = Path(__file__).parent / "e2e" / "chat_e2e.js"


class ForeignPage(BaseHTTPRequestHandler):
    """The attacker's page: any HTML will do, the test's script runs in it."""

    def do_GET(self) -> None:
        body = b"<!DOCTYPE html><title>elsewhere</title><p>another site</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


class IPv6HTTPServer(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def foreign_server() -> tuple[ThreadingHTTPServer, str]:
    """A loopback server on an origin outside ALLOWED_HOSTS (which is just 127.0.0.1)."""
    try:
        server: ThreadingHTTPServer = IPv6HTTPServer(("::1", 0), ForeignPage)
        return server, f"http://[::1]:{server.server_address[1]}/"
    except OSError:  # no IPv6 loopback: Chromium then resolves localhost to 127.0.0.1
        server = ThreadingHTTPServer(("127.0.0.1", 0), ForeignPage)
        return server, f"http://localhost:{server.server_address[1]}/"


@pytest.fixture
def foreign_origin() -> Iterator[str]:
    server, url = foreign_server()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def chat_server(tmp_path: Path) -> Iterator[ServerProcess]:
    argv = ["-m", "headrace", "-b", "127.0.0.1", "-p", "{port}", "chatsite.asgi:application"]
    # Only 127.0.0.1 is allowed, so a page on [::1] (or localhost) is a foreign origin whose
    # socket Chromium still lets through to the loopback server (a page Chromium considers
    # public would be stopped by its own local-network-access checks, proving nothing).
    only_loopback_ip = {"CHAT_ALLOWED_HOSTS": "127.0.0.1"}
    server = start_chat_server(tmp_path / "chat.sqlite3", argv, extra_env=only_loopback_ip)
    try:
        create_users(tmp_path / "chat.sqlite3")
        yield server
    finally:
        server.stop()


def test_chat_in_a_real_browser(chat_server: ServerProcess, foreign_origin: str) -> None:
    node = require_browser_tools()
    alice, bob, carol = USERS
    result = subprocess.run(
        [
            node,
            str(SCRIPT),
            f"http://127.0.0.1:{chat_server.port}",
            PASSWORD,
            alice,
            bob,
            carol,
            foreign_origin,
        ],
        env=browser_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout.strip(), f"no report; stderr:\n{result.stderr}\n{chat_server.log()}"
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert "error" not in report, report["error"] + "\n" + chat_server.log()
    conversation = [f"{alice}: hello from alice", f"{bob}: hi alice", f"{alice}: after anon"]
    # Two logged-in users in one room see each other's messages, in order.
    assert report["bobLog"] == conversation
    # A user in another room sees only that room.
    assert report["carolLog"] == [f"{carol}: carol here"]
    # An anonymous visitor gets no form, and a hand-made post is refused and not broadcast.
    assert report["anonymousHasForm"] is False
    assert report["anonymousLoginHint"] is True
    assert report["anonymousError"] == "Log in to post messages."
    # The online lists: who is in the room, logged in or not; another room is separate.
    assert report["onlineForAlice"] == f"{alice}, {bob}, 1 anonymous"
    assert report["onlineForCarol"] == carol
    # bob's socket went away while alice posted twice: the list dropped him; back, his page
    # reconnected with its position and shows exactly what it missed, once, in order.
    away = report["away"]
    assert away["onlineWhileAway"] == f"{alice}, 1 anonymous"
    assert "positions=" in away["socketUrl"]
    assert list(json.loads(away["positionsBefore"])) == ["chat.e2e"]
    missed = [f"{alice}: while bob is away 1", f"{alice}: while bob is away 2"]
    assert report["bobLogAfterReconnect"] == conversation + missed
    assert report["onlineAfterReturn"] == f"{alice}, {bob}, 1 anonymous"
    assert report["onlineAfterBobLeft"] == f"{alice}, 1 anonymous"
    # A reload renders the persisted history (and the live page had the same lines).
    assert report["bobLogAfterReload"] == conversation + missed
    # A page on a foreign origin, in the logged-in user's browser, cannot open the socket.
    assert report["foreignOrigin"]["opened"] is False
    assert "WSREJECT /ws/chat/e2e/" in chat_server.log()  # refused by the server, not the browser
    assert report["sameOriginStillWorks"] is True
