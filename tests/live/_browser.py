"""What the Chromium tests of tests/live need: node, the system Chromium, playwright-core."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.django.processes import REPO

NODE_MODULES = REPO / ".test-tools" / "node_modules"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def require_browser_tools() -> str:
    """The node executable; FAILS (never skips) when a tool is missing."""
    node = shutil.which("node")
    missing = [
        what
        for what, present in (
            ("node", node is not None),
            (CHROMIUM, Path(CHROMIUM).exists()),
            (str(NODE_MODULES / "playwright-core"), (NODE_MODULES / "playwright-core").is_dir()),
        )
        if not present
    ]
    if missing or node is None:
        pytest.fail(
            f"browser test tools missing ({', '.join(missing)}): run scripts/install-test-deps"
        )
    return node
