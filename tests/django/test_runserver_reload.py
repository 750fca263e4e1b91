"""runserver under Django's autoreloader: editing a watched module restarts the server."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx

from tests.django.processes import REPO, ServerProcess, start_server

BANNER = "Starting ASGI/headrace version"


def wait_for(server: ServerProcess, text: str, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.log().count(text) >= count:
            return
        time.sleep(0.1)
    raise TimeoutError(f"{text!r} did not appear {count} times:\n{server.log()}")


def touch_until_reloaded(server: ServerProcess, path: Path, timeout: float = 30.0) -> None:
    """Give ``path`` ever newer mtimes until the server restarts.

    Django's StatReloader only records a file's first mtime and polls once a second;
    its first poll can come after the banner, so a single edit made right after the
    banner may be the mtime it records as the baseline. Touching repeatedly makes the
    change visible whenever the baseline was taken.
    """
    deadline = time.monotonic() + timeout
    bump = 5.0
    while time.monotonic() < deadline:
        later = time.time() + bump
        os.utime(path, (later, later))
        bump += 1.0
        if server.log().count(BANNER) >= 2:
            return
        time.sleep(0.5)
    raise TimeoutError(f"{BANNER!r} did not appear twice:\n{server.log()}")


def test_edit_restarts_the_server(tmp_path: Path, migrated_database: None) -> None:
    settings_file = tmp_path / "reload_settings.py"
    settings_file.write_text("from tests.django.settings import *  # noqa: F403\n")
    pythonpath = os.pathsep.join([str(tmp_path), str(REPO)])
    server = start_server(
        lambda port: [
            "-m",
            "django",
            "runserver",
            f"127.0.0.1:{port}",
            "--settings=reload_settings",
        ],
        env={"PYTHONPATH": pythonpath},
    )
    port = server.port
    try:
        wait_for(server, BANNER, 1)
        settings_file.write_text(settings_file.read_text() + "RELOADED = True\n")
        touch_until_reloaded(server, settings_file)
        server.wait_listening()
        page = httpx.get(f"http://127.0.0.1:{port}/whoami/", timeout=10)
        assert page.status_code == 200
        assert "reload_settings.py changed, reloading" in server.log()
    finally:
        server.stop()
