"""examples/todo in two headless Chromium pages (``manage.py runserver``, the Redis layer):
edits in one page appear in the other, and a task created by another process appears in both.

Needs node, Chromium and playwright-core (scripts/install-test-deps); without them it FAILS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.browser import browser_env, require_browser_tools
from tests.conftest import require_service
from tests.django.processes import REPO, start_server

TODO_DIR = REPO / "examples" / "todo"
SCRIPT = Path(__file__).with_name("todo_e2e.js")


def manage(env: dict[str, str], *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=TODO_DIR,
        env={**os.environ, **env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(120)
def test_two_browsers_watch_one_list(tmp_path: Path) -> None:
    node = require_browser_tools()
    require_service("Redis", "127.0.0.1", 6379)
    env = {
        "TODO_DB_PATH": str(tmp_path / "todo.sqlite3"),
        "TODO_REDIS_URL": "redis://127.0.0.1:6379/0",
        "TODO_REDIS_PREFIX": "todo" + uuid.uuid4().hex[:8],
        "DJANGO_SETTINGS_MODULE": "todosite.settings",
    }
    manage(env, "migrate", "--verbosity", "0")
    server = start_server(
        lambda port: ["manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=TODO_DIR,
        env=env,
    )
    browser = subprocess.Popen(
        [node, str(SCRIPT), f"http://127.0.0.1:{server.port}", str(tmp_path / "profile")],
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
            if line.strip() == "SHELL":
                code = "from todo.models import Task; Task.objects.create(title='from the shell')"
                manage(env, "shell", "-c", code)
                browser.stdin.write("DONE\n")
                browser.stdin.flush()
        browser.wait(30)
    finally:
        if browser.poll() is None:
            browser.kill()
            browser.wait()
        server.stop()
    report = json.loads(output[-1])
    assert "error" not in report, report
    toggled = [{"title": "buy milk", "done": True}]
    assert report["afterToggle"] == {"alice": toggled, "bob": toggled}
    final = [{"title": "from the shell", "done": False}]
    assert report["final"] == {"alice": final, "bob": final}
    assert report["late"] == final
    assert report["errors"] == ""
