"""``--reload``: the path filter, both watchers, and a server picking up edited code."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import httpx
import pytest

from headrace.server.reload import ChangeWatcher, PathFilter
from tests.conftest import free_port
from tests.workers.helpers import WAIT, supervised, wait_until

APP_SOURCE = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": b"{version}"}})
"""


def get_text(client: httpx.Client, url: str) -> str:
    """A request on a fresh connection: a pooled idle connection may be closed by the drain of
    the worker that served it just as it is reused (clients retry that; httpx does not)."""
    return client.get(url, headers={"connection": "close"}).text


def test_path_filter_defaults() -> None:
    accept = PathFilter()
    assert accept("/src/project/views.py")
    assert not accept("/src/project/notes.txt")
    assert not accept("/src/project/__pycache__/views.cpython-311.pyc")
    assert not accept("/src/.git/hooks/post.py")
    assert not accept("/src/project/.views.py.swp")


def test_path_filter_custom_patterns() -> None:
    accept = PathFilter(includes=["*.html", "*.py"], excludes=["migrations"])
    assert accept("/src/templates/page.html")
    assert accept("/src/app/models.py")
    assert not accept("/src/app/migrations/0001_initial.py")


@pytest.mark.parametrize("use_watchfiles", [True, False], ids=["watchfiles", "polling"])
def test_watcher_reports_a_change(tmp_path: Path, use_watchfiles: bool) -> None:
    module = tmp_path / "module.py"
    module.write_text("VALUE = 1\n")
    changed = threading.Event()
    watcher = ChangeWatcher(
        [str(tmp_path)], PathFilter(), changed.set, interval=0.05, use_watchfiles=use_watchfiles
    )
    assert watcher.mechanism == ("watchfiles" if use_watchfiles else "polling")
    watcher.start()
    try:
        deadline_reached = False
        for attempt in range(50):  # the watcher may start after the first write
            module.write_text(f"VALUE = {attempt + 2}\n")
            stat = module.stat()
            os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9 * (attempt + 1)))
            if changed.wait(0.2):
                break
        else:
            deadline_reached = True
        assert not deadline_reached, "no change reported"
    finally:
        watcher.stop()


def test_reload_serves_edited_code(tmp_path: Path) -> None:
    (tmp_path / "liveapp.py").write_text(APP_SOURCE.format(version="v1"))
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    arguments = ("--reload", "--reload-dir", str(tmp_path), "-p", str(port), "liveapp:app")
    with (
        supervised(*arguments, base_url=url, ready=1, cwd=tmp_path) as server,
        httpx.Client(timeout=WAIT) as client,
    ):
        assert get_text(client, url) == "v1"
        (tmp_path / "liveapp.py").write_text(APP_SOURCE.format(version="v2"))
        server.wait_ready(2)
        wait_until(lambda: get_text(client, url) == "v2")
        assert "Detected changes in" in server.output()
        # A syntax error keeps the previous generation serving.
        (tmp_path / "liveapp.py").write_text("def broken(:\n")
        wait_until(lambda: "Reload abandoned" in server.output(), what="abandoned reload")
        assert get_text(client, url) == "v2"


def test_reload_include_and_exclude_patterns(tmp_path: Path) -> None:
    """Only included, non-excluded files trigger: edits of ``drafts/`` and of a ``.py`` file
    (no longer included once ``--reload-include`` is given) do not; an included template does,
    and the new generation imports the edited module."""
    (tmp_path / "liveapp.py").write_text(APP_SOURCE.format(version="v1"))
    for folder in ("drafts", "templates"):
        (tmp_path / folder).mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    arguments = ("--reload", "--reload-dir", str(tmp_path), "-p", str(port))
    arguments += ("--reload-include", "*.html", "--reload-exclude", "drafts", "liveapp:app")
    with (
        supervised(*arguments, base_url=url, ready=1, cwd=tmp_path) as server,
        httpx.Client(timeout=WAIT) as client,
    ):
        assert get_text(client, url) == "v1"
        (tmp_path / "drafts" / "page.html").write_text("<p>draft</p>")
        (tmp_path / "liveapp.py").write_text(APP_SOURCE.format(version="v2"))
        (tmp_path / "templates" / "page.html").write_text("<p>final</p>")
        server.wait_ready(2)
        wait_until(lambda: get_text(client, url) == "v2")
        detected = [line for line in server.output().splitlines() if "Detected changes" in line]
        assert detected, "no change detected"
        assert all("templates/page.html" in line for line in detected)
        assert not any("drafts" in line or "liveapp.py" in line for line in detected)
        assert "starting generation 3" not in server.output()
