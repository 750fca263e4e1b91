"""The Channels-1 example in headless Chromium: the room page, a logged-in member and an
anonymous visitor, served by the interface server and two workers over IPC.

Needs node, the system Chromium and playwright-core (scripts/install-test-deps installs
them); without them this test FAILS, it never skips."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import browser_env, require_browser_tools
from tests.channels1.api.processes import ExampleSite

SCRIPT = Path(__file__).parent / "e2e" / "room_e2e.js"


@pytest.fixture
def site() -> Iterator[ExampleSite]:
    site = ExampleSite("ipc", routing="examples.channels1.project.routing.channel_routing")
    try:
        site.create_user("mallory", "browser-pass-1")
        site.start_server()
        site.start_worker("--threads", "2")
        site.start_worker("--threads", "2")
        yield site
    finally:
        site.close()


def test_room_page_in_chromium(site: ExampleSite, tmp_path: Path) -> None:
    node = require_browser_tools()
    screenshot = tmp_path / "room.png"
    result = subprocess.run(
        [node, str(SCRIPT), site.url, "mallory", "browser-pass-1", str(screenshot)],
        env=browser_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout.strip(), f"no report; stderr:\n{result.stderr}\n{site.logs()}"
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert "error" not in report, report["error"] + "\n" + site.logs()
    conversation = ["mallory: hello from the member", "anonymous: hi back"]
    assert report["who"] == "mallory"
    assert report["memberLive"] == conversation
    assert report["visitorLive"] == conversation
    assert report["memberSaved"] == conversation
    assert screenshot.stat().st_size > 0
