"""Everything the Django integration offers works with Channels and Daphne unimportable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.django.chat_site import CHAT_DIR
from tests.django.processes import REPO

PROGRAM = """
import sys
for name in ("channels", "channels_redis", "daphne", "twisted", "autobahn"):
    sys.modules[name] = None  # any import of them now raises ImportError
import django
django.setup()
from django.core.management import call_command
call_command("check", fail_level="WARNING")
import chatsite.asgi
import headrace.auth, headrace.sessions, headrace.tokens, headrace.db
import headrace.security.websocket, headrace.checks, headrace.testing.live
import headrace.management.commands.runserver
loaded = sorted(n for n in ("channels", "daphne", "twisted") if sys.modules.get(n) is not None)
print("loaded:", loaded)
"""


def test_chat_project_needs_neither_channels_nor_daphne(tmp_path: Path) -> None:
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="chatsite.settings",
        CHAT_DB_PATH=str(tmp_path / "db.sqlite3"),
        PYTHONPATH=os.pathsep.join([str(CHAT_DIR), str(REPO)]),
    )
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        cwd=CHAT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "loaded: []" in result.stdout
