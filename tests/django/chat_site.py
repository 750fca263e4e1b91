"""Run the examples/chat project for tests: a fresh SQLite file, users, a server process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.django.processes import REPO, ServerProcess, start_server

CHAT_DIR = REPO / "examples" / "chat"
PASSWORD = "e2e-Secret-pass-42"
USERS = ("alice", "bob", "carol")


def chat_env(db_path: Path) -> dict[str, str]:
    env = {"CHAT_DB_PATH": str(db_path), "CHAT_DEBUG": "1"}
    env["DJANGO_SETTINGS_MODULE"] = "chatsite.settings"
    return env


def start_chat_server(
    db_path: Path, argv: Sequence[str], extra_env: dict[str, str] | None = None
) -> ServerProcess:
    """Start ``argv`` (with ``{port}`` filled in) in examples/chat and wait until it listens."""
    env = dict(chat_env(db_path), **(extra_env or {}))

    def filled(port: int) -> list[str]:
        return [part.format(port=port) for part in argv]

    return start_server(filled, cwd=CHAT_DIR, env=env)


def create_users(db_path: Path) -> None:
    """Create the test users with the example's own manage.py (after it migrated)."""
    code = (  # one password hash for all (hashing is deliberately slow)
        "from django.contrib.auth.hashers import make_password\n"
        "from django.contrib.auth.models import User\n"
        f"hashed = make_password({PASSWORD!r})\n"
        f"User.objects.bulk_create([User(username=n, password=hashed) for n in {list(USERS)!r}])\n"
    )
    env = dict(os.environ, **chat_env(db_path))
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=CHAT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        raise RuntimeError(f"creating the chat users failed:\n{result.stdout}{result.stderr}")
